// LoRA (Hu et al. 2021) on Linear layers, with PEFT's semantics (peft/tuners/lora/layer.py, Linear):
//   y = W·x + b + B·A·dropout(x) · scaling,   A: [r, in], B: [out, r],   scaling = alpha / r (alpha / √r with rsLoRA)
// A starts as nn.Linear's default (kaiming_uniform(a = √5) = U(−1/√in, 1/√in)), B as zeros, so an adapter starts as
// a no-op; dropout acts on the adapter's input only, in training mode only. The adapter's tensors are parameters of
// the Linear they adapt, named `lora_A.weight` / `lora_B.weight` (PEFT's names without the adapter name), so they
// appear in namedParameters(), stateDict(), to(dtype) and optimisers like any other parameter. Merging folds
// B·A·scaling into W (PEFT's merge_and_unload) and removes the adapter.
import { CheckpointError, ConfigError } from "../errors.js";
import { noGrad } from "../torch/autograd.js";
import { empty, Generator as RandomGenerator, zeros } from "../torch/creation.js";
import type { Device, DType } from "../torch/dtype.js";
import * as F from "../torch/functional.js";
import { keep, tidy } from "../torch/memory.js";
import type { Tensor } from "../torch/tensor.js";
import { Linear, type LinearAdapter } from "./layers.js";
import * as lowp from "./lowp.js";
import { checkKeys, checkShape, type Module, type StateDict } from "./module.js";

/** PEFT's `init_lora_weights` values that only concern A and B: true (kaiming A, zero B), "gaussian" (A ~ N(0, 1/r),
 * zero B), false (both random: the adapter is not a no-op; for tests). */
export type LoraInit = boolean | "gaussian";

/** Which parameters stay trainable besides the adapters (PEFT's `bias`). */
export type LoraBias = "none" | "all" | "lora_only";

export interface LoraOptions {
  /** rank */
  r: number;
  alpha: number;
  /** dropout probability on the adapter's input (training mode only); default 0 */
  dropout?: number;
  /** which Linear layers get an adapter, by their dotted path below the root */
  targets: (path: string, linear: Linear) => boolean;
  /** seeds the initialisation of A (and of B with init false); default libtorch's global generator */
  seed?: number;
  /** rank-stabilised LoRA: scaling = alpha / √r */
  useRslora?: boolean;
  init?: LoraInit;
  /** per-layer rank and alpha (PEFT's rank_pattern / alpha_pattern, already resolved to a path) */
  rankFor?: (path: string) => number | undefined;
  alphaFor?: (path: string) => number | undefined;
  /** what else stays trainable: PEFT freezes every parameter of the model except the adapters ("model", the default,
   * as get_peft_model does), or only the adapted layers' own weights and biases ("layers") */
  freeze?: "model" | "layers";
  /** biases left trainable (PEFT's `bias`): none, every parameter named *bias*, or the adapted layers' biases */
  bias?: LoraBias;
}

function isFloat(d: DType): boolean {
  return d === "float32" || d === "float64" || d === "bfloat16" || d === "float16";
}

/** One Linear's adapter. */
export class LoraAdapter implements LinearAdapter {
  /** [r, in] */
  readonly A: Tensor;
  /** [out, r] */
  readonly B: Tensor;
  readonly scaling: number;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly r: number,
    readonly alpha: number,
    readonly dropout: number,
    readonly useRslora: boolean,
    dtype: DType,
    readonly init: LoraInit = true,
    generator?: RandomGenerator,
    device: Device = "cpu",
  ) {
    if (!Number.isInteger(r) || r <= 0) throw new ConfigError(`LoRA rank r ${r}: expected a positive integer`);
    if (!Number.isFinite(alpha)) throw new ConfigError(`LoRA alpha ${alpha}: expected a finite number`);
    if (!(dropout >= 0 && dropout < 1)) throw new ConfigError(`LoRA dropout ${dropout}: expected 0 ≤ p < 1`);
    this.scaling = useRslora ? alpha / Math.sqrt(r) : alpha / r;
    // PEFT creates lora_A/lora_B as float32 nn.Linear on the CPU, initialises them there, then moves them to the
    // base layer's device and dtype (int8 bases keep float32)
    const a = empty([r, inFeatures], { dtype: "float32" });
    if (init === "gaussian") a.normal_(0, 1 / r, generator);
    else {
      const bound = 1 / Math.sqrt(inFeatures);
      a.uniform_(-bound, bound, generator);
    }
    const b =
      init === false
        ? empty([outFeatures, r], { dtype: "float32" }).uniform_(-1 / Math.sqrt(r), 1 / Math.sqrt(r), generator)
        : zeros([outFeatures, r], { dtype: "float32" });
    this.A = keep(dtype === "float32" && device === "cpu" ? a : castFree(a, dtype, device));
    this.B = keep(dtype === "float32" && device === "cpu" ? b : castFree(b, dtype, device));
    this.A.requiresGrad = true;
    this.B.requiresGrad = true;
  }

  get dtype(): DType {
    return this.A.dtype;
  }

  *namedParameters(): Generator<[string, Tensor]> {
    yield ["lora_A.weight", this.A];
    yield ["lora_B.weight", this.B];
  }

  /** y + B·A·dropout(x)·scaling, computed in the adapter's dtype and returned in y's (PEFT: x is cast to lora_A's
   * dtype, the sum back to the result's). */
  forward(x: Tensor, y: Tensor, training: boolean): Tensor {
    const xin = x.dtype === this.dtype ? x : x.to(this.dtype);
    const dropped = training && this.dropout > 0 ? F.dropout(xin, this.dropout, true) : xin;
    const delta = lowp.linear(lowp.linear(dropped, this.A), this.B).mul(this.scaling);
    if (delta.dtype === y.dtype) return y.add(delta);
    // result + delta in PyTorch's promoted dtype, then back to the result's (PEFT's result.to(torch_result_dtype))
    const wide = promote(y.dtype, delta.dtype);
    const sum = (y.dtype === wide ? y : y.to(wide)).add(delta.dtype === wide ? delta : delta.to(wide));
    return sum.to(y.dtype);
  }

  /** B·A·scaling [out, in] in `dtype` — for half types computed in float32 and rounded once, as PEFT's
   * get_delta_weight does on CPU (on every device here: one rounding is the more exact merge). */
  deltaWeight(dtype: DType): Tensor {
    return noGrad(() =>
      tidy(() => {
        const half = this.dtype === "bfloat16" || this.dtype === "float16";
        const a = half ? this.A.to("float32") : this.A;
        const b = half ? this.B.to("float32") : this.B;
        const d = b.matmul(a).mul(this.scaling);
        return d.dtype === dtype ? d : d.to(dtype);
      }),
    );
  }

  dispose(): void {
    this.A.dispose();
    this.B.dispose();
  }
}

const WIDTH: Partial<Record<DType, number>> = { float16: 1, bfloat16: 1, float32: 2, float64: 3 };

/** PyTorch's type promotion between two floating dtypes (bfloat16 with float16 gives float32). */
function promote(a: DType, b: DType): DType {
  if (a === b) return a;
  const [wa, wb] = [WIDTH[a] ?? 2, WIDTH[b] ?? 2];
  if (wa === 1 && wb === 1) return "float32";
  return wa >= wb ? a : b;
}

function castFree(t: Tensor, dtype: DType, device?: Device): Tensor {
  const c = device === undefined ? t.to(dtype) : t.to({ dtype, device });
  t.dispose();
  return c;
}

/** Every Linear below `root` with its dotted path (in namedModules order). */
export function linearLayers(root: Module): [string, Linear][] {
  const out: [string, Linear][] = [];
  for (const [path, m] of root.namedModules()) if (m instanceof Linear) out.push([path, m]);
  return out;
}

/** The Linear layers that carry an adapter, with their adapters. */
export function loraLayers(root: Module): [string, Linear, LoraAdapter][] {
  const out: [string, Linear, LoraAdapter][] = [];
  for (const [path, lin] of linearLayers(root)) if (lin.lora instanceof LoraAdapter) out.push([path, lin, lin.lora]);
  return out;
}

/** Attaches an adapter to every Linear that `targets` selects, freezes as `freeze`/`bias` say (PEFT's
 * _mark_only_adapters_as_trainable by default) and returns the adapters' parameters (A, B per layer, in layer
 * order). A layer that already has an adapter is an error (merge or unload it first). */
export function applyLora(root: Module, opts: LoraOptions): Tensor[] {
  const chosen = linearLayers(root).filter(([path, lin]) => opts.targets(path, lin));
  if (chosen.length === 0) throw new ConfigError("LoRA: the target rule selects no Linear layer");
  for (const [path, lin] of chosen)
    if (lin.lora) throw new ConfigError(`LoRA: layer "${path}" already has an adapter (merge or unload it first)`);
  const generator = opts.seed === undefined ? undefined : new RandomGenerator(opts.seed);
  const params: Tensor[] = [];
  for (const [path, lin] of chosen) {
    const r = opts.rankFor?.(path) ?? opts.r;
    const alpha = opts.alphaFor?.(path) ?? opts.alpha;
    const baseDtype = lin.weight.dtype;
    const adapter = new LoraAdapter(
      lin.inFeatures,
      lin.outFeatures,
      r,
      alpha,
      opts.dropout ?? 0,
      opts.useRslora ?? false,
      isFloat(baseDtype) ? baseDtype : "float32",
      opts.init ?? true,
      generator,
      lin.weight.device,
    );
    lin.lora = adapter;
    params.push(adapter.A, adapter.B);
  }
  const adapters = new Set(params);
  const bias = opts.bias ?? "none";
  const adapted = new Set(chosen.map(([, lin]) => lin));
  const freezeAll = (opts.freeze ?? "model") === "model";
  for (const [prefix, m] of root.namedModules()) {
    const own = m instanceof Linear && adapted.has(m);
    if (!freezeAll && !own) continue;
    for (const [n, p] of ownParameters(m)) {
      if (adapters.has(p)) continue;
      const full = prefix ? `${prefix}.${n}` : n;
      p.requiresGrad = (bias === "all" && full.includes("bias")) || (bias === "lora_only" && own && n === "bias");
    }
  }
  return params;
}

/** A module's direct parameters (not its children's, not an adapter's). */
function* ownParameters(m: Module): Generator<[string, Tensor]> {
  for (const [n, p] of m.namedParameters()) if (!n.includes(".")) yield [n, p];
}

/** The adapters' parameters below `root`. */
export function loraParameters(root: Module): Tensor[] {
  return loraLayers(root).flatMap(([, , a]) => [a.A, a.B]);
}

/** Folds every adapter into its layer's weight (W += B·A·scaling in W's dtype) and removes the adapters, as PEFT's
 * merge_and_unload. Returns the merged layers' paths. Layers quantised to int8 cannot take a merge (error). */
export function mergeLora(root: Module): string[] {
  const layers = loraLayers(root);
  for (const [path, lin] of layers)
    if (lin.int8)
      throw new ConfigError(
        `LoRA: cannot merge into "${path}": its weight is int8-quantised (merge before quantising, or keep the adapter)`,
      );
  noGrad(() => {
    for (const [, lin, a] of layers) {
      const d = a.deltaWeight(lin.weight.dtype);
      lin.weight.add_(d);
      d.dispose();
      lin.lora = null;
      a.dispose();
    }
  });
  return layers.map(([p]) => p);
}

/** Removes every adapter without merging it (PEFT's unload); returns the layers' paths. */
export function unloadLora(root: Module): string[] {
  const layers = loraLayers(root);
  for (const [, lin, a] of layers) {
    lin.lora = null;
    a.dispose();
  }
  return layers.map(([p]) => p);
}

/** The adapters' tensors by name (`<layer path>.lora_A.weight`, `.lora_B.weight`): the live tensors. */
export function loraState(root: Module): StateDict {
  const sd: StateDict = new Map();
  for (const [path, , a] of loraLayers(root))
    for (const [n, t] of a.namedParameters()) sd.set(path ? `${path}.${n}` : n, t);
  return sd;
}

/** Copies adapter tensors (converted to each adapter's dtype) into the adapters below `root`. Every adapter tensor
 * must be given exactly once and nothing else (strict, the default): missing or unexpected names and shape
 * mismatches are errors naming them (`source` prefixes the messages, e.g. a file name). */
export function loadLoraState(
  root: Module,
  sd: Map<string, Tensor> | Record<string, Tensor>,
  opts: { strict?: boolean; source?: string } = {},
): { missingKeys: string[]; unexpectedKeys: string[] } {
  const own = loraState(root);
  if (own.size === 0)
    throw new CheckpointError(`${opts.source ? `${opts.source}: ` : ""}the model has no LoRA adapters`);
  const src = opts.source ? `${opts.source}: ` : "";
  const entries = sd instanceof Map ? [...sd.entries()] : Object.entries(sd);
  const unexpected: string[] = [];
  const seen = new Set<string>();
  const pending: [Tensor, Tensor][] = [];
  for (const [k, v] of entries) {
    const t = own.get(k);
    if (!t) {
      unexpected.push(k);
      continue;
    }
    checkShape(src, k, v.shape, t.shape);
    seen.add(k);
    pending.push([t, v]);
  }
  const missing = [...own.keys()].filter((k) => !seen.has(k));
  if (opts.strict ?? true) checkKeys(src, "keys", missing, unexpected);
  noGrad(() => {
    for (const [t, v] of pending) t.copy_(v);
  });
  return { missingKeys: missing, unexpectedKeys: unexpected };
}
