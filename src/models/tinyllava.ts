// TinyLLaVA = vision tower + connector + language model, and the image splicing that joins them: every image
// placeholder in input_ids (Factory's −200, or LLaVA's image token — one per image, or already repeated once per
// feature row) becomes that image's feature rows in the input embeddings; labels there are −100.

import { IMAGE_PLACEHOLDER, type TinyLlavaConfig } from "../config/index.js";
import { ConfigError } from "../errors.js";
import { Module } from "../nn/module.js";
import type { QuantizeReport } from "../nn/quant.js";
import { cat, full, tensor, zeros } from "../torch/creation.js";
import type { DType } from "../torch/dtype.js";
import * as F from "../torch/functional.js";
import { tidy } from "../torch/memory.js";
import type { Tensor } from "../torch/tensor.js";
import { buildConnector, type Connector, type ConnectorOptions } from "./connectors/index.js";
import type { CausalLM } from "./llm/base.js";
import { buildLanguageModel, buildVisionTower } from "./registry.js";
import { hiddenStateIndex, type VisionTower } from "./vision/encoder.js";

export const IGNORE_INDEX = -100;

export interface ForwardArgs {
  /** connector outputs [N, T, hidden] for the images, when already computed (pixelValues is then not needed) */
  imageFeatures?: Tensor | null;
  /** [B, L] int64 token ids, with image placeholders */
  inputIds: Tensor;
  /** [N, 3, H, W] one row per image placeholder, in reading order across the batch */
  pixelValues?: Tensor | null;
  /** [B, L] 1 for real tokens, 0 for padding */
  attentionMask?: Tensor | null;
  /** [B, L] int64 targets, −100 where no loss */
  labels?: Tensor | null;
}

export interface ForwardOutput {
  logits: Tensor;
  /** mean cross entropy over shifted labels ≠ −100 (when labels were given) */
  loss?: Tensor;
  /** the (possibly expanded) attention mask and labels that go with the logits */
  attentionMask: Tensor;
  labels?: Tensor;
}

export interface EmbeddedInputs {
  inputsEmbeds: Tensor;
  /** text rows already multiplied by the LLM's embedding scale (Gemma under transformers' LLaVA) */
  embedsScaled?: boolean;
  attentionMask: Tensor;
  labels?: Tensor;
}

export class TinyLlava extends Module {
  readonly visionTower: VisionTower;
  readonly connector: Connector;
  readonly languageModel: CausalLM;
  /** set when the language model was quantised to int8 while loading (loadTinyLlava's `quantize`) */
  quantization: QuantizeReport | null = null;

  constructor(
    readonly config: TinyLlavaConfig,
    public dtype: DType,
    parts: { keys?: Set<string>; connector?: Omit<ConnectorOptions, "dtype"> } = {},
  ) {
    super();
    this.visionTower = this.registerModule("vision_tower", buildVisionTower(config.vision, dtype));
    this.connector = this.registerModule(
      "connector",
      buildConnector(
        config.connector_type,
        {
          visionHidden: config.vision.hidden_size,
          hidden: config.text.hidden_size,
          numQueries: config.num_queries,
          numResamplerLayers: config.num_resampler_layers,
        },
        { dtype, ...parts.connector },
      ),
    );
    const lmKeys = parts.keys
      ? new Set(
          [...parts.keys].filter((k) => k.startsWith("language_model.")).map((k) => k.slice("language_model.".length)),
        )
      : undefined;
    this.languageModel = this.registerModule(
      "language_model",
      buildLanguageModel(config.text, { dtype, keys: lmKeys }),
    );
  }

  /** Vision features after the select strategy: hidden_states[vision_feature_layer], first token dropped for
   * `patch`/`default` (also for SigLIP, as Factory does), all kept for `full`/`cls_patch`. */
  selectedFeatures(pixelValues: Tensor): Tensor {
    const k = hiddenStateIndex(this.config.vision_feature_layer, this.config.vision.num_hidden_layers);
    const hs = this.visionTower.hiddenState(pixelValues, k);
    const s = this.config.vision_feature_select_strategy;
    return s === "patch" || s === "default" ? hs.slice(1, 1) : hs;
  }

  /** Connector output for images [N, 3, H, W] → [N, T, hidden]. */
  encodeImages(pixelValues: Tensor): Tensor {
    return tidy(() => this.connector.forward(this.selectedFeatures(pixelValues)));
  }

  isImageToken(id: number): boolean {
    return id === IMAGE_PLACEHOLDER || (this.config.source_format === "llava" && id === this.config.image_token_index);
  }

  /** Builds the LLM input embeddings with image features spliced in; rows that grow unevenly are padded on the
   * right (training, as Factory) or on the left (`padding: "left"`, generation). */
  embedInputs(args: ForwardArgs, padding: "right" | "left" = "right"): EmbeddedInputs {
    return tidy(() => this.splice(args, padding));
  }

  private splice(
    { inputIds, pixelValues, attentionMask, labels, imageFeatures }: ForwardArgs,
    padding: "right" | "left",
  ): EmbeddedInputs {
    const [B, L] = inputIds.shape as [number, number];
    const ids = inputIds.toArray();
    const imageAt = ids.map((id) => this.isImageToken(id));
    const nImageTokens = imageAt.filter(Boolean).length;
    const safeIds = nImageTokens > 0 ? inputIds.maskedFill(imageTokenMask(imageAt, inputIds), 0) : inputIds;
    // Gemma's √hidden embedding scale: Factory (tinyllava configs) scales the whole spliced sequence, image features
    // included; transformers' LLaVA (llava configs) scales only the text embeddings. Both are reproduced.
    const lm = this.languageModel;
    const embedsScaled = lm.embedScale !== 1 && this.config.source_format === "llava";
    const text = embedsScaled ? lm.embed(safeIds).mul(lm.embedScale) : lm.embed(safeIds);
    if (nImageTokens === 0) {
      const given = imageFeatures?.size(0) ?? pixelValues?.size(0) ?? 0;
      if (given > 0) throw new RangeError(`${given} image(s) given but input_ids has no image token`);
      return {
        inputsEmbeds: text,
        embedsScaled,
        attentionMask: attentionMask ?? full([B, L], 1, { dtype: "int64" }),
        labels: labels ?? undefined,
      };
    }
    if (!pixelValues && !imageFeatures)
      throw new RangeError(`input_ids has ${nImageTokens} image token(s) but no pixel values were given`);
    const features = (imageFeatures ?? this.encodeImages(pixelValues as Tensor)).to(text.dtype); // [N, T, H]
    const [N, T] = features.shape as [number, number];
    const maskArr = attentionMask ? attentionMask.toArray() : null;
    const labArr = labels ? labels.toArray() : null;
    const rows: { embeds: Tensor[]; mask: number[]; labels: number[] }[] = [];
    let img = 0;
    for (let b = 0; b < B; b++) {
      const row = { embeds: [] as Tensor[], mask: [] as number[], labels: [] as number[] };
      let start = 0;
      const flush = (end: number) => {
        if (end <= start) return;
        row.embeds.push(text.select(0, b).narrow(0, start, end - start));
        for (let j = start; j < end; j++) {
          row.mask.push(maskArr ? (maskArr[b * L + j] as number) : 1);
          row.labels.push(labArr ? (labArr[b * L + j] as number) : IGNORE_INDEX);
        }
      };
      let j = 0;
      while (j < L) {
        if (!imageAt[b * L + j]) {
          j++;
          continue;
        }
        flush(j);
        let run = 1;
        while (j + run < L && imageAt[b * L + j + run] && ids[b * L + j + run] === ids[b * L + j]) run++;
        // Factory's placeholder (−200): each one is an image, whatever the run length. LLaVA's image token (llava
        // configs): HF's processor repeats it once per feature row, so a run of k·T tokens is k images; a single
        // token (our own prompts) is one image.
        let images = run;
        if (ids[b * L + j] !== IMAGE_PLACEHOLDER && run > 1) {
          if (run % T !== 0)
            throw new RangeError(
              `row ${b}: a run of ${run} image tokens (id ${ids[b * L + j]}) at position ${j} is not a multiple of the ${T} feature rows per image`,
            );
          images = run / T;
        }
        const consumed = run;
        for (let k = 0; k < images; k++) {
          if (img >= N) throw new RangeError(`input_ids has more image placeholders than the ${N} image(s) given`);
          row.embeds.push(features.select(0, img++));
          const m = maskArr ? (maskArr[b * L + j] as number) : 1;
          for (let t = 0; t < T; t++) {
            row.mask.push(m);
            row.labels.push(IGNORE_INDEX);
          }
        }
        j += consumed;
        start = j;
      }
      flush(L);
      rows.push(row);
    }
    if (img !== N) throw new RangeError(`${N} image(s) given but input_ids has placeholders for ${img}`);
    const maxLen = Math.max(...rows.map((r) => r.mask.length));
    const H = text.size(2);
    const left = padding === "left";
    const embeds = rows.map((r) => {
      const e = cat(r.embeds, 0);
      if (r.mask.length === maxLen) return e;
      const z = zeros([maxLen - r.mask.length, H], { dtype: e.dtype });
      return cat(left ? [z, e] : [e, z], 0);
    });
    const pad = (xs: number[], v: number) => {
      const fill = new Array(maxLen - xs.length).fill(v);
      return left ? [...fill, ...xs] : [...xs, ...fill];
    };
    return {
      inputsEmbeds: cat(
        embeds.map((e) => e.unsqueeze(0)),
        0,
      ),
      embedsScaled,
      attentionMask: tensor(
        rows.map((r) => pad(r.mask, 0)),
        { dtype: "int64" },
      ),
      labels: labels
        ? tensor(
            rows.map((r) => pad(r.labels, IGNORE_INDEX)),
            { dtype: "int64" },
          )
        : undefined,
    };
  }

  forward(args: ForwardArgs): ForwardOutput {
    const { inputsEmbeds, attentionMask, labels, embedsScaled } = this.embedInputs(args);
    const logits = this.languageModel.forward({ inputsEmbeds, attentionMask, embedsScaled });
    const out: ForwardOutput = { logits, attentionMask, labels };
    if (labels) out.loss = causalLmLoss(logits, labels);
    return out;
  }
}

function imageTokenMask(imageAt: boolean[], like: Tensor): Tensor {
  return tensor(imageAt, { shape: like.shape });
}

/** Shifted causal-LM loss: logits[:, :-1] predict labels[:, 1:]; mean over targets ≠ −100. Computed on float32 logits
 * whatever the model dtype (float64 too), as transformers' ForCausalLMLoss does (`logits.float()`). */
export function causalLmLoss(logits: Tensor, labels: Tensor): Tensor {
  const [B, L, V] = logits.shape as [number, number, number];
  // transformers' ForCausalLMLoss computes on logits.float(): float32 whatever the model dtype (float64 included)
  const lg = logits.dtype === "float32" ? logits : logits.to("float32");
  const shifted = lg.narrow(1, 0, L - 1).reshape(B * (L - 1), V);
  const target = labels.narrow(1, 1, L - 1).reshape(B * (L - 1));
  return F.crossEntropy(shifted, target, { ignoreIndex: IGNORE_INDEX });
}

export function assertDtype(d: string): DType {
  if (d === "float32" || d === "float64" || d === "bfloat16" || d === "float16") return d;
  throw new ConfigError(`dtype "${d}" is not supported for models; use float32, bfloat16, float16 or float64`);
}
