// Factory's DataCollatorForSupervisedDataset: right padding with the pad id, labels padded with −100, cut to
// model_max_length, attention mask = (input_ids != pad). When pad == eos (Phi-2, Qwen2 base) Factory first swaps every
// real eos for −300 so that the mask keeps them, then swaps back: the outcome is eos tokens attended and supervised,
// padding not. When pad != eos, a real token equal to the pad id is masked out, as in Factory.
import { IMAGE_PLACEHOLDER } from "../../config/index.js";
import { tensor } from "../../torch/creation.js";
import type { Tensor } from "../../torch/tensor.js";
import { type SupervisedSample, truncateSample } from "./dataset.js";

const IGNORE_INDEX = -100;

export interface CollateOptions {
  padTokenId: number;
  eosTokenId?: number | null;
  /** cut every row to this length (Factory: tokenizer.model_max_length); samples from LlavaDataset already are */
  maxLength?: number;
}

export interface Batch {
  /** dataset indices and sample ids, in batch order */
  indices: number[];
  ids: string[];
  /** [B][L] right-padded with the pad id; −200 marks each image */
  inputIds: number[][];
  /** [B][L] 1 for attended tokens, 0 for padding */
  attentionMask: number[][];
  /** [B][L] −100 where there is no loss (padding included) */
  labels: number[][];
  /** per sample: the record has an image (Factory gives text-only samples a zero image its model then drops) */
  hasImage: boolean[];
  /** one [3, H, W] image per −200 in inputIds, in reading order across the batch */
  pixelValues: Float32Array[];
  imageShape: [number, number, number] | null;
}

export function collate(samples: SupervisedSample[], opts: CollateOptions): Batch {
  if (samples.length === 0) throw new RangeError("collate: empty batch");
  const max = opts.maxLength ?? Number.POSITIVE_INFINITY;
  const rows = samples.map((s) => truncateSample(s.inputIds, s.labels, max));
  const L = Math.max(...rows.map((r) => r.inputIds.length));
  const pad = opts.padTokenId;
  const padIsEos = opts.eosTokenId !== undefined && opts.eosTokenId !== null && pad === opts.eosTokenId;
  const inputIds: number[][] = [];
  const attentionMask: number[][] = [];
  const labels: number[][] = [];
  for (const r of rows) {
    const n = r.inputIds.length;
    inputIds.push([...r.inputIds, ...new Array<number>(L - n).fill(pad)]);
    labels.push([...r.labels, ...new Array<number>(L - n).fill(IGNORE_INDEX)]);
    attentionMask.push(
      Array.from({ length: L }, (_, j) => (j < n && (padIsEos || (r.inputIds[j] as number) !== pad) ? 1 : 0)),
    );
  }
  const pixelValues: Float32Array[] = [];
  let imageShape: [number, number, number] | null = null;
  samples.forEach((s, b) => {
    const placeholders = (rows[b] as { inputIds: number[] }).inputIds.filter((t) => t === IMAGE_PLACEHOLDER).length;
    if (placeholders > s.images.length)
      throw new RangeError(
        `collate: sample "${s.id}" has ${placeholders} image placeholder(s) but ${s.images.length} image(s)`,
      );
    // an image whose placeholder was cut off by maxLength is dropped, as Factory's model does
    for (const img of s.images.slice(0, placeholders)) {
      if (imageShape && img.shape.join() !== imageShape.join())
        throw new RangeError(
          `collate: sample "${s.id}" has an image of shape [${img.shape}] but the batch has [${imageShape}]; every image must be preprocessed to the same size`,
        );
      imageShape = img.shape;
      pixelValues.push(img.data);
    }
  });
  return {
    indices: samples.map((s) => s.index),
    ids: samples.map((s) => s.id),
    inputIds,
    attentionMask,
    labels,
    hasImage: samples.map((s) => s.hasImage),
    pixelValues,
    imageShape,
  };
}

export interface BatchTensors {
  /** [B, L] int64 with −200 placeholders */
  inputIds: Tensor;
  /** [B, L] int64 */
  attentionMask: Tensor;
  /** [B, L] int64 */
  labels: Tensor;
  /** [N, 3, H, W] float32, one row per placeholder in reading order; null without images */
  pixelValues: Tensor | null;
}

/** The batch as tensors for TinyLlava.forward (its ForwardArgs). The caller owns (and disposes) them. */
export function batchToTensors(batch: Batch): BatchTensors {
  let pixelValues: Tensor | null = null;
  if (batch.pixelValues.length > 0 && batch.imageShape) {
    const size = batch.imageShape[0] * batch.imageShape[1] * batch.imageShape[2];
    const all = new Float32Array(batch.pixelValues.length * size);
    batch.pixelValues.forEach((p, i) => {
      all.set(p, i * size);
    });
    pixelValues = tensor(all, { shape: [batch.pixelValues.length, ...batch.imageShape] });
  }
  const ids = (rows: number[][]) => {
    const flat = BigInt64Array.from(rows.flat(), (x) => BigInt(x));
    return tensor(flat, { shape: [rows.length, rows[0]?.length ?? 0] });
  };
  return {
    inputIds: ids(batch.inputIds),
    attentionMask: ids(batch.attentionMask),
    labels: ids(batch.labels),
    pixelValues,
  };
}
