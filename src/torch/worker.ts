// Long work off the main thread. A worker thread loads the engine (its own libtorch thread settings and tensor
// table) and a module of handlers; the main thread calls them and gets results back, so a server's event loop
// stays responsive during a forward, a training step or a generation. Tensors cross the boundary as bytes
// (dtype + shape + data); results are identical to the synchronous path because the same code runs.
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { fromBuffer } from "./creation.js";
import type { DType } from "./dtype.js";
import { Tensor } from "./tensor.js";

interface EncodedTensor {
  __tensor: true;
  dtype: DType;
  shape: number[];
  bytes: ArrayBuffer;
}

/** Deep-converts Tensors inside arrays/plain objects to transferable byte records. */
export function encodeValue(v: unknown, transfer: ArrayBuffer[] = []): unknown {
  if (v instanceof Tensor) {
    const buf = v.toBuffer();
    const bytes = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
    transfer.push(bytes);
    return { __tensor: true, dtype: v.dtype, shape: v.shape, bytes } satisfies EncodedTensor;
  }
  if (Array.isArray(v)) return v.map((x) => encodeValue(x, transfer));
  if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, encodeValue(x, transfer)]));
  }
  return v;
}

/** Inverse of encodeValue: byte records become Tensors (owned by the caller). */
export function decodeValue(v: unknown): unknown {
  if (v !== null && typeof v === "object" && (v as EncodedTensor).__tensor === true) {
    const e = v as EncodedTensor;
    return fromBuffer(new Uint8Array(e.bytes), e.dtype, e.shape);
  }
  if (Array.isArray(v)) return v.map(decodeValue);
  if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decodeValue(x)]));
  }
  return v;
}

type Msg =
  | { id: number; kind: "result"; value: unknown }
  | { id: number; kind: "chunk"; value: unknown }
  | { id: number; kind: "end" }
  | { id: number; kind: "error"; message: string; name: string };

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  onChunk?: (v: unknown) => void;
}

/** A worker thread running the handlers exported by `moduleUrl` (a module that calls `serveWorker`). */
export class EngineWorker {
  private readonly worker: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  private failed: Error | null = null;

  constructor(moduleUrl: string | URL, opts: { threads?: number; data?: unknown } = {}) {
    const env = { ...process.env };
    if (opts.threads !== undefined) env.TINYLLAVA_NUM_THREADS = String(opts.threads);
    const url = new URL(moduleUrl);
    if (url.pathname.endsWith(".ts")) {
      // TypeScript sources (tests, tsx users): Node 20 does not apply `--import tsx` to workers, so register it here.
      const tsx = import.meta.resolve("tsx/esm/api");
      const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`;
      this.worker = new Worker(boot, { eval: true, workerData: opts.data, env });
    } else {
      this.worker = new Worker(url, { workerData: opts.data, env });
    }
    this.worker.on("message", (m: Msg) => this.onMessage(m));
    this.worker.on("error", (e) => this.failAll(e));
    this.worker.on("exit", (code) => {
      if (this.pending.size > 0) this.failAll(new Error(`engine worker exited with code ${code}`));
    });
  }

  private failAll(e: Error): void {
    this.failed = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private onMessage(m: Msg): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.kind === "chunk") {
      p.onChunk?.(decodeValue(m.value));
      return;
    }
    this.pending.delete(m.id);
    if (m.kind === "result") p.resolve(decodeValue(m.value));
    else if (m.kind === "end") p.resolve(undefined);
    else {
      const err = new Error(m.message);
      err.name = m.name;
      p.reject(err);
    }
  }

  private post(method: string, args: unknown[], pending: Pending): void {
    if (this.failed) {
      pending.reject(this.failed);
      return;
    }
    const id = this.nextId++;
    this.pending.set(id, pending);
    const transfer: ArrayBuffer[] = [];
    const encoded = encodeValue(args, transfer);
    this.worker.postMessage({ id, method, args: encoded }, transfer);
  }

  /** Calls a handler; resolves with its (decoded) result. */
  call<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    return new Promise<T>((resolve, reject) =>
      this.post(method, args, { resolve: resolve as (v: unknown) => void, reject }),
    );
  }

  /** Calls a handler that returns an (async) iterable; yields each item as the worker produces it. */
  async *stream<T = unknown>(method: string, ...args: unknown[]): AsyncGenerator<T> {
    const queue: unknown[] = [];
    let done = false;
    let error: Error | null = null;
    let wake: (() => void) | null = null;
    this.post(method, args, {
      resolve: () => {
        done = true;
        wake?.();
      },
      reject: (e) => {
        error = e;
        wake?.();
      },
      onChunk: (v) => {
        queue.push(v);
        wake?.();
      },
    });
    while (true) {
      if (queue.length > 0) {
        yield queue.shift() as T;
        continue;
      }
      if (error) throw error;
      if (done) return;
      await new Promise<void>((r) => {
        wake = r;
      });
      wake = null;
    }
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}

export type Handlers = Record<string, (...args: never[]) => unknown>;

function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> | Iterable<unknown> {
  return (
    v !== null &&
    typeof v === "object" &&
    (typeof (v as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function" ||
      (typeof (v as Iterable<unknown>)[Symbol.iterator] === "function" && !Array.isArray(v) && !(v instanceof Map)))
  );
}

/** Call from a worker module: answers EngineWorker calls with `handlers`. Arguments arrive as Tensors (the
 * handler owns them); returned Tensors are sent back and then disposed here. */
export function serveWorker(handlers: Handlers): void {
  if (isMainThread || !parentPort) throw new Error("serveWorker() must run inside a worker thread");
  const port = parentPort;
  const reply = (msg: Msg, value?: unknown) => {
    const transfer: ArrayBuffer[] = [];
    if (value !== undefined) (msg as { value: unknown }).value = encodeValue(value, transfer);
    port.postMessage(msg, transfer);
  };
  const disposeTensors = (v: unknown) => {
    if (v instanceof Tensor) v.dispose();
    else if (Array.isArray(v)) v.forEach(disposeTensors);
    else if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype)
      Object.values(v).forEach(disposeTensors);
  };
  port.on("message", async (m: { id: number; method: string; args: unknown }) => {
    try {
      const h = handlers[m.method];
      if (!h) throw new Error(`engine worker has no handler "${m.method}" (has: ${Object.keys(handlers).join(", ")})`);
      const args = decodeValue(m.args) as never[];
      const out = await h(...args);
      if (isAsyncIterable(out)) {
        for await (const chunk of out as AsyncIterable<unknown>) {
          reply({ id: m.id, kind: "chunk", value: undefined }, chunk);
          disposeTensors(chunk);
        }
        reply({ id: m.id, kind: "end" });
      } else {
        reply({ id: m.id, kind: "result", value: undefined }, out);
        disposeTensors(out);
      }
    } catch (e) {
      const err = e as Error;
      reply({ id: m.id, kind: "error", message: err.message ?? String(e), name: err.name ?? "Error" });
    }
  });
}

export { workerData };
