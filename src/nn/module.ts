// Module: named parameters, buffers and submodules with PyTorch's naming (dotted state-dict keys), strict
// state-dict loading that lists missing/unexpected keys, key remapping hooks, train/eval, freezing, dtype casts.
import { CheckpointError } from "../errors.js";
import { noGrad } from "../torch/autograd.js";
import type { DType } from "../torch/dtype.js";
import { keep, tidy } from "../torch/memory.js";
import type { Tensor } from "../torch/tensor.js";

export type StateDict = Map<string, Tensor>;

/** Maps a checkpoint key to this module's key (or null to drop it). */
export type KeyRemap = (key: string) => string | null;

export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** The error for a tensor whose checkpoint shape differs from the model's, naming the key and both shapes. */
export function checkShape(where: string, key: string, checkpoint: readonly number[], model: readonly number[]): void {
  if (!sameShape(checkpoint, model)) {
    throw new CheckpointError(
      `${where}shape mismatch for "${key}": checkpoint has [${checkpoint.join(", ")}], model expects [${model.join(", ")}]`,
    );
  }
}

/** The error for keys the model lacks or the checkpoint lacks (each list shortened to `limit` names). */
export function checkKeys(where: string, what: string, missing: string[], unexpected: string[], limit = 20): void {
  if (missing.length === 0 && unexpected.length === 0) return;
  const list = (xs: string[]) => `${xs.slice(0, limit).join(", ")}${xs.length > limit ? ", …" : ""}`;
  const parts: string[] = [];
  if (missing.length) parts.push(`missing ${what} (${missing.length}): ${list(missing)}`);
  if (unexpected.length) parts.push(`unexpected ${what} (${unexpected.length}): ${list(unexpected)}`);
  throw new CheckpointError(
    `${where}${what === "keys" ? "state dict" : "checkpoint"} does not match the model: ${parts.join("; ")}`,
  );
}

/** Anything with a `forward`: made a scoped call by Module's constructor (see there). */
type Forwardable = { forward?: (...args: unknown[]) => unknown };

export class Module {
  training = true;
  private readonly _params = new Map<string, Tensor | null>();
  private readonly _buffers = new Map<string, { t: Tensor; persistent: boolean }>();
  private readonly _modules = new Map<string, Module>();
  private readonly _remaps: KeyRemap[] = [];

  /** Every module call is a memory scope: `forward` runs inside `tidy`, so the temporaries a layer creates die when
   * it returns (as PyTorch's refcounting frees them), and only what it returns reaches the caller. Without this, a
   * deep forward keeps every layer's intermediates alive until the outermost scope ends. (The subclass's `forward`
   * is already on the prototype chain when this base constructor runs; it is wrapped per instance. Autograd keeps
   * what backward needs on the native side, so training is unaffected.) */
  constructor() {
    const self = this as unknown as Forwardable;
    const fwd = self.forward;
    if (typeof fwd === "function") {
      Object.defineProperty(this, "forward", {
        value: (...args: unknown[]) => tidy(() => fwd.apply(this, args)),
        writable: true,
        configurable: true,
        enumerable: false,
      });
    }
  }

  /** Registers a parameter (requiresGrad on, kept alive across scopes). */
  registerParameter(name: string, t: Tensor): Tensor {
    keep(t);
    if (!t.requiresGrad) t.requiresGrad = true;
    this._params.set(name, t);
    return t;
  }
  registerBuffer(name: string, t: Tensor, persistent = true): Tensor {
    keep(t);
    this._buffers.set(name, { t, persistent });
    return t;
  }
  registerModule<M extends Module>(name: string, m: M): M {
    this._modules.set(name, m);
    return m;
  }
  /** Adds a key remapping applied by loadStateDict before matching (e.g. checkpoint layouts). */
  addStateDictRemap(fn: KeyRemap): void {
    this._remaps.push(fn);
  }

  *namedModules(prefix = ""): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [n, m] of this._modules) yield* m.namedModules(prefix ? `${prefix}.${n}` : n);
  }
  *children(): Generator<[string, Module]> {
    yield* this._modules;
  }
  getSubmodule(path: string): Module {
    let m: Module = this;
    if (path === "") return m;
    for (const part of path.split(".")) {
      const next = m._modules.get(part);
      if (!next) throw new Error(`no submodule "${path}" (missing "${part}")`);
      m = next;
    }
    return m;
  }
  *namedParameters(prefix = ""): Generator<[string, Tensor]> {
    for (const [n, p] of this._params) if (p) yield [prefix ? `${prefix}.${n}` : n, p];
    for (const [n, m] of this._modules) yield* m.namedParameters(prefix ? `${prefix}.${n}` : n);
  }
  parameters(): Tensor[] {
    return [...this.namedParameters()].map(([, p]) => p);
  }
  *namedBuffers(prefix = "", persistentOnly = false): Generator<[string, Tensor]> {
    for (const [n, b] of this._buffers) if (!persistentOnly || b.persistent) yield [prefix ? `${prefix}.${n}` : n, b.t];
    for (const [n, m] of this._modules) yield* m.namedBuffers(prefix ? `${prefix}.${n}` : n, persistentOnly);
  }
  numParameters(trainableOnly = false): number {
    let n = 0;
    for (const p of this.parameters()) if (!trainableOnly || p.requiresGrad) n += p.numel();
    return n;
  }

  /** Parameters and persistent buffers by dotted name (the live tensors, not copies). */
  stateDict(): StateDict {
    const sd: StateDict = new Map();
    for (const [k, v] of this.namedParameters()) sd.set(k, v);
    for (const [k, v] of this.namedBuffers("", true)) sd.set(k, v);
    return sd;
  }

  private remapKey(key: string): string | null {
    let k: string | null = key;
    for (const [prefix, m] of this.namedModules()) {
      if (m._remaps.length === 0) continue;
      if (prefix !== "" && !k.startsWith(`${prefix}.`)) continue;
      const local: string = prefix === "" ? k : k.slice(prefix.length + 1);
      let r: string | null = local;
      for (const f of m._remaps) {
        if (r === null) break;
        r = f(r);
      }
      if (r === null) return null;
      k = prefix === "" ? r : `${prefix}.${r}`;
    }
    return k;
  }

  /** Copies values into this module's tensors (converted to each tensor's dtype). Shape mismatches always throw,
   * naming the key and both shapes; in strict mode missing or unexpected keys throw too, listed by name. */
  loadStateDict(
    sd: Map<string, Tensor> | Record<string, Tensor>,
    opts: { strict?: boolean; source?: string } = {},
  ): LoadResult {
    const strict = opts.strict ?? true;
    const own = this.stateDict();
    const seen = new Set<string>();
    const unexpected: string[] = [];
    const entries = sd instanceof Map ? [...sd.entries()] : Object.entries(sd);
    const src = opts.source ? `${opts.source}: ` : "";
    const pending: [Tensor, Tensor][] = [];
    for (const [rawKey, value] of entries) {
      const key = this.remapKey(rawKey);
      if (key === null) continue;
      const target = own.get(key);
      if (!target) {
        unexpected.push(rawKey);
        continue;
      }
      checkShape(src, key !== rawKey ? `${rawKey}" (as "${key}` : rawKey, value.shape, target.shape);
      seen.add(key);
      pending.push([target, value]);
    }
    const missing = [...own.keys()].filter((k) => !seen.has(k));
    if (strict) checkKeys(src, "keys", missing, unexpected);
    noGrad(() => {
      for (const [t, v] of pending) t.copy_(v);
    });
    return { missingKeys: missing, unexpectedKeys: unexpected };
  }

  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  /** Freezes (false) or unfreezes (true) every parameter. */
  requiresGrad_(v: boolean): this {
    for (const p of this.parameters()) p.requiresGrad = v;
    return this;
  }
  /** Casts floating parameters and buffers to `dtype` in place, as PyTorch's Module.to: each libtorch tensor keeps its
   * identity (its data is swapped, `param.data = …`), so an optimiser created before still updates these parameters;
   * an accumulated gradient is cast along. */
  to(dtype: DType): this {
    noGrad(() => {
      for (const t of new Set([...this.parameters(), ...[...this.namedBuffers()].map(([, b]) => b)])) {
        const d = t.dtype;
        if (d !== "float64" && d !== "float32" && d !== "bfloat16" && d !== "float16") continue;
        if (d === dtype) continue;
        const g = t.grad;
        t._replaceWith(t.to(dtype));
        if (g) {
          const cast = g.to(dtype);
          t.grad = cast;
          cast.dispose();
          g.dispose();
        }
      }
    });
    // modules that record their compute dtype (towers, LMs, TinyLlava) follow the cast
    for (const [, m] of this.namedModules()) {
      const rec = m as unknown as { dtype?: unknown };
      if (typeof rec.dtype === "string" && Object.hasOwn(m, "dtype")) rec.dtype = dtype;
    }
    return this;
  }
  /** Swaps a parameter for buffers (e.g. a quantised weight and its scales): the parameter is freed and leaves
   * parameters() and the optimiser's view; the buffers appear in stateDict() under their names. */
  protected replaceParameterWithBuffers(name: string, buffers: Record<string, Tensor>): void {
    const p = this._params.get(name);
    if (p === undefined) throw new Error(`no parameter "${name}" to replace`);
    this._params.delete(name);
    for (const [k, t] of Object.entries(buffers)) this.registerBuffer(k, t);
    if (p && !Object.values(buffers).includes(p)) p.dispose();
  }
  /** Frees every parameter and buffer. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
    for (const [, b] of this.namedBuffers()) b.dispose();
  }
}

export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[] = [];
  constructor(items: M[] = []) {
    super();
    for (const m of items) this.push(m);
  }
  push(m: M): void {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
  }
  get length(): number {
    return this.items.length;
  }
  at(i: number): M {
    const m = this.items[i];
    if (!m) throw new RangeError(`ModuleList index ${i} out of range (${this.items.length})`);
    return m;
  }
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}
