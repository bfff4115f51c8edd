// torch.nn.functional equivalents.
import type { Generator } from "./creation.js";
import { native as N } from "./native.js";
import { Tensor } from "./tensor.js";

const h = (t: Tensor | null | undefined): number | null => (t ? t.handle : null);

export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return new Tensor(N.linear(x.handle, weight.handle, h(bias)));
}

function pair(v: number | readonly number[]): number[] {
  return typeof v === "number" ? [v, v] : [...v];
}

export function conv2d(
  x: Tensor,
  weight: Tensor,
  bias?: Tensor | null,
  opts: { stride?: number | number[]; padding?: number | number[]; dilation?: number | number[]; groups?: number } = {},
): Tensor {
  return new Tensor(
    N.conv2d(
      x.handle,
      weight.handle,
      h(bias),
      pair(opts.stride ?? 1),
      pair(opts.padding ?? 0),
      pair(opts.dilation ?? 1),
      opts.groups ?? 1,
    ),
  );
}

export function layerNorm(
  x: Tensor,
  normalizedShape: readonly number[],
  weight?: Tensor | null,
  bias?: Tensor | null,
  eps = 1e-5,
): Tensor {
  // inference in bfloat16/float16 over the last dimension: one fused kernel (libtorch 1.x's is scalar there)
  if ((x.dtype === "bfloat16" || x.dtype === "float16") && normalizedShape.length === 1) {
    const y = N.layerNormFused(x.handle, h(weight), h(bias), eps);
    if (y !== undefined) return Tensor.wrap(y);
  }
  return new Tensor(N.layerNorm(x.handle, [...normalizedShape], h(weight), h(bias), eps));
}

/** RMSNorm as Hugging Face computes it: x.float() · rsqrt(mean(x², −1) + eps), cast back, then × weight — or, for
 * Gemma (`addUnitOffset`), × (1 + weight) before the cast back. Half precision is always normalised in float32;
 * `float32Compute` does that for float64 too, exactly as transformers' Llama/Qwen/Gemma RMSNorm
 * (`hidden_states.to(torch.float32)`) — the models use it; without it float64 stays float64 (gradient checks). */
export function rmsNorm(
  x: Tensor,
  weight: Tensor | null,
  eps: number,
  opts: { addUnitOffset?: boolean; float32Compute?: boolean } = {},
): Tensor {
  // inference in float32/bfloat16/float16: one fused kernel with the same roundings (native/src/fused.cpp)
  if (x.dtype !== "float64") {
    const h = N.rmsNormFused(x.handle, weight?.handle ?? null, eps, opts.addUnitOffset ?? false);
    if (h !== undefined) return Tensor.wrap(h);
  }
  const keep = x.dtype === "float32" || (x.dtype === "float64" && !opts.float32Compute);
  const x32 = keep ? x : x.to("float32");
  const computeDtype = x32.dtype;
  const sq = x32.square();
  const ms = sq.mean(-1, true);
  sq.dispose();
  const inv = ms.add(eps);
  ms.dispose();
  const r = inv.rsqrt();
  inv.dispose();
  const normed = x32.mul(r);
  r.dispose();
  if (x32 !== x) x32.dispose();
  if (opts.addUnitOffset) {
    const w32 = weight ? (weight.dtype === computeDtype ? weight : weight.to(computeDtype)) : null;
    const scale = w32 ? w32.add(1) : null;
    const out32 = scale ? normed.mul(scale) : normed;
    if (scale) scale.dispose();
    if (w32 && w32 !== weight) w32.dispose();
    const out = out32.dtype === x.dtype ? out32 : out32.to(x.dtype);
    if (out !== out32) out32.dispose();
    if (out32 !== normed) normed.dispose();
    return out;
  }
  const back = normed.dtype === x.dtype ? normed : normed.to(x.dtype);
  if (back !== normed) normed.dispose();
  if (!weight) return back;
  const out = weight.mul(back);
  back.dispose();
  return out;
}

/** cos(x) and sin(x) computed as PyTorch's official x86 builds do: with Intel MKL's VML (high-accuracy mode) for
 * float32/float64 CPU tensors when MKL is installed (`vmlInfo()`), else libtorch's kernels. The two differ in the last
 * bit for some inputs, which is what float32 RoPE tables expose in float64 models. No gradient flows through the VML
 * path; a tensor that requires grad uses libtorch's differentiable cos/sin. */
export function cosSin(x: Tensor): { cos: Tensor; sin: Tensor } {
  const [c, s] = N.cosSin(x.handle);
  return { cos: new Tensor(c), sin: new Tensor(s) };
}

export function embedding(weight: Tensor, indices: Tensor, paddingIdx?: number): Tensor {
  return new Tensor(N.embedding(weight.handle, indices.handle, paddingIdx ?? null));
}

export function dropout(x: Tensor, p: number, training: boolean): Tensor {
  return new Tensor(N.dropout(x.handle, p, training));
}

export function gelu(x: Tensor, approximate: "none" | "tanh" = "none"): Tensor {
  return x.gelu(approximate);
}
export function silu(x: Tensor): Tensor {
  return x.silu();
}
export function relu(x: Tensor): Tensor {
  return x.relu();
}
export function softmax(x: Tensor, dim: number): Tensor {
  return x.softmax(dim);
}
export function logSoftmax(x: Tensor, dim: number): Tensor {
  return x.logSoftmax(dim);
}

export type Reduction = "none" | "mean" | "sum";
const RED: Record<Reduction, number> = { none: 0, mean: 1, sum: 2 };

/** Cross entropy over logits [N, C] (or [N, C, …]) and class targets, with ignoreIndex (default −100). */
export function crossEntropy(
  logits: Tensor,
  target: Tensor,
  opts: { ignoreIndex?: number; reduction?: Reduction; labelSmoothing?: number } = {},
): Tensor {
  return new Tensor(
    N.crossEntropy(
      logits.handle,
      target.handle,
      opts.ignoreIndex ?? -100,
      RED[opts.reduction ?? "mean"],
      opts.labelSmoothing ?? 0,
    ),
  );
}

/** softmax(q·kᵀ·scale + mask)·v. `attnMask`: bool (true = attend) or additive float, broadcastable to
 * [..., L, S]. Uses libtorch's fused kernel when it has one (≥ 2.1), else the same maths with matmul + softmax. */
export function scaledDotProductAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: { attnMask?: Tensor | null; dropoutP?: number; isCausal?: boolean; scale?: number } = {},
): Tensor {
  return new Tensor(
    N.sdpa(
      q.handle,
      k.handle,
      v.handle,
      h(opts.attnMask),
      opts.dropoutP ?? 0,
      opts.isCausal ?? false,
      opts.scale ?? null,
    ),
  );
}

export function multinomial(probs: Tensor, numSamples: number, replacement = false, generator?: Generator): Tensor {
  return new Tensor(N.multinomial(probs.handle, numSamples, replacement, generator?.id ?? null));
}
