// A loaded model with its tokenizer, image processor and conversation template — what the CLI, the server and apps
// use: questions about images in, answers out (whole, streamed, or batched), and multi-turn chats kept exactly as
// the template formats them.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { GenerationError } from "../errors.js";
import {
  type FinishReason,
  type GenerateOptions,
  type GenerateOutput,
  type GenerateRequest,
  GenerationRun,
  type GenerationTimings,
} from "../generation/generate.js";
import { type LoadProgress, loadTinyLlava } from "../models/load.js";
import type { TinyLlava } from "../models/tinyllava.js";
import type { QuantizeReport } from "../nn/quant.js";
import { ImageProcessor } from "../processing/image.js";
import {
  defaultTemplate,
  generationPrompt,
  IMAGE_TOKEN,
  TEMPLATES,
  type TemplateName,
  type Turn,
} from "../processing/templates.js";
import { TinyTokenizer } from "../processing/tokenizer.js";
import { stack } from "../torch/creation.js";
import type { DType } from "../torch/dtype.js";
import { disposeAll } from "../torch/memory.js";
import type { Tensor } from "../torch/tensor.js";

export interface PipelineOptions {
  /** compute dtype: float32 (default), bfloat16, float16, float64 */
  dtype?: DType;
  /** conversation template (default: the checkpoint's conv_version, else the LLM family's); "raw": prompts verbatim */
  template?: TemplateName;
  tokenizerDir?: string;
  /** weight-only int8 for the language model's Linear and Embedding layers */
  quantize?: "int8" | null;
  /** image aspect handling (default: the config's image_aspect_ratio) */
  imageAspect?: "square" | "pad";
  /** called while weights load */
  onProgress?: (p: LoadProgress) => void;
}

export interface AskOptions extends Omit<GenerateOptions, "tokenizer" | "eosTokenIds"> {
  /** extra EOS ids (the tokenizer's, the config's and generation_config.json's are always used) */
  eosTokenIds?: number[];
}

export interface Answer {
  /** the answer, stripped (as Factory strips decoded outputs) */
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  promptLength: number;
  timings: GenerationTimings;
}

/** One input of a batch: a prompt (already formatted, or a question with `format`) and its images. */
export interface PipelineRequest {
  /** prompt text; `<image>` marks where each image goes */
  prompt: string;
  images?: (string | Buffer)[];
}

function readGenerationConfigEos(dir: string): number[] {
  const p = join(dir, "generation_config.json");
  if (!existsSync(p)) return [];
  try {
    const raw = JSON.parse(readFileSync(p, "utf8")) as { eos_token_id?: unknown };
    const e = raw.eos_token_id;
    return (Array.isArray(e) ? e : [e]).filter((x): x is number => Number.isInteger(x));
  } catch {
    return [];
  }
}

export class VisionLanguagePipeline {
  readonly eosTokenIds: number[];
  /** the template's end-of-answer string, when it is not a single special token (then it is an EOS id) */
  readonly stopStrings: string[];
  quantization: QuantizeReport | null = null;
  loadMs = 0;

  constructor(
    readonly model: TinyLlava,
    readonly tokenizer: TinyTokenizer,
    readonly images: ImageProcessor,
    readonly template: TemplateName,
    extraEos: number[] = [],
  ) {
    const eos = new Set<number>(extraEos);
    const add = (x: number | number[] | null | undefined) => {
      for (const v of [x].flat()) if (typeof v === "number") eos.add(v);
    };
    add(tokenizer.eosTokenId);
    add(model.config.text.eos_token_id);
    const stops: string[] = [];
    const sep = TEMPLATES[template]?.sep;
    if (sep) {
      const id = tokenizer.tokenId(sep);
      if (id !== null) eos.add(id);
      else stops.push(sep);
    }
    this.eosTokenIds = [...eos];
    this.stopStrings = stops;
  }

  static load(dir: string, opts: PipelineOptions = {}): VisionLanguagePipeline {
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new GenerationError(`${dir}: model folder not found`);
    const t0 = performance.now();
    const model = loadTinyLlava(dir, { dtype: opts.dtype, onProgress: opts.onProgress, quantize: opts.quantize });
    model.eval();
    const quantization: QuantizeReport | null = model.quantization;
    const tokDir =
      opts.tokenizerDir ??
      (existsSync(join(dir, "tokenizer.json")) || existsSync(join(dir, "vocab.json"))
        ? dir
        : join(dir, "language_model"));
    const tokenizer = TinyTokenizer.fromFolder(tokDir);
    const aspect = opts.imageAspect ?? model.config.image_aspect_ratio;
    const images = ImageProcessor.fromFolder(dir, model.config.vision, aspect);
    const conv = model.config.conv_version;
    const template =
      opts.template ??
      (conv && (conv in TEMPLATES || conv === "pretrain")
        ? (conv as TemplateName)
        : defaultTemplate(model.config.text.model_type));
    const p = new VisionLanguagePipeline(model, tokenizer, images, template, readGenerationConfigEos(dir));
    p.quantization = quantization;
    p.loadMs = performance.now() - t0;
    return p;
  }

  /** The prompt text for a conversation ending with a user turn (the template's, or the last turn verbatim for
   * `raw`). */
  formatPrompt(history: Turn[], hasImage: boolean): string {
    if (this.template === "raw") return history.map((t) => t.content).join("");
    return generationPrompt(this.template, history, { hasImage });
  }

  /** Token ids of a prompt text, `<image>` becoming the model's image placeholder. */
  encode(prompt: string): number[] {
    return this.model.config.source_format === "llava" && this.tokenizer.tokenId(IMAGE_TOKEN) !== null
      ? this.tokenizer.encodeWithImageToken(prompt)
      : this.tokenizer.encodeWithImages(prompt);
  }

  /** Pixel values [N, 3, H, W] for images (files or bytes). */
  async pixels(images: (string | Buffer)[]): Promise<Tensor | null> {
    if (images.length === 0) return null;
    const rows = await Promise.all(images.map((i) => this.images.preprocess(i)));
    const out = stack(rows, 0);
    disposeAll(rows);
    return out;
  }

  private options(o: AskOptions): GenerateOptions {
    return {
      ...o,
      tokenizer: this.tokenizer,
      eosTokenIds: [...this.eosTokenIds, ...(o.eosTokenIds ?? [])],
      stopStrings: [...this.stopStrings, ...(o.stopStrings ?? [])],
    };
  }

  private async requests(reqs: PipelineRequest[]): Promise<GenerateRequest[]> {
    const out: GenerateRequest[] = [];
    for (const [i, r] of reqs.entries()) {
      const ids = this.encode(r.prompt);
      const placeholders = ids.filter((x) => this.model.isImageToken(x)).length;
      const n = r.images?.length ?? 0;
      if (placeholders !== n && !(n > 0 && placeholders > 0 && this.model.config.source_format === "llava"))
        throw new GenerationError(
          `prompt ${i}: ${n} image(s) given but the prompt has ${placeholders} ${IMAGE_TOKEN} placeholder(s)`,
        );
      out.push({ inputIds: ids, pixelValues: await this.pixels(r.images ?? []) });
    }
    return out;
  }

  /** Starts a generation over prepared prompts; the caller steps it (`run.steps()`) or drains it. */
  async start(reqs: PipelineRequest[], opts: AskOptions = {}): Promise<{ run: GenerationRun; release(): void }> {
    const requests = await this.requests(reqs);
    const run = new GenerationRun(this.model, requests, this.options(opts));
    return { run, release: () => disposeAll(requests.map((r) => r.pixelValues)) };
  }

  /** Answers for a batch of prompts (batched generation; each stops on its own). */
  async generate(reqs: PipelineRequest[], opts: AskOptions = {}): Promise<Answer[]> {
    const { run, release } = await this.start(reqs, opts);
    try {
      for (const _ of run.steps());
      return run.outputs().map((o) => this.answerOf(o, run.timings));
    } finally {
      release();
    }
  }

  private answerOf(o: GenerateOutput, timings: GenerationTimings): Answer {
    return {
      text: o.text.trim(),
      tokens: o.tokens,
      finishReason: o.finishReason,
      promptLength: o.promptLength,
      timings,
    };
  }

  /** The prompt for one question about an optional image. */
  questionPrompt(question: string, hasImage: boolean): string {
    return this.formatPrompt([{ role: "user", content: question }], hasImage);
  }

  /** One question about one image (or none). */
  async answer(question: string, image: string | Buffer | null, opts: AskOptions = {}): Promise<Answer> {
    const [a] = await this.generate(
      [{ prompt: this.questionPrompt(question, image !== null), images: image === null ? [] : [image] }],
      opts,
    );
    return a as Answer;
  }

  /** Streams the answer to one question as text deltas (never splitting a character); `done` has the whole. */
  async *stream(
    question: string,
    image: string | Buffer | null,
    opts: AskOptions = {},
  ): AsyncGenerator<string, Answer, void> {
    return yield* this.streamPrompt(this.questionPrompt(question, image !== null), image === null ? [] : [image], opts);
  }

  /** Streams the continuation of a prepared prompt. */
  async *streamPrompt(
    prompt: string,
    images: (string | Buffer)[],
    opts: AskOptions = {},
  ): AsyncGenerator<string, Answer, void> {
    const { run, release } = await this.start([{ prompt, images }], opts);
    try {
      for (const events of run.steps()) {
        for (const e of events) if (e.delta) yield e.delta;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      return this.answerOf(run.outputs()[0] as GenerateOutput, run.timings);
    } finally {
      release();
    }
  }

  /** A multi-turn conversation about (at most) one image, as Factory's demo keeps it. */
  chat(image: string | Buffer | null = null): ChatSession {
    return new ChatSession(this, image);
  }

  dispose(): void {
    this.model.dispose();
  }
}

/** Chat history formatted exactly as the template does (the image in the first user turn); each `send` streams the
 * assistant's reply and appends both turns. */
export class ChatSession {
  readonly history: Turn[] = [];

  constructor(
    readonly pipe: VisionLanguagePipeline,
    public image: string | Buffer | null,
  ) {}

  /** The prompt the next `send(text)` would run. */
  promptFor(text: string): string {
    return this.pipe.formatPrompt([...this.history, { role: "user", content: text }], this.image !== null);
  }

  async *send(text: string, opts: AskOptions = {}): AsyncGenerator<string, Answer, void> {
    const prompt = this.promptFor(text);
    const answer = yield* this.pipe.streamPrompt(prompt, this.image === null ? [] : [this.image], opts);
    this.history.push({ role: "user", content: text }, { role: "assistant", content: answer.text });
    return answer;
  }

  /** Forgets the conversation (keeps the image). */
  reset(): void {
    this.history.length = 0;
  }

  /** A new image starts a new conversation (as Factory's demo). */
  setImage(image: string | Buffer | null): void {
    this.image = image;
    this.reset();
  }
}
