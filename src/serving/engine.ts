// The model's thread (run by EngineWorker from src/serving/scheduler.ts): loads the pipeline — tensors live in this
// thread's engine — and runs the generations. A job is prepared as it arrives (its prompt formatted and tokenised,
// its image decoded into pixel values: pipeline.start, whose run is not stepped), concurrently with the decoding of
// the jobs already running. At every step boundary the prepared jobs become new runs — one GenerationRun per group of
// jobs with the same options, a batch (left-padded, each row stopping on its own) — and all runs advance one decode
// step in turn. Between steps the thread yields to its event loop, so new jobs and cancellations are seen within one
// step. A cancelled job that is not generating yet leaves at once; in a run, the run is aborted when all its jobs are
// cancelled (GenerationRun has no way yet to drop a single row: a cancelled row's text is discarded and the row
// finishes with the others).
import { basename, resolve } from "node:path";
import { GenerationError } from "../errors.js";
import { type GenerateOptions, type GenerateRequest, GenerationRun, type StepEvent } from "../generation/generate.js";
import { randomModel } from "../models/init.js";
import { presetConfig } from "../models/presets.js";
import { type AskOptions, VisionLanguagePipeline } from "../pipeline/index.js";
import { ImageProcessor, preprocessorConfig } from "../processing/image.js";
import { defaultTemplate, TEMPLATES } from "../processing/templates.js";
import { TinyTokenizer } from "../processing/tokenizer.js";
import { manualSeed } from "../torch/creation.js";
import { ELEMENT_SIZE } from "../torch/dtype.js";
import { emptyCache, memoryStats } from "../torch/memory.js";
import { serveWorker } from "../torch/worker.js";
import type { JobEvent, JobSpec, ModelInfo, ModelSpec, WorkerStats } from "./jobs.js";
import { promptOf } from "./prompt.js";

/** How long a prepared job may wait for others still being prepared, to start in one batch with them (ms). */
let batchWindowMs = 10;

interface Prepared {
  /** the prompt's ids and pixel values */
  request: GenerateRequest;
  /** the pipeline's options for it (EOS ids, stop strings, tokenizer, sampling) */
  opts: GenerateOptions;
  release: () => void;
}

interface Job {
  spec: JobSpec;
  events: JobEvent[];
  wake: (() => void) | null;
  ended: boolean;
  error: Error | null;
  cancelled: boolean;
  prepared: Prepared | null;
  readyAt: number;
  /** run alone (its batch failed to start: find out which request was at fault) */
  solo: boolean;
  run: Active | null;
}

interface Active {
  jobs: Job[];
  run: GenerationRun;
  steps: Generator<StepEvent[], void, void>;
  controller: AbortController;
  started: boolean;
}

let pipe: VisionLanguagePipeline | null = null;
let info: ModelInfo | null = null;
let preparing = 0;
const ready: Job[] = [];
const runs: Active[] = [];
const jobs = new Map<string, Job>();
let looping = false;

function loadPipeline(spec: ModelSpec): VisionLanguagePipeline {
  if (spec.kind === "folder") {
    return VisionLanguagePipeline.load(spec.dir, {
      dtype: spec.dtype,
      quantize: spec.quantize ?? null,
      template: spec.template,
      imageAspect: spec.imageAspect,
    });
  }
  const t0 = performance.now();
  const cfg = presetConfig(spec.preset);
  manualSeed(spec.seed ?? 0);
  const model = randomModel(cfg, spec.dtype ?? "float32", spec.quantize === "int8", spec.seed ?? 0);
  const quantization = model.quantization;
  const tokenizer = TinyTokenizer.fromFolder(spec.tokenizerDir);
  if (tokenizer.vocabSize > cfg.text.vocab_size)
    throw new GenerationError(
      `${spec.tokenizerDir}: the tokenizer has ${tokenizer.vocabSize} tokens, more than the model's ${cfg.text.vocab_size}`,
    );
  const images = new ImageProcessor(preprocessorConfig(null, cfg.vision), cfg.image_aspect_ratio);
  const p = new VisionLanguagePipeline(model, tokenizer, images, spec.template ?? defaultTemplate(cfg.text.model_type));
  p.quantization = quantization;
  p.loadMs = performance.now() - t0;
  return p;
}

function weightBytes(p: VisionLanguagePipeline): number {
  const seen = new Set<number>();
  let n = 0;
  for (const t of p.model.stateDict().values()) {
    if (seen.has(t.handle)) continue;
    seen.add(t.handle);
    n += t.numel() * ELEMENT_SIZE[t.dtype];
  }
  return n;
}

function load(spec: ModelSpec, o: { batchWindowMs?: number } = {}): ModelInfo {
  if (pipe) throw new GenerationError("the serving worker has a model already");
  batchWindowMs = o.batchWindowMs ?? batchWindowMs;
  pipe = loadPipeline(spec);
  const id = spec.id ?? (spec.kind === "folder" ? basename(resolve(spec.dir)) : `${spec.preset}-random`);
  info = {
    id,
    template: pipe.template,
    systemPrompt: pipe.template in TEMPLATES,
    contextLength: pipe.model.config.text.max_position_embeddings,
    dtype: pipe.model.dtype,
    quantization: pipe.quantization ? "int8" : null,
    parameters: pipe.model.numParameters(),
    weightBytes: weightBytes(pipe),
    loadMs: pipe.loadMs,
  };
  return info;
}

function askOptions(spec: JobSpec): AskOptions {
  const p = spec.params;
  const o: GenerateOptions = { maxNewTokens: p.maxNewTokens, stopStrings: p.stop };
  if (p.repetitionPenalty !== 1) o.repetitionPenalty = p.repetitionPenalty;
  if (p.temperature > 0) {
    o.temperature = p.temperature;
    o.topP = p.topP;
    o.topK = p.topK;
    if (p.seed !== null) o.seed = p.seed;
  } else o.temperature = 0;
  return o;
}

/** Frees what a job holds (its pixel values) once it has ended. */
function settle(job: Job): void {
  job.ended = true;
  job.prepared?.release();
  job.prepared = null;
  job.wake?.();
}

function push(job: Job, e: JobEvent): void {
  if (job.ended) return;
  job.events.push(e);
  if (e.type === "done") settle(job);
  else job.wake?.();
}

function fail(job: Job, e: Error): void {
  if (job.ended) return;
  job.error = e;
  settle(job);
}

function endAborted(job: Job): void {
  push(job, { type: "done", finishReason: "abort", promptTokens: 0, completionTokens: 0, batchSize: 1 });
}

/** The prompt and pixel values of a job, through pipeline.start (validation, tokenisation, the pipeline's options);
 * its run is never stepped: the job's request joins a batch instead. */
async function prepare(job: Job): Promise<void> {
  const p = pipe as VisionLanguagePipeline;
  const { spec } = job;
  preparing++;
  try {
    const prompt = promptOf(p, { turns: spec.turns, system: spec.system, hasImage: spec.image !== null });
    const images = spec.image ? [Buffer.from(spec.image.buffer, spec.image.byteOffset, spec.image.byteLength)] : [];
    const { run, release } = await p.start([{ prompt, images }], askOptions(spec));
    job.prepared = { request: run.requests[0] as GenerateRequest, opts: run.opts, release };
    if (job.cancelled) {
      endAborted(job);
      return;
    }
    job.readyAt = performance.now();
    ready.push(job);
  } catch (e) {
    fail(job, e as Error);
  } finally {
    preparing--;
    kick();
  }
}

function kick(): void {
  if (looping) return;
  looping = true;
  setImmediate(() => {
    loop().catch((e) => {
      // a bug in the loop itself: every job gets the error rather than hanging
      for (const j of jobs.values()) fail(j, e as Error);
    });
  });
}

async function loop(): Promise<void> {
  try {
    while (ready.length > 0 || runs.length > 0) {
      // jobs still being prepared join the batch if they are ready soon
      const gather = preparing > 0 && performance.now() - (ready[0]?.readyAt ?? 0) < batchWindowMs;
      if (ready.length > 0 && !gather) startRuns();
      for (const a of [...runs]) step(a);
      if (runs.length === 0) await new Promise<void>((r) => setTimeout(r, 1));
      else await new Promise<void>((r) => setImmediate(r));
    }
  } finally {
    looping = false;
  }
  // idle: the allocator's cached blocks (activations of the last batches) go back to the OS, so an idle server's
  // RSS is the weights'
  if (preparing === 0 && ready.length === 0 && runs.length === 0) emptyCache();
}

/** The ready jobs → runs: one per group with the same batch key (in arrival order); solo jobs alone. */
function startRuns(): void {
  const p = pipe as VisionLanguagePipeline;
  const taken = ready.splice(0, ready.length).filter((j) => !j.cancelled && !j.ended);
  const groups = new Map<string, Job[]>();
  for (const j of taken) {
    const key = j.solo ? `solo:${j.spec.id}` : j.spec.batchKey;
    const g = groups.get(key);
    if (g) g.push(j);
    else groups.set(key, [j]);
  }
  for (const group of groups.values()) {
    const controller = new AbortController();
    const first = group[0]?.prepared as Prepared;
    let run: GenerationRun;
    try {
      // the jobs of a group have equal options (their batch key), so the first one's serve for all
      run = new GenerationRun(
        p.model,
        group.map((j) => (j.prepared as Prepared).request),
        { ...first.opts, signal: controller.signal },
      );
    } catch (e) {
      retryAlone(group, e as Error);
      continue;
    }
    const a: Active = { jobs: group, run, steps: run.steps(), controller, started: false };
    for (const j of group) j.run = a;
    runs.push(a);
  }
}

/** A batch that failed to start: each job again on its own (the error belongs to one of them); a job alone fails. */
function retryAlone(group: Job[], e: Error): void {
  if (group.length === 1) {
    fail(group[0] as Job, e);
    return;
  }
  for (const j of group) {
    j.run = null;
    if (j.cancelled) endAborted(j);
    else {
      j.solo = true;
      ready.push(j);
    }
  }
}

function step(a: Active): void {
  let r: IteratorResult<StepEvent[], void>;
  try {
    r = a.steps.next();
  } catch (e) {
    runs.splice(runs.indexOf(a), 1);
    if (a.controller.signal.aborted) for (const j of a.jobs) endAborted(j);
    else if (!a.started) retryAlone(a.jobs, e as Error);
    else for (const j of a.jobs) fail(j, e as Error);
    return;
  }
  if (!a.started) {
    a.started = true;
    const outputs = a.run.outputs();
    a.jobs.forEach((j, i) => {
      push(j, { type: "started", promptTokens: outputs[i]?.promptLength ?? 0 });
    });
  }
  if (r.done) {
    runs.splice(runs.indexOf(a), 1);
    for (const j of a.jobs) if (!j.ended) endAborted(j);
    return;
  }
  for (const e of r.value) {
    const j = a.jobs[e.index] as Job;
    if (e.delta && !j.cancelled) push(j, { type: "delta", text: e.delta });
    if (e.finishReason) {
      const o = a.run.outputs()[e.index];
      push(j, {
        type: "done",
        finishReason: e.finishReason,
        promptTokens: o?.promptLength ?? 0,
        completionTokens: o?.tokens.length ?? 0,
        batchSize: a.jobs.length,
      });
    }
  }
}

async function* generate(spec: JobSpec): AsyncGenerator<JobEvent, void, void> {
  if (!pipe) throw new GenerationError("no model loaded");
  if (jobs.has(spec.id)) throw new GenerationError(`job ${spec.id} exists already`);
  const job: Job = {
    spec,
    events: [],
    wake: null,
    ended: false,
    error: null,
    cancelled: false,
    prepared: null,
    readyAt: 0,
    solo: false,
    run: null,
  };
  jobs.set(spec.id, job);
  void prepare(job);
  try {
    for (;;) {
      const e = job.events.shift();
      if (e) {
        yield e;
        continue;
      }
      if (job.error) throw job.error;
      if (job.ended) return;
      await new Promise<void>((r) => {
        job.wake = r;
      });
      job.wake = null;
    }
  } finally {
    jobs.delete(spec.id);
  }
}

function cancel(id: string): boolean {
  const job = jobs.get(id);
  if (!job || job.ended) return false;
  job.cancelled = true;
  const at = ready.indexOf(job);
  if (at >= 0) {
    ready.splice(at, 1);
    endAborted(job);
  } else if (job.run?.jobs.every((j) => j.cancelled)) {
    job.run.controller.abort(new GenerationError("cancelled"));
  }
  // (a job still being prepared ends when its preparation does)
  return true;
}

function stats(): WorkerStats {
  let rows = 0;
  for (const a of runs) rows += a.jobs.filter((j) => !j.ended).length;
  const m = memoryStats();
  return {
    runs: runs.length,
    rows,
    waiting: ready.length + preparing,
    rssBytes: process.memoryUsage().rss,
    allocatedBytes: m.allocatedBytes,
    cachedBytes: m.cachedBytes,
    peakBytes: m.peakBytes,
  };
}

/** Ends every job and frees the model once the loop has stopped. */
async function dispose(): Promise<void> {
  for (const j of ready.splice(0, ready.length)) fail(j, new GenerationError("the server is shutting down"));
  for (const a of runs) a.controller.abort(new GenerationError("the server is shutting down"));
  while (looping || preparing > 0) await new Promise<void>((r) => setTimeout(r, 5));
  pipe?.dispose();
  pipe = null;
}

serveWorker({ load, generate, cancel, stats, dispose });
