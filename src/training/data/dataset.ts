// Factory's LazySupervisedDataset: the JSON is parsed and validated once; a sample is tokenised, masked and its image
// decoded only when it is requested. Differences from Factory, on purpose: bad data fails up front with the file,
// sample and field; a tokenisation mismatch throws (or, with skipMismatched, drops the sample and counts it) instead
// of training on a fully masked sample; a truncated/corrupt image is an error (Factory sets PIL's
// LOAD_TRUNCATED_IMAGES and trains on the grey-filled remainder).

import { IMAGE_PLACEHOLDER } from "../../config/index.js";
import { ImageError, TinyllavaError } from "../../errors.js";
import { decodeImage, type ImageProcessor } from "../../processing/image.js";
import {
  encodeForTraining,
  LabelMaskError,
  type TemplateName,
  type TrainingEncoding,
} from "../../processing/templates.js";
import type { TinyTokenizer } from "../../processing/tokenizer.js";
import { DataError, type DataErrorPlace, dataError, describePlace } from "./errors.js";
import { modalityLength, sampleLength } from "./lengths.js";
import { imagePath, type LlavaRecord, readLlavaJson, toTurns } from "./llava-json.js";

/** Preprocessed pixel values of one image, [3, H, W] float32. */
export interface PixelValues {
  data: Float32Array;
  shape: [number, number, number];
}

export interface SupervisedSample {
  index: number;
  id: string;
  /** token ids with −200 for the image, truncated to modelMaxLength */
  inputIds: number[];
  /** −100 where there is no loss, truncated with inputIds */
  labels: number[];
  /** the record has an image (Factory: `'image' in sample`) */
  hasImage: boolean;
  /** one entry per −200 in inputIds, in order: the record's image, or — for a text-only sample under the `pretrain`
   * template, whose prompt always has "<image>" — Factory's zero image. A text-only sample under the other templates
   * has none (Factory passes a zero image that its model drops: same outcome). */
  images: PixelValues[];
  /** inputIds/labels were cut to modelMaxLength */
  truncated: boolean;
}

export interface LlavaDatasetOptions {
  /** the LLaVA JSON file (Factory's data_path) */
  dataPath: string;
  /** Factory's image_folder */
  imageFolder?: string;
  tokenizer: TinyTokenizer;
  /** the stage's template (Factory's conv_version): `pretrain` for stage 1, the LLM family's for fine-tuning */
  template: Exclude<TemplateName, "raw">;
  /** needed when samples have images (square or pad aspect is the processor's) */
  imageProcessor?: ImageProcessor | null;
  /** tokenizer.model_max_length (Factory's --model_max_length): ids and labels are cut to it (default: the
   * tokenizer's, else no limit) */
  modelMaxLength?: number;
  /** pad/eos ids as Factory's tokenizer has them (see factorySpecialIds); default the tokenizer's */
  padTokenId?: number | null;
  eosTokenId?: number | null;
  /** Llama tokenizers' legacy flag (default tokenizer_config.json's, else true) */
  legacy?: boolean;
  /** drop samples whose label mask does not match the tokenisation (counted in stats()) instead of throwing */
  skipMismatched?: boolean;
  /** check up front that image files exist (default true) */
  checkImageFiles?: boolean;
}

export interface MismatchedSample {
  index: number;
  id: string;
  curLen: number;
  totalLen: number;
}

export interface DatasetStats {
  samples: number;
  /** samples dropped by skipMismatched (each counted once, however often requested) */
  mismatched: MismatchedSample[];
  /** distinct samples seen truncated so far */
  truncated: number;
}

/** Cuts ids and labels to maxLength, as Factory's collator does (input_ids[:, :max], labels[:, :max]). */
export function truncateSample(
  inputIds: number[],
  labels: number[],
  maxLength: number,
): { inputIds: number[]; labels: number[]; truncated: boolean } {
  if (inputIds.length <= maxLength) return { inputIds, labels, truncated: false };
  return { inputIds: inputIds.slice(0, maxLength), labels: labels.slice(0, maxLength), truncated: true };
}

/** The [3, H, W] an image processor outputs (Factory's zero image uses crop_size, else size). */
export function processorOutputShape(p: ImageProcessor): [number, number, number] {
  const c = p.config;
  if (c.crop) return [3, c.crop.height, c.crop.width];
  if ("height" in c.size) return [3, c.size.height, c.size.width];
  throw new TinyllavaError(
    `image processor resizes to a shortest edge without a crop: the output size varies, so no zero image can be made`,
  );
}

export class LlavaDataset {
  readonly file: string;
  readonly records: LlavaRecord[];
  readonly modelMaxLength: number;
  private readonly mismatched = new Map<number, MismatchedSample>();
  private readonly truncatedSeen = new Set<number>();

  constructor(readonly options: LlavaDatasetOptions) {
    this.file = options.dataPath;
    this.records = readLlavaJson(options.dataPath, {
      imageFolder: options.imageFolder,
      checkImageFiles: options.checkImageFiles,
      template: options.template,
    });
    this.modelMaxLength = options.modelMaxLength ?? options.tokenizer.modelMaxLength ?? Number.POSITIVE_INFINITY;
    const needsImages = options.template === "pretrain" ? this.records.length > 0 : this.records.some((r) => r.image);
    if (needsImages && !options.imageProcessor)
      throw new DataError(
        `${this.file}: samples need images (or the pretrain template's zero image) but no image processor was given`,
        { file: this.file },
      );
  }

  get length(): number {
    return this.records.length;
  }

  /** Factory's `lengths` (words + 128 per image). */
  lengths(): number[] {
    return this.records.map(sampleLength);
  }

  /** Factory's `modality_lengths` (words; negative for text-only), what the grouped sampler takes. */
  modalityLengths(): number[] {
    return this.records.map(modalityLength);
  }

  private place(i: number, field?: string): DataErrorPlace {
    return { file: this.file, index: i, sampleId: this.records[i]?.id, field };
  }

  /** The text side of sample i, not truncated; null when it is skipped as mismatched. */
  encode(i: number): TrainingEncoding | null {
    const r = this.records[i];
    if (!r) throw new RangeError(`${this.file}: sample index ${i} is out of range (0..${this.records.length - 1})`);
    const o = this.options;
    try {
      return encodeForTraining(o.template, toTurns(r), o.tokenizer, {
        padTokenId: o.padTokenId,
        eosTokenId: o.eosTokenId,
        legacy: o.legacy,
        modelMaxLength: this.modelMaxLength,
        where: describePlace(this.place(i, "conversations")),
      });
    } catch (e) {
      if (!(e instanceof LabelMaskError)) throw e;
      if (!o.skipMismatched) throw new DataError(e.message, this.place(i, "conversations"));
      this.mismatched.set(i, { index: i, id: r.id, curLen: e.curLen, totalLen: e.totalLen });
      return null;
    }
  }

  /** Decodes and preprocesses sample i's image; errors name the data file, the sample and the image file. */
  async loadImage(i: number): Promise<PixelValues> {
    const r = this.records[i];
    const proc = this.options.imageProcessor;
    if (!r?.image || !proc) throw new RangeError(`${this.file}: sample #${i} has no image to load`);
    const path = imagePath(this.options.imageFolder, r.image);
    let img: Awaited<ReturnType<typeof decodeImage>>;
    try {
      img = await decodeImage(path, path);
    } catch (e) {
      if (e instanceof ImageError) throw dataError(this.place(i, "image"), e.message);
      throw e;
    }
    const t = proc.toPixelValues(img);
    try {
      return { data: t.dataSync() as Float32Array, shape: t.shape as [number, number, number] };
    } finally {
      t.dispose();
    }
  }

  /** Sample i, ready for the collator; null when it is skipped as mismatched (skipMismatched). */
  async get(i: number): Promise<SupervisedSample | null> {
    const enc = this.encode(i);
    if (!enc) return null;
    const r = this.records[i] as LlavaRecord;
    const cut = truncateSample(enc.inputIds, enc.labels, this.modelMaxLength);
    if (cut.truncated) this.truncatedSeen.add(i);
    // the model takes one image per placeholder left after truncation (Factory's model drops the features of an
    // image whose placeholder was cut off)
    const placeholders = cut.inputIds.filter((t) => t === IMAGE_PLACEHOLDER).length;
    const images: PixelValues[] = [];
    if (placeholders > 0) {
      if (r.image) images.push(await this.loadImage(i));
      else {
        const shape = processorOutputShape(this.options.imageProcessor as ImageProcessor);
        images.push({ data: new Float32Array(shape[0] * shape[1] * shape[2]), shape });
      }
    }
    return {
      index: i,
      id: r.id,
      inputIds: cut.inputIds,
      labels: cut.labels,
      hasImage: r.image !== undefined,
      images,
      truncated: cut.truncated,
    };
  }

  /** Decodes every image once (optional pass before training); throws one DataError listing all corrupt images. */
  async verifyImages(opts: { concurrency?: number } = {}): Promise<void> {
    const todo = this.records.map((r, i) => ({ r, i })).filter(({ r }) => r.image !== undefined);
    const failures: DataError[] = [];
    let next = 0;
    const worker = async () => {
      while (next < todo.length) {
        const { r, i } = todo[next++] as { r: LlavaRecord; i: number };
        const path = imagePath(this.options.imageFolder, r.image as string);
        try {
          await decodeImage(path, path);
        } catch (e) {
          if (!(e instanceof ImageError)) throw e;
          failures.push(dataError(this.place(i, "image"), e.message));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));
    if (failures.length === 0) return;
    failures.sort((a, b) => (a.place.index ?? 0) - (b.place.index ?? 0));
    const [first] = failures as [DataError];
    const rest =
      failures.length > 1
        ? `\n${failures.length} corrupt images:\n${failures.map((f) => `  ${f.message}`).join("\n")}`
        : "";
    throw new DataError(first.message + rest, first.place);
  }

  stats(): DatasetStats {
    return {
      samples: this.records.length,
      mismatched: [...this.mismatched.values()].sort((a, b) => a.index - b.index),
      truncated: this.truncatedSeen.size,
    };
  }
}
