// The ViT encoder SigLIP and CLIP share (HF names: encoder.layers.N.{layer_norm1,self_attn.{q,k,v,out}_proj,
// layer_norm2,mlp.fc1,mlp.fc2}): pre-norm blocks with bidirectional multi-head attention.

import type { VisionConfig } from "../../config/index.js";
import { getActivation } from "../../nn/activations.js";
import { LayerNorm, Linear } from "../../nn/layers.js";
import * as lowp from "../../nn/lowp.js";
import { Module, ModuleList } from "../../nn/module.js";
import { runLayers } from "../../nn/recompute.js";
import type { DType } from "../../torch/dtype.js";
import type { Tensor } from "../../torch/tensor.js";
import { FcMLP, softmaxFreeing } from "../llm/base.js";

class VisionAttention extends Module {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly out: Linear;
  constructor(
    readonly hidden: number,
    readonly heads: number,
    dtype: DType,
  ) {
    super();
    this.q = this.registerModule("q_proj", new Linear(hidden, hidden, { dtype }));
    this.k = this.registerModule("k_proj", new Linear(hidden, hidden, { dtype }));
    this.v = this.registerModule("v_proj", new Linear(hidden, hidden, { dtype }));
    this.out = this.registerModule("out_proj", new Linear(hidden, hidden, { dtype }));
  }
  forward(x: Tensor): Tensor {
    const [B, L] = x.shape as [number, number];
    const H = this.heads;
    const D = this.hidden / H;
    const split = (t: Tensor) => t.view(B, L, H, D).transpose(1, 2);
    const q = split(this.q.forward(x));
    const k = split(this.k.forward(x));
    const v = split(this.v.forward(x));
    // the scores ([B, H, L, L], the biggest activations) are scaled in place and freed once the softmax has them
    const probs = softmaxFreeing(lowp.matmul(q, k.transpose(-2, -1)).mul_(1 / Math.sqrt(D)), q.dtype);
    const attn = lowp.matmul(probs, v);
    probs.dispose();
    return this.out.forward(attn.transpose(1, 2).reshape(B, L, this.hidden));
  }
}

class EncoderLayer extends Module {
  readonly ln1: LayerNorm;
  readonly attn: VisionAttention;
  readonly ln2: LayerNorm;
  readonly mlp: FcMLP;
  constructor(cfg: VisionConfig, dtype: DType) {
    super();
    this.ln1 = this.registerModule("layer_norm1", new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, { dtype }));
    this.attn = this.registerModule("self_attn", new VisionAttention(cfg.hidden_size, cfg.num_attention_heads, dtype));
    this.ln2 = this.registerModule("layer_norm2", new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, { dtype }));
    this.mlp = this.registerModule(
      "mlp",
      new FcMLP(
        cfg.hidden_size,
        cfg.intermediate_size,
        getActivation(cfg.hidden_act, "vision_config.hidden_act"),
        dtype,
      ),
    );
  }
  forward(x: Tensor): Tensor {
    const h = x.add(this.attn.forward(this.ln1.forward(x)));
    return h.add(this.mlp.forward(this.ln2.forward(h)));
  }
}

export class VisionEncoder extends Module {
  readonly layers: ModuleList<EncoderLayer>;
  constructor(cfg: VisionConfig, dtype: DType) {
    super();
    this.layers = this.registerModule(
      "layers",
      new ModuleList(Array.from({ length: cfg.num_hidden_layers }, () => new EncoderLayer(cfg, dtype))),
    );
  }
  /** Runs the first `n` layers. */
  forward(x: Tensor, n = this.layers.length): Tensor {
    return runLayers(n, x, (i, h) => this.layers.at(i).forward(h));
  }
}

/** hidden_states index for a (possibly negative) vision_feature_layer, as HF indexes hidden_states (0 = embeddings). */
export function hiddenStateIndex(featureLayer: number, numLayers: number): number {
  const idx = featureLayer < 0 ? numLayers + 1 + featureLayer : featureLayer;
  if (idx < 0 || idx > numLayers) {
    throw new RangeError(`vision_feature_layer ${featureLayer} is outside the tower's ${numLayers} layers`);
  }
  return idx;
}

/** A vision tower: pixel values [B, 3, H, W] → hidden_states[k] [B, tokens, hidden]. */
export interface VisionTower extends Module {
  readonly config: VisionConfig;
  /** hidden_states[k] (k = 0 embeddings … numLayers) */
  hiddenState(pixelValues: Tensor, k: number): Tensor;
  /** last_hidden_state after the final LayerNorm */
  lastHiddenState(pixelValues: Tensor): Tensor;
}
