// Basic layers with PyTorch's parameter names and default initialisation.
import { type CreateOptions, empty, ones, zeros } from "../torch/creation.js";
import type { DType } from "../torch/dtype.js";
import * as F from "../torch/functional.js";
import type { Tensor } from "../torch/tensor.js";
import type { Activation } from "./activations.js";
import * as lowp from "./lowp.js";
import { Module } from "./module.js";

export interface LayerOptions {
  dtype?: DType;
}

function co(o: LayerOptions | undefined): CreateOptions {
  return { dtype: o?.dtype ?? "float32" };
}

let initEnabled = true;
/** Builds modules without random initialisation (their weights are about to be loaded): much faster for big
 * models. Parameters hold uninitialised memory until loaded. */
export function withoutInit<T>(fn: () => T): T {
  const prev = initEnabled;
  initEnabled = false;
  try {
    return fn();
  } finally {
    initEnabled = prev;
  }
}
export function initWeights(): boolean {
  return initEnabled;
}
function uniform(t: Tensor, bound: number): Tensor {
  return initEnabled ? t.uniform_(-bound, bound) : t;
}

/** Weight-only int8: the weight as int8 rows with one float32 scale per row (w ≈ q · scale). */
export interface Int8Weight {
  q: Tensor;
  scale: Tensor;
}

/** Rows of x in a [..., features] tensor, without reading its data. */
function rowsOf(x: Tensor, features: number): number {
  return x.numel() / features;
}

/** A low-rank update attached to a Linear (LoRA, src/nn/lora.ts): `forward` adds its term to the layer's output `y`
 * for input `x`; its tensors are the layer's parameters too (named e.g. `lora_A.weight`, as PEFT names them). */
export interface LinearAdapter {
  forward(x: Tensor, y: Tensor, training: boolean): Tensor;
  namedParameters(): Iterable<[string, Tensor]>;
}

export class Linear extends Module {
  weight: Tensor;
  readonly bias: Tensor | null;
  /** set by quantizeInt8(): then `weight` is the int8 tensor and this holds its scales */
  int8: Int8Weight | null = null;
  /** set by applyLora() (src/nn/lora.ts): an adapter whose term is added to the output */
  lora: LinearAdapter | null = null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    opts: LayerOptions & { bias?: boolean } = {},
  ) {
    super();
    // PyTorch's default: kaiming_uniform(a=√5) = U(−1/√in, 1/√in), bias the same.
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.registerParameter("weight", uniform(empty([outFeatures, inFeatures], co(opts)), bound));
    this.bias =
      opts.bias === false ? null : this.registerParameter("bias", uniform(empty([outFeatures], co(opts)), bound));
  }
  forward(x: Tensor): Tensor {
    const y = linearWith(x, this.weight, this.int8, this.bias);
    return this.lora ? this.lora.forward(x, y, this.training) : y;
  }
  /** The layer's own parameters, then its adapter's (so they are in parameters(), stateDict() and to(dtype)). */
  override *namedParameters(prefix = ""): Generator<[string, Tensor]> {
    yield* super.namedParameters(prefix);
    if (this.lora) for (const [n, t] of this.lora.namedParameters()) yield [prefix ? `${prefix}.${n}` : n, t];
  }
  /** Replaces the weight by int8 rows + per-row float32 scales (symmetric, max|w|/127); frees the original. */
  quantizeInt8(): void {
    if (this.int8) return;
    const { q, scale } = lowp.quantizeInt8(this.weight);
    this.int8 = { q, scale };
    this.replaceParameterWithBuffers("weight", { weight: q, weight_scale: scale });
    this.weight = q;
  }
}

/** x·wᵀ + b for a float weight or an int8 one: the fused kernel for a few rows (decoding), else libtorch (int8
 * dequantised to the compute dtype first). */
export function linearWith(x: Tensor, weight: Tensor, int8: Int8Weight | null, bias: Tensor | null): Tensor {
  if (rowsOf(x, weight.size(1)) <= 8 && x.dtype !== "float64") {
    const y = lowp.linearSmall(x, int8 ? int8.q : weight, int8 ? int8.scale : null, bias);
    if (y) return y;
  }
  if (!int8) return lowp.linear(x, weight, bias);
  const wd = lowp.dequantizeInt8(int8, x.dtype === "float64" ? "float64" : "float32");
  const f64 = x.dtype === "float64";
  const xd = f64 || x.dtype === "float32" ? x : x.to("float32");
  const bd = bias && bias.dtype !== wd.dtype ? bias.to(wd.dtype) : bias;
  const y = lowp.linear(xd, wd, bd);
  wd.dispose();
  if (xd !== x) xd.dispose();
  if (bd && bd !== bias) bd.dispose();
  if (y.dtype === x.dtype) return y;
  const out = y.to(x.dtype);
  y.dispose();
  return out;
}

/** Several Linear layers of one input (a layer's q/k/v, an MLP's gate/up): for a few rows (decoding) one pass of the
 * fused kernel over all their weights; with `act` (two layers of equal width), act(a(x)) · b(x) in one call. Falls back
 * to each layer's own forward (LoRA adapters, float64, autograd, more rows). */
export function linearGroup(layers: Linear[], x: Tensor): Tensor[];
export function linearGroup(layers: [Linear, Linear], x: Tensor, act: Activation): Tensor;
export function linearGroup(layers: Linear[], x: Tensor, act?: Activation): Tensor | Tensor[] {
  const first = layers[0];
  if (
    first &&
    x.dtype !== "float64" &&
    (act === undefined || act.kernel !== undefined) &&
    layers.every((l) => !l.lora) &&
    rowsOf(x, first.inFeatures) <= 8
  ) {
    const ys = lowp.linearSmallGroup(
      x,
      layers.map((l) => ({ w: l.int8 ? l.int8.q : l.weight, scale: l.int8?.scale ?? null, bias: l.bias })),
      act?.kernel ?? 0,
    );
    if (ys) return act ? (ys[0] as Tensor) : ys;
  }
  if (!act) return layers.map((l) => l.forward(x));
  const [a, b] = layers as [Linear, Linear];
  const g = a.forward(x);
  const h = act(g);
  g.dispose();
  const u = b.forward(x);
  const out = h.mul(u);
  h.dispose();
  u.dispose();
  return out;
}

export class Embedding extends Module {
  weight: Tensor;
  int8: Int8Weight | null = null;
  dtype: DType;
  constructor(
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    opts: LayerOptions & { paddingIdx?: number } = {},
  ) {
    super();
    this.dtype = opts.dtype ?? "float32";
    this.weight = this.registerParameter(
      "weight",
      initEnabled
        ? empty([numEmbeddings, embeddingDim], co(opts)).normal_(0, 1)
        : empty([numEmbeddings, embeddingDim], co(opts)),
    );
  }
  forward(ids: Tensor): Tensor {
    if (!this.int8) return F.embedding(this.weight, ids);
    // rows of q times their scale, in the model's dtype
    const rows = F.embedding(this.int8.q, ids)
      .to("float32")
      .mul(F.embedding(this.int8.scale.unsqueeze(1), ids));
    return this.dtype === "float32" ? rows : rows.to(this.dtype);
  }
  /** int8 rows with per-row scales (the same rows serve a tied lm_head: per-row = per-output-channel there). */
  quantizeInt8(): void {
    if (this.int8) return;
    const { q, scale } = lowp.quantizeInt8(this.weight);
    this.int8 = { q, scale };
    this.replaceParameterWithBuffers("weight", { weight: q, weight_scale: scale });
    this.weight = q;
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly normalizedShape: number[];
  constructor(
    normalizedShape: number | number[],
    readonly eps = 1e-5,
    opts: LayerOptions & { elementwiseAffine?: boolean; bias?: boolean } = {},
  ) {
    super();
    this.normalizedShape = typeof normalizedShape === "number" ? [normalizedShape] : normalizedShape;
    const affine = opts.elementwiseAffine ?? true;
    this.weight = affine ? this.registerParameter("weight", ones(this.normalizedShape, co(opts))) : null;
    this.bias =
      affine && opts.bias !== false ? this.registerParameter("bias", zeros(this.normalizedShape, co(opts))) : null;
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps);
  }
}

/** RMSNorm (Llama). `unitOffset`: Gemma's variant that scales by (1 + weight), with weight initialised to 0. */
export class RMSNorm extends Module {
  readonly weight: Tensor;
  constructor(
    readonly dim: number,
    readonly eps = 1e-6,
    readonly opts: LayerOptions & { unitOffset?: boolean; float32Compute?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter("weight", opts.unitOffset ? zeros([dim], co(opts)) : ones([dim], co(opts)));
  }
  forward(x: Tensor): Tensor {
    return F.rmsNorm(x, this.weight, this.eps, {
      addUnitOffset: this.opts.unitOffset,
      float32Compute: this.opts.float32Compute,
    });
  }
}

export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    readonly opts: LayerOptions & { stride?: number; padding?: number; bias?: boolean } = {},
  ) {
    super();
    const bound = 1 / Math.sqrt(inChannels * kernelSize * kernelSize);
    this.weight = this.registerParameter(
      "weight",
      uniform(empty([outChannels, inChannels, kernelSize, kernelSize], co(opts)), bound),
    );
    this.bias =
      opts.bias === false ? null : this.registerParameter("bias", uniform(empty([outChannels], co(opts)), bound));
  }
  forward(x: Tensor): Tensor {
    return lowp.conv2d(x, this.weight, this.bias, { stride: this.opts.stride ?? 1, padding: this.opts.padding ?? 0 });
  }
}

export class Dropout extends Module {
  constructor(readonly p = 0.1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.training && this.p > 0 ? F.dropout(x, this.p, true) : x;
  }
}
