// ggml's element encodings for export, bit for bit as ggml's reference code (ggml-quants.c / ggml-impl.h) and
// gguf-py compute them from float32 values:
//   f16  — IEEE half, round to nearest even (GGML_FP32_TO_FP16);
//   bf16 — the top 16 bits of the float32, round to nearest even, NaN kept quiet (ggml_compute_fp32_to_bf16);
//   q8_0 — blocks of 32: d = max|x| / 127 (float32), q = roundf(x · (1/d)) (half away from zero) as int8, d stored
//          as f16 before the 32 bytes (34 bytes per block; dequantised as q · d).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 (a JS number is rounded to float32 first) → IEEE half bits, round to nearest even. */
export function fp32ToFp16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0] as number;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const man = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man !== 0 ? 0x200 | (man >>> 13) : 0); // inf / NaN (quiet)
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → inf
  if (e <= 0) {
    // subnormal half (or zero): shift the full significand (with its implicit 1) into place, rounding to even
    if (e < -10) return sign;
    const m = man | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) !== 0)) h++;
    return sign | h;
  }
  let h = (e << 10) | (man >>> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // may carry into the exponent (→ inf), as in IEEE
  return sign | h;
}

/** float32 → bfloat16 bits, round to nearest even; NaN stays a quiet NaN. */
export function fp32ToBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0] as number;
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) & 0xffff) | 0x40;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export const QK8_0 = 32;
export const Q8_0_BLOCK_BYTES = 2 + QK8_0;

/** Quantises float32 values (a whole number of 32-element blocks, i.e. whole rows) to Q8_0 blocks. */
export function quantizeQ8_0(x: Float32Array): Buffer {
  if (x.length % QK8_0 !== 0) throw new RangeError(`Q8_0 needs a multiple of ${QK8_0} values, got ${x.length}`);
  const nb = x.length / QK8_0;
  const out = Buffer.allocUnsafe(nb * Q8_0_BLOCK_BYTES);
  const qs = new Int8Array(out.buffer, out.byteOffset, out.length);
  const fr = Math.fround;
  for (let i = 0; i < nb; i++) {
    const base = i * QK8_0;
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) {
      const a = Math.abs(x[base + j] as number);
      if (a > amax) amax = a;
    }
    const d = fr(amax / 127);
    const id = d !== 0 ? fr(1 / d) : 0;
    const o = i * Q8_0_BLOCK_BYTES;
    const h = fp32ToFp16Bits(d);
    out[o] = h & 0xff;
    out[o + 1] = h >>> 8;
    for (let j = 0; j < QK8_0; j++) {
      const v = fr((x[base + j] as number) * id);
      // roundf: half away from zero (|v| ≤ 127.5, so |v| + 0.5 is exact in a double)
      qs[o + 2 + j] = v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
    }
  }
  return out;
}
