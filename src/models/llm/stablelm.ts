// StableLM-2 (model_type "stablelm"): Llama with (1) LayerNorm (with bias) instead of RMSNorm, (2) partial rotary
// (partial_rotary_factor, 0.25 for StableLM-2), (3) q/k/v biases when use_qkv_bias, (4) optional per-head q/k
// LayerNorm (qk_layernorm), (5) optional parallel residual (use_parallel_residual: one norm, x + attn + mlp).

import type { TextConfig } from "../../config/index.js";
import { LayerNorm } from "../../nn/layers.js";
import { Module, ModuleList } from "../../nn/module.js";
import { cat } from "../../torch/creation.js";
import type { DType } from "../../torch/dtype.js";
import type { Tensor } from "../../torch/tensor.js";
import {
  Attention,
  activation,
  attentionOptions,
  type BuildContext,
  CausalLM,
  DecoderBody,
  GatedMLP,
  layerNorm,
  ParallelLayer,
  PreNormLayer,
  ropeFor,
} from "./base.js";

/** One LayerNorm per head over head_dim (HF StableLmLayerNormPerHead: `norms.{h}`), input [B, L, H, D]. */
class LayerNormPerHead extends Module {
  readonly norms: ModuleList<LayerNorm>;
  constructor(heads: number, dim: number, eps: number, dtype: DType) {
    super();
    this.norms = this.registerModule(
      "norms",
      new ModuleList(Array.from({ length: heads }, () => new LayerNorm(dim, eps, { dtype, bias: false }))),
    );
  }
  forward(x: Tensor): Tensor {
    const heads = x.split(1, 2);
    return cat(
      heads.map((h, i) => this.norms.at(i).forward(h)),
      2,
    );
  }
}

export function buildStableLm(cfg: TextConfig, ctx: BuildContext): CausalLM {
  const rope = ropeFor(cfg); // (2)
  const norm = layerNorm(cfg.layer_norm_eps, ctx.dtype); // (1)
  const qkvBias = cfg.fields.bool("use_qkv_bias", false); // (3)
  const qkLn = cfg.fields.bool("qk_layernorm", false); // (4)
  const parallel = cfg.fields.bool("use_parallel_residual", false); // (5)
  const dtype = ctx.dtype;
  const layers = Array.from({ length: cfg.num_hidden_layers }, () => {
    const attn = new Attention(
      {
        ...attentionOptions(cfg, ctx.dtype, rope),
        qkvBias,
        outBias: false,
        qkNorm: qkLn
          ? {
              q: new LayerNormPerHead(cfg.num_attention_heads, cfg.head_dim, cfg.layer_norm_eps, dtype),
              k: new LayerNormPerHead(cfg.num_key_value_heads, cfg.head_dim, cfg.layer_norm_eps, dtype),
            }
          : null,
      },
      { qNorm: "q_layernorm", kNorm: "k_layernorm" },
    );
    const mlp = new GatedMLP(cfg.hidden_size, cfg.intermediate_size, activation(cfg), ctx.dtype);
    return parallel
      ? new ParallelLayer(norm, cfg.hidden_size, attn, mlp)
      : new PreNormLayer(norm, cfg.hidden_size, attn, mlp);
  });
  return new CausalLM(cfg, ctx.dtype, new DecoderBody(cfg, ctx.dtype, layers, norm(cfg.hidden_size)), rope);
}
