// Weight-only int8 quantisation of a loaded model (any checkpoint, at load time): every Linear and Embedding below a
// module gets int8 rows with one float32 scale per row (symmetric, scale = max|w| / 127). Activations stay in the
// compute dtype; decoding multiplies through the fused kernel (native/src/kernels.cpp), longer inputs dequantise a
// layer's weight for the product. A tied lm_head shares the embedding's rows, as before quantisation.
import { emptyCache } from "../torch/memory.js";
import { Embedding, Linear } from "./layers.js";
import type { Module } from "./module.js";

export interface QuantizeReport {
  linears: number;
  embeddings: number;
  /** bytes of the weights that were quantised, before and after */
  bytesBefore: number;
  bytesAfter: number;
}

function bytesOf(dtype: string): number {
  return dtype === "float64" || dtype === "int64"
    ? 8
    : dtype === "float32" || dtype === "int32"
      ? 4
      : dtype === "int8" || dtype === "uint8" || dtype === "bool"
        ? 1
        : 2;
}

export function quantizeInt8(root: Module): QuantizeReport {
  const r: QuantizeReport = { linears: 0, embeddings: 0, bytesBefore: 0, bytesAfter: 0 };
  for (const [, m] of root.namedModules()) {
    if (!(m instanceof Linear) && !(m instanceof Embedding)) continue;
    if (m.int8) continue;
    const n = m.weight.numel();
    r.bytesBefore += n * bytesOf(m.weight.dtype);
    m.quantizeInt8();
    r.bytesAfter += n + 4 * m.weight.size(0);
    if (m instanceof Linear) r.linears++;
    else r.embeddings++;
  }
  // the float weights just freed sit in the allocator's cache (up to 2 GB of it): hand them back to the OS, or the
  // quantised model's RSS stays that of the float one
  emptyCache();
  return r;
}
