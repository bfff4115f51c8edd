// `tinyllava generate`: one question (or a raw prompt) about an image, streamed to stdout, or one JSON object.
import { existsSync } from "node:fs";
import { type AskOptions, VisionLanguagePipeline } from "../pipeline/index.js";
import type { TemplateName } from "../processing/templates.js";
import { TEMPLATES } from "../processing/templates.js";
import { choice, dtype, int, loadProgressBar, num, peakRssMb, UsageError } from "./options.js";

export interface GenerateFlags {
  model: string;
  image?: string;
  prompt: string;
  template?: string;
  maxNewTokens: string;
  temperature?: string;
  topP?: string;
  topK?: string;
  repetitionPenalty?: string;
  numBeams?: string;
  seed?: string;
  stop?: string[];
  dtype: string;
  quantize?: string;
  imageAspect?: string;
  json?: boolean;
}

export const TEMPLATE_NAMES = [...Object.keys(TEMPLATES), "pretrain", "raw"];

/** Sampling/stopping flags shared by generate and chat. */
export function askOptions(o: Partial<GenerateFlags>): AskOptions {
  const a: AskOptions = { maxNewTokens: int("--max-new-tokens", o.maxNewTokens ?? "512", { min: 1 }) };
  if (o.temperature !== undefined) a.temperature = num("--temperature", o.temperature, { min: 0 });
  if (o.topP !== undefined) a.topP = num("--top-p", o.topP, { above: 0, max: 1 });
  if (o.topK !== undefined) a.topK = int("--top-k", o.topK, { min: 0 });
  if (o.repetitionPenalty !== undefined)
    a.repetitionPenalty = num("--repetition-penalty", o.repetitionPenalty, { above: 0 });
  if (o.numBeams !== undefined) a.numBeams = int("--num-beams", o.numBeams, { min: 1 });
  if (o.seed !== undefined) a.seed = int("--seed", o.seed, { min: 0 });
  if (o.stop?.length) a.stopStrings = o.stop;
  // top-p / top-k without a temperature still sample (temperature 1), as HF with do_sample
  if (a.temperature === undefined && (a.topP !== undefined || a.topK !== undefined)) a.doSample = true;
  return a;
}

export function loadPipeline(o: Partial<GenerateFlags> & { model: string }): VisionLanguagePipeline {
  const template =
    o.template === undefined ? undefined : (choice("--template", o.template, TEMPLATE_NAMES) as TemplateName);
  const quantize = o.quantize === undefined ? null : choice("--quantize", o.quantize, ["int8"] as const);
  const imageAspect =
    o.imageAspect === undefined ? undefined : choice("--image-aspect", o.imageAspect, ["square", "pad"] as const);
  const bar = loadProgressBar();
  try {
    return VisionLanguagePipeline.load(o.model, {
      dtype: dtype(o.dtype ?? "float32"),
      template,
      quantize,
      imageAspect,
      onProgress: bar.onProgress,
    });
  } finally {
    bar.stop();
  }
}

export async function generateCommand(o: GenerateFlags): Promise<void> {
  const ask = askOptions(o);
  if (o.image !== undefined && !existsSync(o.image)) throw new UsageError(`--image ${o.image}: file not found`);
  const pipe = loadPipeline(o);
  try {
    const images = o.image ? [o.image] : [];
    const prompt = pipe.template === "raw" ? o.prompt : pipe.questionPrompt(o.prompt, images.length > 0);
    if (o.json) {
      const [a] = await pipe.generate([{ prompt, images }], ask);
      const t = a!.timings;
      process.stdout.write(
        `${JSON.stringify({
          text: a!.text,
          tokens: a!.tokens,
          finish_reason: a!.finishReason,
          prompt_tokens: a!.promptLength,
          template: pipe.template,
          timings: {
            load_ms: round(pipe.loadMs),
            vision_encode_ms: round(t.visionMs),
            prefill_ms: round(t.prefillMs),
            decode_ms: round(t.decodeMs),
            decode_tokens: t.decodeTokens,
            decode_tokens_per_s: round(t.decodeTokensPerSecond),
            peak_rss_mb: round(peakRssMb()),
          },
        })}\n`,
      );
      return;
    }
    const ac = new AbortController();
    const onSigint = () => ac.abort();
    process.once("SIGINT", onSigint);
    await printStream(pipe.streamPrompt(prompt, images, { ...ask, signal: ac.signal }), (d) => process.stdout.write(d));
    process.removeListener("SIGINT", onSigint);
  } finally {
    pipe.dispose();
  }
}

/** Writes a streamed answer as Factory shows it (stripped: leading whitespace dropped), then a newline. */
export async function printStream(
  it: AsyncGenerator<string, unknown, void>,
  write: (s: string) => void,
): Promise<void> {
  let started = false;
  for (;;) {
    const r = await it.next();
    if (r.done) break;
    const d = started ? r.value : r.value.replace(/^\s+/, "");
    if (d) {
      started = true;
      write(d);
    }
  }
  write("\n");
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
