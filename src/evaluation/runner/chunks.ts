// Sharding as TinyLLaVA Factory's model_vqa_*.py scripts do it: split_list / get_chunk (contiguous chunks of
// ceil(len / n) questions; chunk k is the k-th of them). With few questions there can be fewer chunks than n
// (5 questions in 4 chunks: 2, 2, 1); Factory's get_chunk then raises IndexError for the missing ones, here they are
// empty, so every chunk index of a run has a (possibly empty) answers file and `eval merge` sees them all.
import { EvaluationError } from "../errors.js";

/** split_list(lst, n): chunks of math.ceil(len(lst) / n) items. */
export function splitList<T>(list: readonly T[], n: number): T[][] {
  if (!Number.isInteger(n) || n < 1) throw new EvaluationError(`num-chunks ${n}: expected an integer ≥ 1`);
  const size = Math.ceil(list.length / n);
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

/** The [start, end) positions of chunk k of n over `length` items (get_chunk's slice; empty past the last chunk). */
export function chunkRange(length: number, n: number, k: number): [number, number] {
  if (!Number.isInteger(n) || n < 1) throw new EvaluationError(`num-chunks ${n}: expected an integer ≥ 1`);
  if (!Number.isInteger(k) || k < 0 || k >= n)
    throw new EvaluationError(`chunk-idx ${k}: expected an integer ≥ 0 and < num-chunks ${n}`);
  const size = Math.ceil(length / n);
  const start = Math.min(length, k * size);
  return [start, Math.min(length, start + size)];
}

/** get_chunk(lst, n, k). */
export function getChunk<T>(list: readonly T[], n: number, k: number): T[] {
  const [a, b] = chunkRange(list.length, n, k);
  return list.slice(a, b);
}
