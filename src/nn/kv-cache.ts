// The key/value cache of a decoder: per layer, keys and values of every position seen so far, so that generation
// runs the prompt once (prefill) and then one token per step. Storage is pre-allocated for `capacity` positions
// ([B, kvHeads, capacity, headDim] per layer) and written in place; attention reads views of the filled part, so no
// step copies the cache. It grows (one copy, capacity doubled) only if a caller goes past what it planned for.
import { noGrad } from "../torch/autograd.js";
import { empty, tensor } from "../torch/creation.js";
import type { DType } from "../torch/dtype.js";
import { keep, tidy } from "../torch/memory.js";
import type { Tensor } from "../torch/tensor.js";

export interface KVCacheOptions {
  layers: number;
  batch: number;
  kvHeads: number;
  headDim: number;
  /** positions to pre-allocate (prompt + new tokens) */
  capacity: number;
  dtype: DType;
}

export class KVCache {
  private keys: Tensor[] = [];
  private values: Tensor[] = [];
  /** positions filled in every layer (all rows share it; left padding handles different prompt lengths) */
  length = 0;
  private pending = 0;
  private _capacity: number;
  private _batch: number;

  constructor(readonly opts: KVCacheOptions) {
    if (!(opts.capacity >= 1)) throw new RangeError(`KVCache capacity ${opts.capacity}: expected ≥ 1`);
    this._capacity = opts.capacity;
    this._batch = opts.batch;
    for (let l = 0; l < opts.layers; l++) {
      this.keys.push(keep(this.alloc(opts.capacity)));
      this.values.push(keep(this.alloc(opts.capacity)));
    }
  }

  get capacity(): number {
    return this._capacity;
  }
  get batch(): number {
    return this._batch;
  }
  get layers(): number {
    return this.keys.length;
  }

  private alloc(capacity: number, batch = this._batch): Tensor {
    return empty([batch, this.opts.kvHeads, capacity, this.opts.headDim], { dtype: this.opts.dtype });
  }

  /** Bytes held by the cache's storage. */
  get bytes(): number {
    const per = this.opts.dtype === "float64" ? 8 : this.opts.dtype === "float32" ? 4 : 2;
    return 2 * this.layers * this._batch * this.opts.kvHeads * this._capacity * this.opts.headDim * per;
  }

  /** Writes layer `layer`'s new keys/values [B, kvHeads, L, headDim] after the filled positions and returns views of
   * everything filled so far (past + these L). Call `advance(L)` once every layer has written. */
  update(layer: number, k: Tensor, v: Tensor): [Tensor, Tensor] {
    const L = k.size(2);
    if (this.pending !== 0 && this.pending !== L)
      throw new RangeError(`KVCache.update: layer ${layer} writes ${L} positions, another layer wrote ${this.pending}`);
    this.pending = L;
    const end = this.length + L;
    if (end > this._capacity) this.grow(Math.max(end, 2 * this._capacity));
    const K = this.keys[layer];
    const V = this.values[layer];
    if (!K || !V) throw new RangeError(`KVCache.update: layer ${layer} of ${this.layers}`);
    noGrad(() =>
      tidy(() => {
        K.narrow(2, this.length, L).copy_(k);
        V.narrow(2, this.length, L).copy_(v);
      }),
    );
    return [K.narrow(2, 0, end), V.narrow(2, 0, end)];
  }

  /** Commits the positions the last forward wrote. */
  advance(L: number): void {
    if (this.pending !== 0 && L !== this.pending)
      throw new RangeError(`KVCache.advance(${L}): the layers wrote ${this.pending} positions`);
    this.length += L;
    this.pending = 0;
  }

  /** Drops the last `n` positions (e.g. a speculative or rejected step). */
  truncate(length: number): void {
    if (length < 0 || length > this.length) throw new RangeError(`KVCache.truncate(${length}) of ${this.length}`);
    this.length = length;
    this.pending = 0;
  }

  private grow(capacity: number): void {
    noGrad(() => {
      for (const list of [this.keys, this.values]) {
        for (let l = 0; l < list.length; l++) {
          const old = list[l] as Tensor;
          const next = keep(this.alloc(capacity));
          tidy(() => next.narrow(2, 0, this.length).copy_(old.narrow(2, 0, this.length)));
          old.dispose();
          list[l] = next;
        }
      }
    });
    this._capacity = capacity;
  }

  /** Keeps (and reorders) batch rows: row i of the result is row `rows[i]` now (beam search, finished rows). */
  selectRows(rows: number[]): void {
    noGrad(() => {
      for (const list of [this.keys, this.values]) {
        for (let l = 0; l < list.length; l++) {
          const old = list[l] as Tensor;
          const next = keep(this.alloc(this._capacity, rows.length));
          tidy(() => {
            const idx = tensor(rows, { dtype: "int64" });
            next.narrow(2, 0, this.length).copy_(old.narrow(2, 0, this.length).indexSelect(0, idx));
          });
          old.dispose();
          list[l] = next;
        }
      }
    });
    this._batch = rows.length;
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
    this.keys = [];
    this.values = [];
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
