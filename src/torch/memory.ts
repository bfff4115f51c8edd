// Deterministic memory: tensors created inside `tidy()` are freed when it returns (except what it returns or
// `keep()`s). Tensors created outside any scope get a finalizer as a backstop only — Node runs finalizers between
// event-loop turns, so a synchronous loop must use scopes or `dispose()`.
import { native } from "./native.js";

export interface Trackable {
  handle: number;
  kept: boolean;
  dispose(): void;
}

const stack: Trackable[][] = [];
const registry = new FinalizationRegistry<number>((h) => {
  native.freeTensor(h);
});

// Tensors created outside scopes are registered with the finalizer lazily, at the next event-loop turn, and only if
// still alive then: Node cannot run finalizers before that turn anyway, and a tensor disposed in the same
// synchronous block (`x.add(y).dispose()`) then costs no registration at all (~0.2 µs saved per op).
let unscoped: Trackable[] = [];
let flushScheduled = false;

function flushUnscoped(): void {
  flushScheduled = false;
  const list = unscoped;
  unscoped = [];
  for (const t of list) if (t.handle >= 0) registry.register(t, t.handle);
}

function backstop(t: Trackable): void {
  unscoped.push(t);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushUnscoped).unref();
  }
  if (unscoped.length > 65536) flushUnscoped();
}

export function track(t: Trackable): void {
  const top = stack[stack.length - 1];
  if (top !== undefined) top.push(t);
  else backstop(t);
}

function collect(value: unknown, out: Set<unknown>, depth: number): void {
  if (value === null || typeof value !== "object" || depth > 6) return;
  if ((value as Trackable).handle !== undefined && typeof (value as Trackable).dispose === "function") {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, out, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collect(v, out, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out, depth + 1);
  }
}

/** Runs `fn`; frees every tensor it created except the ones in its result (arrays/plain objects/Maps are searched)
 * and those marked with `keep()`. Synchronous only: an async function's tensors outlive the scope. */
export function tidy<T>(fn: () => T): T {
  const scope: Trackable[] = [];
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    for (const t of scope) if (!t.kept) t.dispose();
    throw e;
  }
  stack.pop();
  if (result instanceof Promise) {
    throw new Error("tidy(fn): fn returned a Promise; scopes are synchronous (use dispose() in async code)");
  }
  const survivors = new Set<unknown>();
  collect(result, survivors, 0);
  for (const t of scope) {
    if (t.kept) continue;
    if (survivors.has(t))
      track(t); // escapes to the enclosing scope (or the backstop)
    else t.dispose();
  }
  return result;
}

/** Marks tensors to outlive every enclosing `tidy()` (e.g. parameters, caches). Returns its argument. */
export function keep<T extends Trackable | Trackable[]>(t: T): T {
  const list = Array.isArray(t) ? t : [t];
  for (const x of list) {
    if (!x.kept) {
      x.kept = true;
      if (stack.length > 0) backstop(x);
    }
  }
  return t;
}

/** Disposes every tensor found in a value (arrays, plain objects, Maps). */
export function disposeAll(value: unknown): void {
  const found = new Set<unknown>();
  collect(value, found, 0);
  for (const t of found) (t as Trackable).dispose();
}

export function scopeDepth(): number {
  return stack.length;
}

export interface MemoryStats {
  /** bytes held by live tensors (views counted at their own size) */
  liveTensorBytes: number;
  liveTensors: number;
  /** bytes handed out by the caching allocator (size-class rounded) */
  allocatedBytes: number;
  /** bytes kept on the allocator's free lists for reuse */
  cachedBytes: number;
  peakBytes: number;
  allocations: number;
}

export function memoryStats(): MemoryStats {
  return native.memStats();
}

/** Returns the allocator's cached free blocks to the OS. */
export function emptyCache(): void {
  native.emptyCache();
}
