// The HTTP thread's side of the model: a worker thread holds the model (src/serving/engine.ts, run by EngineWorker),
// and this queue decides what it gets. At most `maxConcurrency` jobs are in the worker at once (its batches are made
// from those); up to `maxQueue` more wait here, in arrival order; beyond that a request is refused (429 with a
// Retry-After estimated from recent job durations). Nothing here waits for the worker: /health answers from these
// counters while a generation runs.
import { EngineWorker } from "../torch/worker.js";
import { ApiError } from "./errors.js";
import type { JobEvent, JobSpec, ModelInfo, ModelSpec, WorkerStats } from "./jobs.js";

export interface SchedulerOptions {
  /** most jobs generating at once (rows of the worker's batches); default 8 */
  maxConcurrency?: number;
  /** most jobs waiting beyond those; default 64 */
  maxQueue?: number;
  /** libtorch/OpenBLAS threads of the model's thread (default: all cores, or TINYLLAVA_NUM_THREADS) */
  threads?: number;
  /** how long a prepared request may wait for others still being prepared (image decoding), to share their batch;
   * default 10 ms */
  batchWindowMs?: number;
}

export interface Job {
  /** the job's events, ending after "done"; throws the worker's error (a 4xx/5xx cause) */
  events: AsyncIterable<JobEvent>;
  /** the client is gone: drop the job (from the queue, or its generation) */
  cancel(): void;
}

interface Entry {
  spec: JobSpec;
  queue: JobEvent[];
  error: Error | null;
  ended: boolean;
  cancelled: boolean;
  dispatched: boolean;
  wake: (() => void) | null;
  enqueuedAt: number;
}

const workerUrl = () => new URL(import.meta.url.endsWith(".ts") ? "./engine.ts" : "./engine.js", import.meta.url);

export class Scheduler {
  readonly maxConcurrency: number;
  readonly maxQueue: number;
  private readonly waiting: Entry[] = [];
  private inFlightCount = 0;
  private failure: Error | null = null;
  private closing = false;
  /** mean job duration (ms), exponentially weighted, for Retry-After */
  private meanJobMs = 0;
  /** jobs finished (any way), jobs whose client left, generations stopped before their end */
  completed = 0;
  cancelled = 0;
  aborted = 0;

  private constructor(
    private readonly worker: EngineWorker,
    readonly info: ModelInfo,
    o: SchedulerOptions,
  ) {
    this.maxConcurrency = o.maxConcurrency ?? 8;
    this.maxQueue = o.maxQueue ?? 64;
  }

  /** Starts the model's thread and loads the model in it. */
  static async start(spec: ModelSpec, o: SchedulerOptions = {}): Promise<Scheduler> {
    const worker = new EngineWorker(workerUrl(), { threads: o.threads });
    try {
      const info = await worker.call<ModelInfo>("load", spec, { batchWindowMs: o.batchWindowMs ?? 10 });
      return new Scheduler(worker, info, o);
    } catch (e) {
      await worker.terminate();
      throw e;
    }
  }

  get queueLength(): number {
    return this.waiting.length;
  }
  get inFlight(): number {
    return this.inFlightCount;
  }
  get healthy(): boolean {
    return this.failure === null && !this.closing;
  }
  get failureMessage(): string | null {
    return this.failure?.message ?? null;
  }

  /** Seconds a refused client should wait: the queue ahead of it divided over the slots, at the recent job time. */
  retryAfterSeconds(): number {
    const per = this.meanJobMs > 0 ? this.meanJobMs / 1000 : 1;
    return Math.min(60, Math.max(1, Math.ceil((per * (this.waiting.length + 1)) / this.maxConcurrency)));
  }

  /** Queues a job; throws a 429 when the queue is full, a 503 when the model's thread has failed. */
  submit(spec: JobSpec): Job {
    if (this.failure || this.closing)
      throw new ApiError(
        503,
        this.failure ? `The model's worker failed: ${this.failure.message}` : "The server is shutting down.",
        "server_error",
        "unavailable",
      );
    if (this.inFlightCount >= this.maxConcurrency && this.waiting.length >= this.maxQueue) {
      const s = this.retryAfterSeconds();
      throw new ApiError(
        429,
        `The server is at capacity (${this.inFlightCount} generating, ${this.waiting.length} waiting): retry in ${s} s.`,
        "rate_limit_error",
        "queue_full",
        null,
        { "Retry-After": String(s) },
      );
    }
    const e: Entry = {
      spec,
      queue: [],
      error: null,
      ended: false,
      cancelled: false,
      dispatched: false,
      wake: null,
      enqueuedAt: performance.now(),
    };
    this.waiting.push(e);
    this.pump();
    return { events: this.iterate(e), cancel: () => this.cancel(e) };
  }

  private async *iterate(e: Entry): AsyncGenerator<JobEvent, void, void> {
    for (;;) {
      const ev = e.queue.shift();
      if (ev) {
        yield ev;
        continue;
      }
      if (e.cancelled) return;
      if (e.error) throw e.error;
      if (e.ended) return;
      await new Promise<void>((r) => {
        e.wake = r;
      });
      e.wake = null;
    }
  }

  private cancel(e: Entry): void {
    if (e.cancelled || e.ended) return;
    e.cancelled = true;
    this.cancelled++;
    e.wake?.();
    if (!e.dispatched) {
      const at = this.waiting.indexOf(e);
      if (at >= 0) this.waiting.splice(at, 1);
      return;
    }
    this.worker.call("cancel", e.spec.id).catch(() => {});
  }

  private pump(): void {
    while (this.inFlightCount < this.maxConcurrency && this.waiting.length > 0 && !this.failure) {
      const e = this.waiting.shift() as Entry;
      this.dispatch(e);
    }
  }

  private dispatch(e: Entry): void {
    e.dispatched = true;
    this.inFlightCount++;
    const t0 = performance.now();
    (async () => {
      try {
        // drained to the end even when cancelled: the slot is free only when the worker's row is
        for await (const ev of this.worker.stream<JobEvent>("generate", e.spec)) {
          if (ev.type === "done" && ev.finishReason === "abort") this.aborted++;
          if (e.cancelled) continue;
          e.queue.push(ev);
          e.wake?.();
        }
      } catch (err) {
        e.error = err as Error;
        await this.checkWorker();
      } finally {
        e.ended = true;
        e.wake?.();
        this.inFlightCount--;
        this.completed++;
        const ms = performance.now() - t0;
        this.meanJobMs = this.meanJobMs === 0 ? ms : 0.8 * this.meanJobMs + 0.2 * ms;
        this.pump();
      }
    })();
  }

  /** After an error: is the model's thread still answering? If not, the server reports itself failed. */
  private async checkWorker(): Promise<void> {
    if (this.failure || this.closing) return;
    try {
      await Promise.race([
        this.worker.call("stats"),
        new Promise((_, reject) => setTimeout(() => reject(new Error("no answer")), 60_000).unref()),
      ]);
    } catch (err) {
      this.failure = err as Error;
      for (const w of this.waiting.splice(0, this.waiting.length)) {
        w.error = new ApiError(
          503,
          `The model's worker failed: ${this.failure.message}`,
          "server_error",
          "unavailable",
        );
        w.ended = true;
        w.wake?.();
      }
    }
  }

  /** The worker's own view (waits for the worker's next step boundary: not for /health). */
  stats(): Promise<WorkerStats> {
    return this.worker.call<WorkerStats>("stats");
  }

  /** Refuses new jobs, ends the running ones and stops the model's thread. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const w of this.waiting.splice(0, this.waiting.length)) {
      w.cancelled = true;
      w.wake?.();
    }
    try {
      await Promise.race([this.worker.call("dispose"), new Promise((r) => setTimeout(r, 10_000).unref())]);
    } catch {
      // a failed worker: terminated below all the same
    }
    await this.worker.terminate();
  }
}
