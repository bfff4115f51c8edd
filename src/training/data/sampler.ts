// Sample orders for training: a seeded PRNG whose state can be saved and restored, a shuffling sampler, and Factory's
// length-grouped sampler (tinyllava/train/tinyllava_trainer.py, used with --group_by_modality_length). Each epoch's
// order is a pure function of (seed, epoch), so resuming needs only the epoch and the position within it. The orders
// are deterministic but not torch.randperm's: Factory draws from torch's global generator.

/** xoshiro128** state: four unsigned 32-bit words. */
export type RngState = [number, number, number, number];

const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k));

/** murmur3's 32-bit finaliser: spreads a seed's bits. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A small, fast, well-tested PRNG (xoshiro128**, seeded through splitmix32). */
export class Rng {
  private s: RngState;

  constructor(state: RngState) {
    if (state.length !== 4 || state.some((x) => !Number.isInteger(x) || x < 0 || x > 0xffffffff))
      throw new RangeError(`Rng: state must be four unsigned 32-bit integers, got ${JSON.stringify(state)}`);
    if (state.every((x) => x === 0)) throw new RangeError("Rng: the all-zero state is not allowed");
    this.s = [...state] as RngState;
  }

  /** A generator for (seed, stream): different streams (e.g. epochs) give independent sequences. */
  static fromSeed(seed: number, stream = 0): Rng {
    if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(stream))
      throw new RangeError(`Rng: seed and stream must be safe integers, got ${seed}, ${stream}`);
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 2 ** 32) >>> 0;
    let x = fmix32(lo ^ fmix32(hi ^ 0x9e3779b9) ^ fmix32((stream >>> 0) ^ 0x7f4a7c15) ^ Math.floor(stream / 2 ** 32));
    const st: number[] = [];
    for (let i = 0; i < 4; i++) {
      // splitmix32
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
      z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
      st.push((z ^ (z >>> 15)) >>> 0);
    }
    if (!st.some((v) => v !== 0)) st[0] = 1;
    return new Rng(st as RngState);
  }

  /** The current state (a copy); new Rng(state) continues the same sequence. */
  state(): RngState {
    return [...this.s] as RngState;
  }

  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    for (let i = 0; i < 4; i++) s[i] = (s[i] as number) >>> 0;
    return result;
  }

  /** Uniform integer in [0, n), unbiased (rejection sampling). */
  below(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) throw new RangeError(`Rng.below: n must be in 1..2^32, got ${n}`);
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const r = this.nextUint32();
      if (r < limit) return r % n;
    }
  }

  /** A random permutation of 0..n-1 (Fisher–Yates). */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.below(i + 1);
      [p[i], p[j]] = [p[j] as number, p[i] as number];
    }
    return p;
  }
}

/** Something that orders a dataset's indices, epoch by epoch. */
export interface Sampler {
  /** how many indices an epoch has */
  readonly size: number;
  /** the order of epoch `epoch`: a permutation of 0..size-1, the same for the same epoch */
  order(epoch: number): number[];
}

/** Every index once per epoch, shuffled with (seed, epoch) — or in order with shuffle: false. */
export class RandomSampler implements Sampler {
  readonly seed: number;
  readonly shuffle: boolean;
  constructor(
    readonly size: number,
    opts: { seed?: number; shuffle?: boolean } = {},
  ) {
    this.seed = opts.seed ?? 0;
    this.shuffle = opts.shuffle ?? true;
  }
  order(epoch: number): number[] {
    if (!this.shuffle) return Array.from({ length: this.size }, (_, i) => i);
    return Rng.fromSeed(this.seed, epoch).permutation(this.size);
  }
}

// ---- Factory's length grouping ----

/** split_to_even_chunks: `indices` into `numChunks` chunks of about equal total length (strided when the count does
 * not divide evenly; else greedily onto the shortest chunk, a full chunk taking no more). */
export function splitToEvenChunks(indices: number[], lengths: number[], numChunks: number): number[][] {
  if (indices.length % numChunks !== 0)
    return Array.from({ length: numChunks }, (_, c) => indices.filter((_, k) => k % numChunks === c));
  const perChunk = indices.length / numChunks;
  const chunks: number[][] = Array.from({ length: numChunks }, () => []);
  const totals = new Array<number>(numChunks).fill(0);
  for (const index of indices) {
    const shortest = totals.indexOf(Math.min(...totals)); // first minimum, as list.index(min(...))
    const chunk = chunks[shortest] as number[];
    chunk.push(index);
    totals[shortest] = (totals[shortest] as number) + (lengths[index] as number);
    if (chunk.length === perChunk) totals[shortest] = Number.POSITIVE_INFINITY;
  }
  return chunks;
}

/** get_length_grouped_indices: a random permutation cut into megabatches of worldSize × batchSize, each sorted by
 * length (longest first; ties keep their order, as Python's stable sort) and split into even chunks. */
export function lengthGroupedIndices(lengths: number[], batchSize: number, worldSize: number, rng: Rng): number[] {
  const indices = rng.permutation(lengths.length);
  const mb = worldSize * batchSize;
  const out: number[] = [];
  for (let i = 0; i < lengths.length; i += mb) {
    const megabatch = indices.slice(i, i + mb).sort((a, b) => (lengths[b] as number) - (lengths[a] as number));
    for (const chunk of splitToEvenChunks(megabatch, lengths, worldSize)) out.push(...chunk);
  }
  return out;
}

/** get_modality_length_grouped_indices: lengths > 0 are multimodal, < 0 text-only (|length| words). Each modality is
 * length-grouped on its own and cut into megabatches, so a megabatch holds one modality; the megabatches (without
 * each modality's last, partial one) are shuffled; the two partial ones are joined into a final mixed batch (split
 * into a full megabatch put first, and the rest last, when together they exceed a megabatch). A single-modality
 * dataset is length-grouped as a whole, as LLaVA does (Factory's copy fails there: it unpacks an empty list). */
export function modalityLengthGroupedIndices(
  lengths: number[],
  batchSize: number,
  worldSize: number,
  rng: Rng,
): number[] {
  const zero = lengths.indexOf(0);
  if (zero >= 0)
    throw new RangeError(
      `length-grouped sampler: sample #${zero} has length 0 (no words); Factory requires non-zero lengths`,
    );
  if (lengths.every((l) => l > 0) || lengths.every((l) => l < 0))
    return lengthGroupedIndices(lengths, batchSize, worldSize, rng);
  const mmIdx: number[] = [];
  const mmLen: number[] = [];
  const langIdx: number[] = [];
  const langLen: number[] = [];
  lengths.forEach((l, i) => {
    if (l > 0) {
      mmIdx.push(i);
      mmLen.push(l);
    } else {
      langIdx.push(i);
      langLen.push(-l);
    }
  });
  const mb = worldSize * batchSize;
  const mmShuffle = lengthGroupedIndices(mmLen, batchSize, worldSize, rng).map((i) => mmIdx[i] as number);
  const langShuffle = lengthGroupedIndices(langLen, batchSize, worldSize, rng).map((i) => langIdx[i] as number);
  const cut = (xs: number[]) => {
    const out: number[][] = [];
    for (let i = 0; i < xs.length; i += mb) out.push(xs.slice(i, i + mb));
    return out;
  };
  const mmMega = cut(mmShuffle);
  const langMega = cut(langShuffle);
  let additional = [...(mmMega.at(-1) as number[]), ...(langMega.at(-1) as number[])];
  const full = [...mmMega.slice(0, -1), ...langMega.slice(0, -1)];
  let megabatches = rng.permutation(full.length).map((i) => full[i] as number[]);
  if (additional.length >= mb) {
    megabatches = [additional.slice(0, mb), ...megabatches];
    additional = additional.slice(mb);
  }
  if (additional.length > 0) megabatches.push(additional);
  return megabatches.flat();
}

/** Factory's LengthGroupedSampler. batchSize is the per-device train batch size (Factory passes
 * args.train_batch_size, without gradient accumulation), worldSize the number of processes. */
export class LengthGroupedSampler implements Sampler {
  readonly size: number;
  readonly batchSize: number;
  readonly worldSize: number;
  readonly seed: number;
  readonly groupByModality: boolean;

  constructor(
    readonly lengths: number[],
    opts: { batchSize: number; worldSize?: number; seed?: number; groupByModality?: boolean },
  ) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1)
      throw new RangeError(`LengthGroupedSampler: batchSize must be a positive integer, got ${opts.batchSize}`);
    this.size = lengths.length;
    this.batchSize = opts.batchSize;
    this.worldSize = opts.worldSize ?? 1;
    this.seed = opts.seed ?? 0;
    this.groupByModality = opts.groupByModality ?? true;
  }

  order(epoch: number): number[] {
    const rng = Rng.fromSeed(this.seed, epoch);
    return this.groupByModality
      ? modalityLengthGroupedIndices(this.lengths, this.batchSize, this.worldSize, rng)
      : lengthGroupedIndices(this.lengths, this.batchSize, this.worldSize, rng);
  }
}
