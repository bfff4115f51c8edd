// Batches in sampler order, with a state (epoch, position) that a checkpoint can store so that training resumes
// mid-epoch with exactly the batches it would have seen. Samples a dataset skips (skipMismatched) leave their batch
// smaller; a batch left empty is passed over.
import { type Batch, type CollateOptions, collate } from "./collator.js";
import type { SupervisedSample } from "./dataset.js";
import type { Sampler } from "./sampler.js";

export interface SampleSource {
  readonly length: number;
  get(i: number): Promise<SupervisedSample | null>;
}

export interface LoaderState {
  epoch: number;
  /** sampler positions of this epoch already handed out */
  position: number;
  /** the epoch size the state was taken with (checked on restore) */
  size: number;
}

export interface LoaderBatch {
  epoch: number;
  /** batch number within the epoch (counting batches left empty by skipped samples) */
  step: number;
  batch: Batch;
}

export class DataLoader {
  private epoch = 0;
  private position = 0;
  private orderCache: { epoch: number; order: number[] } | null = null;
  readonly batchSize: number;
  readonly dropLast: boolean;

  constructor(
    readonly dataset: SampleSource,
    readonly sampler: Sampler,
    readonly opts: { batchSize: number; dropLast?: boolean; collate: CollateOptions },
  ) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1)
      throw new RangeError(`DataLoader: batchSize must be a positive integer, got ${opts.batchSize}`);
    if (sampler.size !== dataset.length)
      throw new RangeError(
        `DataLoader: the sampler orders ${sampler.size} samples but the dataset has ${dataset.length}`,
      );
    this.batchSize = opts.batchSize;
    this.dropLast = opts.dropLast ?? false;
  }

  /** Batches per epoch (HF's dataloader: the last partial batch is kept unless dropLast). */
  get batchesPerEpoch(): number {
    const n = this.sampler.size;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  private order(): number[] {
    if (this.orderCache?.epoch !== this.epoch)
      this.orderCache = { epoch: this.epoch, order: this.sampler.order(this.epoch) };
    return this.orderCache.order;
  }

  /** The next batch of the current epoch, or null when the epoch is over (the loader then moves to the next one). */
  async next(): Promise<LoaderBatch | null> {
    const end = this.batchesPerEpoch * this.batchSize;
    const order = this.order();
    while (this.position < Math.min(end, order.length)) {
      const step = Math.floor(this.position / this.batchSize);
      const indices = order.slice(this.position, this.position + this.batchSize);
      this.position += indices.length;
      // decode the batch's images concurrently (libvips works off the main thread)
      const samples = (await Promise.all(indices.map((i) => this.dataset.get(i)))).filter(
        (s): s is SupervisedSample => s !== null,
      );
      if (samples.length > 0) return { epoch: this.epoch, step, batch: collate(samples, this.opts.collate) };
    }
    this.epoch++;
    this.position = 0;
    return null;
  }

  state(): LoaderState {
    return { epoch: this.epoch, position: this.position, size: this.sampler.size };
  }

  loadState(s: LoaderState): void {
    if (s.size !== this.sampler.size)
      throw new RangeError(
        `DataLoader: the saved state is for ${s.size} samples but the sampler has ${this.sampler.size}`,
      );
    if (
      !Number.isInteger(s.epoch) ||
      s.epoch < 0 ||
      !Number.isInteger(s.position) ||
      s.position < 0 ||
      s.position > s.size
    )
      throw new RangeError(`DataLoader: invalid saved state ${JSON.stringify(s)}`);
    this.epoch = s.epoch;
    this.position = s.position;
  }
}
