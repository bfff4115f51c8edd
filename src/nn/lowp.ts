// Matrix products for bfloat16/float16 models on CPU. libtorch's CPU kernels multiply bfloat16 matrices natively only
// through oneDNN on CPUs with AVX512-BF16/AMX; elsewhere it falls back to a scalar GEMM (measured here: 4 GFLOP/s,
// ~25× slower than float32), and float16 matmul is not implemented at all in libtorch 1.x. So on those CPUs the
// product is computed in float32 from the exact inputs (bfloat16/float16 → float32 is lossless) with float32
// accumulation, and rounded to the input dtype once — what a native low-precision GEMM with float32 accumulation
// computes. Autograd flows through the casts, so training works the same way.
import { readFileSync } from "node:fs";
import * as F from "../torch/functional.js";
import { native } from "../torch/native.js";
import { Tensor } from "../torch/tensor.js";

let nativeBf16: boolean | null = null;

/** Whether libtorch's own bfloat16 matmul is fast here (oneDNN on a CPU with AVX512-BF16 or AMX). */
export function nativeBf16Matmul(): boolean {
  if (nativeBf16 === null) {
    const env = process.env.TINYLLAVA_NATIVE_BF16;
    if (env === "1" || env === "0") nativeBf16 = env === "1";
    else {
      let flags = "";
      try {
        flags = readFileSync("/proc/cpuinfo", "utf8");
      } catch {
        // not Linux: assume no native bfloat16 units
      }
      nativeBf16 = /\b(avx512_bf16|amx_bf16)\b/.test(flags);
    }
  }
  return nativeBf16;
}

function upcast(t: Tensor): boolean {
  if (t.device !== "cpu") return false;
  const d = t.dtype;
  return d === "float16" || (d === "bfloat16" && !nativeBf16Matmul());
}

/** op over float32 copies of its (lossless) inputs, the result rounded back to the inputs' dtype once; the copies
 * are freed as soon as the op has run. */
function viaFloat32(dt: Tensor["dtype"], inputs: (Tensor | null)[], op: (xs: (Tensor | null)[]) => Tensor): Tensor {
  const up = inputs.map((t) => (t ? t.to("float32") : null));
  const y = op(up);
  for (const t of up) t?.dispose();
  const out = y.to(dt);
  y.dispose();
  return out;
}

/** a @ b, through float32 for CPU bfloat16/float16 (see above). */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (!upcast(a)) return a.matmul(b);
  return viaFloat32(a.dtype, [a, b], ([x, y]) => (x as Tensor).matmul(y as Tensor));
}

/** x @ wᵀ + b, through float32 for CPU bfloat16/float16 (see above). */
export function linear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  if (!upcast(x)) return F.linear(x, w, b);
  return viaFloat32(x.dtype, [x, w, b ?? null], ([x32, w32, b32]) => F.linear(x32 as Tensor, w32 as Tensor, b32));
}

/** conv2d through float32 for CPU bfloat16/float16 (see above). */
export function conv2d(
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  opts: { stride?: number | number[]; padding?: number | number[] },
): Tensor {
  if (!upcast(x)) return F.conv2d(x, w, b, opts);
  return viaFloat32(x.dtype, [x, w, b], ([x32, w32, b32]) => F.conv2d(x32 as Tensor, w32 as Tensor, b32, opts));
}

/** The fused decode product (native/src/kernels.cpp): x [..., K] with at most 8 rows, w [N, K] in float32, bfloat16,
 * float16 or int8 (with per-row `scale`), accumulated in float32. null when the kernel does not cover the case. */
export function linearSmall(x: Tensor, w: Tensor, scale: Tensor | null, bias: Tensor | null): Tensor | null {
  const h = native.linearSmall(x.handle, w.handle, scale?.handle ?? null, bias?.handle ?? null);
  return h === undefined ? null : Tensor.wrap(h);
}

/** Several decode products of one input in one pass (native/src/kernels.cpp): x [..., K] (≤ 8 rows) with each
 * { w, scale, bias } as linearSmall takes them. act 0: the products; act 1/2/3 (SiLU, GELU tanh, GELU erf; exactly two
 * weights of equal width): [act(x·w₀ᵀ) · (x·w₁ᵀ)] with the eager ops' roundings. null when the kernel does not cover
 * the case. */
export function linearSmallGroup(
  x: Tensor,
  specs: { w: Tensor; scale: Tensor | null; bias: Tensor | null }[],
  act: 0 | 1 | 2 | 3 = 0,
): Tensor[] | null {
  const hs = native.linearSmallGroup(
    x.handle,
    specs.map((s) => [s.w.handle, s.scale?.handle ?? null, s.bias?.handle ?? null]),
    act,
  );
  return hs === undefined ? null : hs.map((h) => Tensor.wrap(h));
}

/** softmax(q·kᵀ·scale + mask)·v for a few new queries q [B, H, L ≤ 8, D] against cached k/v [B, KV, S, D] (grouped
 * heads read their shared key/value head in place; query l sees keys ≤ past + l), in float32 inside
 * (native/src/kernels.cpp). null when the kernel does not cover the case (float64, autograd, no AVX2). */
export function attendDecode(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask: Tensor | null,
  scale: number,
  past: number,
): Tensor | null {
  const h = native.attendDecode(q.handle, k.handle, v.handle, mask?.handle ?? null, scale, past);
  return h === undefined ? null : Tensor.wrap(h);
}

/** Symmetric per-row int8 quantisation: [q int8 [N, K], scale float32 [N]] with w ≈ q · scale. */
export function quantizeInt8(w: Tensor): { q: Tensor; scale: Tensor } {
  const [q, scale] = native.quantizeInt8(w.handle);
  return { q: Tensor.wrap(q), scale: Tensor.wrap(scale) };
}

/** q · scale as a float tensor of `dtype`. */
export function dequantizeInt8(w: { q: Tensor; scale: Tensor }, dtype: "float32" | "float64"): Tensor {
  const f = w.q.to(dtype);
  const s = dtype === "float32" ? w.scale.unsqueeze(1) : w.scale.to(dtype).unsqueeze(1);
  const out = f.mul(s);
  f.dispose();
  s.dispose();
  return out;
}
