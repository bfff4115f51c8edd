// Phi-1/Phi-2 (model_type "phi"): differs from Llama in (1) LayerNorm with bias, one per layer, (2) a parallel
// block: x + attn(norm(x)) + mlp(norm(x)), (3) partial rotary (partial_rotary_factor of head_dim), (4) biases on
// q/k/v and on the output projection named `dense`, (5) fc1/fc2 MLP with gelu_new, (6) `final_layernorm`, (7) an
// lm_head bias when the checkpoint has one; optional per-head q/k LayerNorm (qk_layernorm).

import type { TextConfig } from "../../config/index.js";
import { LayerNorm } from "../../nn/layers.js";
import {
  Attention,
  activation,
  attentionOptions,
  type BuildContext,
  CausalLM,
  DecoderBody,
  FcMLP,
  layerNorm,
  ParallelLayer,
  ropeFor,
} from "./base.js";

export function buildPhi(cfg: TextConfig, ctx: BuildContext): CausalLM {
  const rope = ropeFor(cfg); // (3)
  const norm = layerNorm(cfg.layer_norm_eps, ctx.dtype); // (1)
  const qkLn = cfg.fields.bool("qk_layernorm", false);
  const layers = Array.from({ length: cfg.num_hidden_layers }, () => {
    const attn = new Attention(
      {
        ...attentionOptions(cfg, ctx.dtype, rope),
        qkvBias: true,
        outBias: true,
        outName: "dense", // (4)
        qkNorm: qkLn
          ? {
              q: new LayerNorm(cfg.head_dim, cfg.layer_norm_eps, { dtype: ctx.dtype }),
              k: new LayerNorm(cfg.head_dim, cfg.layer_norm_eps, { dtype: ctx.dtype }),
            }
          : null,
      },
      { qNorm: "q_layernorm", kNorm: "k_layernorm" },
    );
    return new ParallelLayer(
      norm,
      cfg.hidden_size,
      attn,
      new FcMLP(cfg.hidden_size, cfg.intermediate_size, activation(cfg), ctx.dtype),
    ); // (2), (5)
  });
  const body = new DecoderBody(cfg, ctx.dtype, layers, norm(cfg.hidden_size), "final_layernorm"); // (6)
  const lmHeadBias = ctx.keys ? ctx.keys.has("lm_head.bias") : true; // (7)
  return new CausalLM(cfg, ctx.dtype, body, rope, { lmHeadBias });
}
