// `tinyllava eval run`: answers a benchmark's official question file with a model, as TinyLLaVA Factory's
// model_vqa_*.py scripts do (prompts, max_new_tokens, greedy decoding, the answers file), plus what they lack:
// resuming after a crash, batches of prompts, progress with an ETA, and clear errors for bad inputs.
//
// Factory's get_chunk selects this process's share of the questions (--num-chunks/--chunk-idx); `eval merge` then
// concatenates the chunk files in chunk order, as the scripts `cat` them.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { AskOptions, PipelineRequest } from "../../pipeline/index.js";
import { EvaluationError } from "../errors.js";
import { writeFileAtomic } from "../jsonio.js";
import { pyStrip } from "../python.js";
import { parseMultiChoiceResponse } from "../scorers/mmmu.js";
import {
  AnswersLock,
  AnswersWriter,
  answerId,
  answerLine,
  type ExistingAnswers,
  idText,
  readExistingAnswers,
  sameId,
} from "./answers.js";
import { type BenchmarkSpec, benchmarkSpec, type EvalQuestion, readQuestions } from "./benchmarks.js";
import { chunkRange } from "./chunks.js";

/** What the runner needs from a model: VisionLanguagePipeline's prompt building and step-wise generation. */
export interface RunModel {
  questionPrompt(question: string, hasImage: boolean): string;
  start(
    reqs: PipelineRequest[],
    opts: AskOptions,
  ): Promise<{
    run: { steps(): Iterable<unknown>; outputs(): Array<{ text: string; finishReason: string }> };
    release(): void;
  }>;
}

export interface RunProgress {
  /** answers in the file (resumed + written by this run) */
  done: number;
  /** questions in this chunk */
  total: number;
  /** answers that were already in the file when the run started */
  resumed: number;
}

export interface RunOptions {
  benchmark: string;
  /** the benchmark's folder in the official layout (where the question file is) */
  dataDir: string;
  /** default: <dataDir>/<the official question file> */
  questionFile?: string;
  /** default: <dataDir>/<the official image folder> */
  imagesDir?: string;
  answersPath: string;
  /** the model folder as given (model_id of ScienceQA/MMMU answers is its last component) */
  modelPath: string;
  /** loads the model; called only when questions remain */
  loadModel: () => RunModel | Promise<RunModel>;
  numChunks?: number;
  chunkIdx?: number;
  /** prompts per generate() call (default 1, as Factory) */
  batchSize?: number;
  /** default: the benchmark script's (128, or 1024 for ScienceQA, MMMU, MM-Vet, LLaVA-Bench) */
  maxNewTokens?: number;
  /** 0 (default, as the official scripts pass): greedy */
  temperature?: number;
  numBeams?: number;
  /** sampling seed (with temperature > 0); each batch uses seed + the file position of its first question */
  seed?: number;
  /** only the first N questions of the question file (before chunking) */
  limit?: number;
  /** model-loading settings that change the answers (dtype, template, quantisation, …), recorded for resuming */
  modelSettings?: Record<string, string | number | null>;
  onProgress?: (p: RunProgress) => void;
  log?: (message: string) => void;
  /** stops after the current decode step; the unfinished batch is not written (a rerun resumes there) */
  signal?: AbortSignal;
}

export interface RunResult {
  benchmark: string;
  answersPath: string;
  questionFile: string;
  /** [start, end) of this chunk in the question file */
  chunk: [number, number];
  total: number;
  resumed: number;
  /** answers written by this run */
  answered: number;
  /** bytes of an incomplete last line (a crash mid-write) that were dropped */
  droppedBytes: number;
  interrupted: boolean;
  maxNewTokens: number;
}

/** args.model_path.split('/')[-1] (trailing slashes ignored, where Factory would write ""). */
export function modelPathName(modelPath: string): string {
  return modelPath.replace(/\/+$/, "").split("/").pop() ?? "";
}

/** The run settings that change the answers; a resumed run must have the same (`<answers>.run.json`). */
function runSettings(o: RunOptions, spec: BenchmarkSpec, maxNewTokens: number): Record<string, unknown> {
  return {
    benchmark: spec.benchmark,
    model: modelPathName(o.modelPath),
    max_new_tokens: maxNewTokens,
    temperature: o.temperature ?? 0,
    num_beams: o.numBeams ?? 1,
    seed: (o.temperature ?? 0) > 0 ? (o.seed ?? 0) : null,
    ...(o.modelSettings ?? {}),
  };
}

function checkSettings(path: string, now: Record<string, unknown>, existing: number): void {
  if (!existsSync(path) || existing === 0) return;
  let before: Record<string, unknown>;
  try {
    before = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new EvaluationError(`${path}: invalid JSON (${(e as Error).message})`);
  }
  for (const k of new Set([...Object.keys(before), ...Object.keys(now)])) {
    const a = JSON.stringify(before[k] ?? null);
    const b = JSON.stringify(now[k] ?? null);
    if (a !== b)
      throw new EvaluationError(
        `${path}: the answers file was started with ${k} ${a}; this run has ${b}. Resume with the same settings, or write to another --answers`,
      );
  }
}

/** The pseudo-random option MMMU's script draws with random.choice — derived from the question id, so reruns agree. */
export function mmmuRandomChoice(choices: readonly string[], questionId: string | number): string {
  const h = createHash("sha256")
    .update(JSON.stringify(["mmmu-random-choice", questionId]))
    .digest();
  return choices[h.readUInt32BE(0) % choices.length] as string;
}

/** What model_vqa_mmmu.py writes as "text" for an output (null output: a multi-image question, not run). */
export function mmmuAnswerText(q: EvalQuestion, output: string | null): string {
  const m = q.mmmu as NonNullable<EvalQuestion["mmmu"]>;
  const mc = m.questionType === "multiple-choice";
  const allChoices = m.allChoices ?? [];
  let out: string;
  if (output === null)
    out = mc ? mmmuRandomChoice(allChoices, q.questionId) : "INVALID GENERATION FOR MULTIPLE IMAGE INPUTS";
  else out = output;
  if (!mc) return out;
  const parsed = parseMultiChoiceResponse(out, allChoices, m.index2ans ?? []).parsed;
  return parsed ?? mmmuRandomChoice(allChoices, q.questionId);
}

const tick = () => new Promise<void>((r) => setImmediate(r));

export async function runBenchmark(o: RunOptions): Promise<RunResult> {
  const spec = benchmarkSpec(o.benchmark);
  const questionFile = o.questionFile ?? join(o.dataDir, spec.questionFile);
  const imagesDir = o.imagesDir ?? join(o.dataDir, spec.imageFolder);
  const numChunks = o.numChunks ?? 1;
  const chunkIdx = o.chunkIdx ?? 0;
  const batchSize = o.batchSize ?? 1;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new EvaluationError(`batch size ${batchSize}: expected an integer ≥ 1`);
  const maxNewTokens = o.maxNewTokens ?? spec.maxNewTokens;
  const log = o.log ?? (() => {});

  let questions = readQuestions(spec, questionFile);
  if (o.limit !== undefined) questions = questions.slice(0, o.limit);
  const [start, end] = chunkRange(questions.length, numChunks, chunkIdx);
  const chunk = questions.slice(start, end);
  const result: RunResult = {
    benchmark: spec.benchmark,
    answersPath: o.answersPath,
    questionFile,
    chunk: [start, end],
    total: chunk.length,
    resumed: 0,
    answered: 0,
    droppedBytes: 0,
    interrupted: false,
    maxNewTokens,
  };
  if (maxNewTokens !== spec.maxNewTokens)
    log(
      `${spec.benchmark}: max_new_tokens ${maxNewTokens} instead of ${spec.script}'s ${spec.maxNewTokens}; scores are not comparable with published ones`,
    );

  const lock = new AnswersLock(o.answersPath);
  lock.acquire();
  let writer: AnswersWriter | null = null;
  try {
    const existing = readExistingAnswers(o.answersPath);
    checkPrefix(existing, chunk, o.answersPath, numChunks, chunkIdx);
    result.resumed = existing.lines.length;
    result.droppedBytes = existing.partialBytes;
    const settingsPath = `${o.answersPath}.run.json`;
    const settings = runSettings(o, spec, maxNewTokens);
    checkSettings(settingsPath, settings, existing.lines.length);
    if (existing.lines.length > 0 && !existsSync(settingsPath))
      log(
        `${o.answersPath}: no ${settingsPath} (not written by eval run?): resuming without checking the run settings`,
      );
    const remaining = chunk.slice(existing.lines.length);
    const imagePath = (q: EvalQuestion) => resolve(imagesDir, q.image as string);
    checkImages(remaining, imagePath, imagesDir);
    if (existing.lines.length > 0)
      log(`resuming ${o.answersPath}: ${existing.lines.length} of ${chunk.length} questions already answered`);
    if (existing.partialBytes > 0)
      log(
        `${o.answersPath}: dropping an incomplete last line (${existing.partialBytes} bytes) left by an interrupted run`,
      );
    writeFileAtomic(settingsPath, `${JSON.stringify(settings, null, 2)}\n`);
    const startProgress = { done: existing.lines.length, total: chunk.length, resumed: existing.lines.length };
    if (remaining.length === 0) {
      if (existing.partialBytes > 0) new AnswersWriter(o.answersPath, existing.validBytes).close();
      o.onProgress?.(startProgress);
      return result;
    }

    const model = await o.loadModel();
    const modelId = spec.modelId === "path" ? modelPathName(o.modelPath) : null;
    const promptOf = (q: EvalQuestion) => model.questionPrompt(q.message, q.image !== null);
    const promptField = (q: EvalQuestion, prompt: string) => (spec.promptField === "question" ? q.text : prompt);
    existing.lines.forEach((l, k) => {
      const q = chunk[k] as EvalQuestion;
      const want = promptField(q, promptOf(q));
      if (l.prompt !== want)
        throw new EvaluationError(
          `${l.line.where}: field "prompt" differs from the prompt this run builds for question ${idText(q.questionId)} (${q.where}); ` +
            "the file was written with another template or question file — write to another --answers",
        );
    });

    writer = new AnswersWriter(o.answersPath, existing.validBytes);
    o.onProgress?.(startProgress);
    const ask: AskOptions = { maxNewTokens, temperature: o.temperature ?? 0, numBeams: o.numBeams, signal: o.signal };
    for (let b = 0; b < remaining.length; b += batchSize) {
      if (o.signal?.aborted) {
        result.interrupted = true;
        break;
      }
      const batch = remaining.slice(b, b + batchSize);
      const prompts = batch.map(promptOf);
      // MMMU's multi-image questions are not run (no image in the entry)
      const run = batch.map((q) => !(spec.format === "mmmu" && q.image === null));
      const reqs: PipelineRequest[] = [];
      batch.forEach((q, i) => {
        if (run[i]) reqs.push({ prompt: prompts[i] as string, images: q.image === null ? [] : [imagePath(q)] });
      });
      let outputs: string[] = [];
      if (reqs.length > 0) {
        const seed = (o.temperature ?? 0) > 0 ? (o.seed ?? 0) + (batch[0] as EvalQuestion).index : undefined;
        const gen = await generate(model, reqs, { ...ask, seed });
        if (gen === null) {
          result.interrupted = true;
          break;
        }
        outputs = gen;
      }
      let next = 0;
      const lines = batch.map((q, i) => {
        const raw = run[i] ? (outputs[next++] as string) : null;
        const text = spec.format === "mmmu" ? mmmuAnswerText(q, raw) : pyStrip(raw as string);
        const prompt = promptField(q, prompts[i] as string);
        return answerLine({
          question_id: q.questionId,
          prompt,
          text,
          answer_id: answerId([spec.benchmark, modelPathName(o.modelPath), q.questionId, prompt, text]),
          model_id: modelId,
          metadata: {},
        });
      });
      writer.write(lines);
      result.answered += lines.length;
      o.onProgress?.({ done: result.resumed + result.answered, total: chunk.length, resumed: result.resumed });
    }
    return result;
  } finally {
    writer?.close();
    lock.release();
  }
}

/** Generates one batch, yielding to the event loop between steps; null when aborted. */
async function generate(model: RunModel, reqs: PipelineRequest[], ask: AskOptions): Promise<string[] | null> {
  let started: Awaited<ReturnType<RunModel["start"]>>;
  try {
    started = await model.start(reqs, ask);
  } catch (e) {
    if (ask.signal?.aborted) return null;
    throw e;
  }
  try {
    for (const _ of started.run.steps()) await tick();
    const outs = started.run.outputs();
    if (outs.some((x) => x.finishReason === "abort")) return null;
    return outs.map((x) => x.text);
  } catch (e) {
    if (ask.signal?.aborted) return null;
    throw e;
  } finally {
    started.release();
  }
}

function checkPrefix(
  existing: ExistingAnswers,
  chunk: readonly EvalQuestion[],
  path: string,
  numChunks: number,
  chunkIdx: number,
): void {
  const which = numChunks > 1 ? `chunk ${chunkIdx} of ${numChunks}` : "the question file";
  if (existing.lines.length > chunk.length)
    throw new EvaluationError(
      `${path}: has ${existing.lines.length} answers but ${which} has ${chunk.length} questions; it belongs to another question file, --limit or chunking — write to another --answers`,
    );
  existing.lines.forEach((l, k) => {
    const q = chunk[k] as EvalQuestion;
    if (!sameId(l.questionId, q.questionId))
      throw new EvaluationError(
        `${l.line.where}: question_id ${idText(l.questionId)}, but question ${k + 1} of ${which} is ${idText(q.questionId)} (${q.where}); ` +
          "an answers file is resumed only if it holds the first answers of the same questions, in order — write to another --answers",
      );
  });
}

function checkImages(qs: readonly EvalQuestion[], imagePath: (q: EvalQuestion) => string, imagesDir: string): void {
  const missing: string[] = [];
  let count = 0;
  const seen = new Set<string>();
  for (const q of qs) {
    if (q.image === null) continue;
    const p = imagePath(q);
    if (seen.has(p)) continue;
    seen.add(p);
    if (!existsSync(p)) {
      count++;
      if (missing.length < 3) missing.push(`${q.where}: "image" ${JSON.stringify(q.image)} → ${p}`);
    }
  }
  if (count > 0)
    throw new EvaluationError(
      `${count} image file(s) not found in ${imagesDir} (--images); first: ${missing.join("; ")}`,
    );
}
