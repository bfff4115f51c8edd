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

function quantizeOne(m: Linear | Embedding, r: QuantizeReport): void {
  const n = m.weight.numel();
  r.bytesBefore += n * bytesOf(m.weight.dtype);
  m.quantizeInt8();
  r.bytesAfter += n + 4 * m.weight.size(0);
  if (m instanceof Linear) r.linears++;
  else r.embeddings++;
}

export function quantizeInt8(root: Module): QuantizeReport {
  const q = new IncrementalInt8(root);
  return q.finish();
}

/** Quantises while weights arrive (loading a checkpoint, initialising a random model): `loaded(name)` after the
 * tensor `name` (relative to the root) has its values quantises its Linear/Embedding at once, so the float weight is
 * freed before the next layer's is touched; the freed memory goes back to the OS every 256 MB, so peak RSS is the
 * quantised model's plus about one layer's float weight instead of the float model's. `finish()` quantises whatever
 * is left (modules whose weights never came through `loaded`) and returns the report. */
export class IncrementalInt8 {
  private readonly byWeight = new Map<string, Linear | Embedding>();
  private readonly report: QuantizeReport = { linears: 0, embeddings: 0, bytesBefore: 0, bytesAfter: 0 };
  private pendingBytes = 0;
  constructor(
    private readonly root: Module,
    prefix = "",
  ) {
    for (const [name, m] of root.namedModules())
      if (m instanceof Linear || m instanceof Embedding)
        this.byWeight.set(`${prefix}${name ? `${name}.` : ""}weight`, m);
  }
  loaded(name: string): void {
    const m = this.byWeight.get(name);
    if (!m || m.int8) return;
    const before = this.report.bytesBefore;
    quantizeOne(m, this.report);
    this.pendingBytes += this.report.bytesBefore - before;
    if (this.pendingBytes >= 256 * 2 ** 20) {
      emptyCache();
      this.pendingBytes = 0;
    }
  }
  finish(): QuantizeReport {
    for (const [, m] of this.root.namedModules())
      if ((m instanceof Linear || m instanceof Embedding) && !m.int8) quantizeOne(m, this.report);
    // the float weights just freed sit in the allocator's cache: hand them back to the OS, or the quantised model's
    // RSS stays that of the float one
    emptyCache();
    return { ...this.report };
  }
}
