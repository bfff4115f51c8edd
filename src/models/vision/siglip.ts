// SigLIP vision tower (HF SiglipVisionModel, model_type "siglip_vision_model"): patch conv (with bias) + learned
// position embeddings, no class token, ViT encoder, post_layernorm. The attention-pooling head is unused here.

import { patchesPerSide, type VisionConfig } from "../../config/index.js";
import { Conv2d, Embedding, LayerNorm } from "../../nn/layers.js";
import { Module } from "../../nn/module.js";
import { arange, zeros } from "../../torch/creation.js";
import type { DType } from "../../torch/dtype.js";
import type { Tensor } from "../../torch/tensor.js";
import { VisionEncoder, type VisionTower } from "./encoder.js";

class SiglipEmbeddings extends Module {
  readonly patch: Conv2d;
  readonly position: Embedding;
  readonly numPatches: number;
  constructor(cfg: VisionConfig, dtype: DType) {
    super();
    this.numPatches = patchesPerSide(cfg) ** 2;
    this.patch = this.registerModule(
      "patch_embedding",
      new Conv2d(cfg.num_channels, cfg.hidden_size, cfg.patch_size, { dtype, stride: cfg.patch_size }),
    );
    this.position = this.registerModule(
      "position_embedding",
      new Embedding(this.numPatches, cfg.hidden_size, { dtype }),
    );
  }
  forward(pixels: Tensor): Tensor {
    const x = this.patch.forward(pixels).flatten(2).transpose(1, 2); // [B, patches, hidden]
    if (x.size(1) !== this.numPatches) {
      throw new RangeError(
        `SigLIP expects ${this.numPatches} patches, the image gives ${x.size(1)} (size ${pixels.shape.slice(2).join("×")})`,
      );
    }
    return x.add(this.position.forward(arange(0, this.numPatches)));
  }
}

/** SigLIP's attention-pooling (MAP) head. TinyLLaVA never runs it (it takes hidden_states[−2]); its tensors are kept
 * as buffers with HF's names so a checkpoint saved by us still has every tensor HF's SiglipVisionModel expects. */
class SiglipHead extends Module {
  constructor(hidden: number, inter: number, dtype: DType) {
    super();
    const z = (shape: number[]) => zeros(shape, { dtype });
    this.registerBuffer("probe", z([1, 1, hidden]));
    const attn = this.registerModule("attention", new Module());
    attn.registerBuffer("in_proj_weight", z([3 * hidden, hidden]));
    attn.registerBuffer("in_proj_bias", z([3 * hidden]));
    const out = attn.registerModule("out_proj", new Module());
    out.registerBuffer("weight", z([hidden, hidden]));
    out.registerBuffer("bias", z([hidden]));
    const ln = this.registerModule("layernorm", new Module());
    ln.registerBuffer("weight", z([hidden]));
    ln.registerBuffer("bias", z([hidden]));
    const mlp = this.registerModule("mlp", new Module());
    const fc1 = mlp.registerModule("fc1", new Module());
    fc1.registerBuffer("weight", z([inter, hidden]));
    fc1.registerBuffer("bias", z([inter]));
    const fc2 = mlp.registerModule("fc2", new Module());
    fc2.registerBuffer("weight", z([hidden, inter]));
    fc2.registerBuffer("bias", z([hidden]));
  }
}

class SiglipVisionTransformer extends Module {
  readonly embeddings: SiglipEmbeddings;
  readonly encoder: VisionEncoder;
  readonly postLayernorm: LayerNorm;
  constructor(cfg: VisionConfig, dtype: DType) {
    super();
    this.embeddings = this.registerModule("embeddings", new SiglipEmbeddings(cfg, dtype));
    this.encoder = this.registerModule("encoder", new VisionEncoder(cfg, dtype));
    this.postLayernorm = this.registerModule(
      "post_layernorm",
      new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, { dtype }),
    );
    if (cfg.vision_use_head) this.registerModule("head", new SiglipHead(cfg.hidden_size, cfg.intermediate_size, dtype));
  }
}

export class SiglipVisionTower extends Module implements VisionTower {
  readonly visionModel: SiglipVisionTransformer;
  constructor(
    readonly config: VisionConfig,
    public dtype: DType,
  ) {
    super();
    this.visionModel = this.registerModule("vision_model", new SiglipVisionTransformer(config, dtype));
  }
  hiddenState(pixelValues: Tensor, k: number): Tensor {
    const x = this.visionModel.embeddings.forward(pixelValues.to(this.dtype));
    return this.visionModel.encoder.forward(x, k);
  }
  lastHiddenState(pixelValues: Tensor): Tensor {
    return this.visionModel.postLayernorm.forward(this.hiddenState(pixelValues, this.config.num_hidden_layers));
  }
}
