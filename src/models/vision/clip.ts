// CLIP vision tower (HF CLIPVisionModel, model_type "clip_vision_model"): like SigLIP but (1) a learned class
// token prepended, (2) a bias-free patch conv, (3) position embeddings for patches + 1, (4) `pre_layrnorm` (HF's
// spelling) before the encoder, (5) quick_gelu in OpenAI's checkpoints.

import { patchesPerSide, type VisionConfig } from "../../config/index.js";
import { Conv2d, Embedding, LayerNorm } from "../../nn/layers.js";
import { Module } from "../../nn/module.js";
import { arange, cat, empty } from "../../torch/creation.js";
import type { DType } from "../../torch/dtype.js";
import type { Tensor } from "../../torch/tensor.js";
import { VisionEncoder, type VisionTower } from "./encoder.js";

class ClipEmbeddings extends Module {
  readonly classEmbedding: Tensor;
  readonly patch: Conv2d;
  readonly position: Embedding;
  readonly numPositions: number;
  constructor(cfg: VisionConfig, dtype: DType) {
    super();
    this.classEmbedding = this.registerParameter("class_embedding", empty([cfg.hidden_size], { dtype }).normal_(0, 1)); // (1)
    this.patch = this.registerModule(
      "patch_embedding",
      new Conv2d(cfg.num_channels, cfg.hidden_size, cfg.patch_size, { dtype, stride: cfg.patch_size, bias: false }), // (2)
    );
    this.numPositions = patchesPerSide(cfg) ** 2 + 1; // (3)
    this.position = this.registerModule(
      "position_embedding",
      new Embedding(this.numPositions, cfg.hidden_size, { dtype }),
    );
  }
  forward(pixels: Tensor): Tensor {
    const x = this.patch.forward(pixels).flatten(2).transpose(1, 2);
    const B = x.size(0);
    if (x.size(1) + 1 !== this.numPositions) {
      throw new RangeError(`CLIP expects ${this.numPositions - 1} patches, the image gives ${x.size(1)}`);
    }
    const cls = this.classEmbedding.view(1, 1, -1).expand(B, 1, x.size(2));
    return cat([cls, x], 1).add(this.position.forward(arange(0, this.numPositions)));
  }
}

class ClipVisionTransformer extends Module {
  readonly embeddings: ClipEmbeddings;
  readonly preLayrnorm: LayerNorm;
  readonly encoder: VisionEncoder;
  readonly postLayernorm: LayerNorm;
  constructor(cfg: VisionConfig, dtype: DType) {
    super();
    this.embeddings = this.registerModule("embeddings", new ClipEmbeddings(cfg, dtype));
    this.preLayrnorm = this.registerModule(
      "pre_layrnorm",
      new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, { dtype }),
    ); // (4)
    this.encoder = this.registerModule("encoder", new VisionEncoder(cfg, dtype));
    this.postLayernorm = this.registerModule(
      "post_layernorm",
      new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, { dtype }),
    );
  }
}

export class ClipVisionTower extends Module implements VisionTower {
  readonly visionModel: ClipVisionTransformer;
  constructor(
    readonly config: VisionConfig,
    public dtype: DType,
  ) {
    super();
    this.visionModel = this.registerModule("vision_model", new ClipVisionTransformer(config, dtype));
  }
  hiddenState(pixelValues: Tensor, k: number): Tensor {
    const m = this.visionModel;
    const x = m.preLayrnorm.forward(m.embeddings.forward(pixelValues.to(this.dtype)));
    return m.encoder.forward(x, k);
  }
  lastHiddenState(pixelValues: Tensor): Tensor {
    // HF: post_layernorm is applied to the pooled class token only; last_hidden_state is the raw encoder output
    return this.hiddenState(pixelValues, this.config.num_hidden_layers);
  }
}
