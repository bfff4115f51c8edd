// Qwen3 (model_type "qwen3"): Llama plus RMSNorm on each head of q and k (over head_dim) before RoPE; explicit
// head_dim; attention_bias from the config.
import type { TextConfig } from "../config.js";
import {
  Attention,
  activation,
  attentionOptions,
  type BuildContext,
  CausalLM,
  DecoderBody,
  GatedMLP,
  PreNormLayer,
  rmsNorm,
  ropeFor,
} from "./base.js";

export function buildQwen3(cfg: TextConfig, ctx: BuildContext): CausalLM {
  const rope = ropeFor(cfg);
  const norm = rmsNorm(cfg.rms_norm_eps, ctx.dtype);
  const layers = Array.from(
    { length: cfg.num_hidden_layers },
    () =>
      new PreNormLayer(
        norm,
        cfg.hidden_size,
        new Attention({
          ...attentionOptions(cfg, ctx.dtype, rope),
          qkNorm: { q: norm(cfg.head_dim), k: norm(cfg.head_dim) }, // the difference
        }),
        new GatedMLP(cfg.hidden_size, cfg.intermediate_size, activation(cfg), ctx.dtype),
      ),
  );
  return new CausalLM(cfg, ctx.dtype, new DecoderBody(cfg, ctx.dtype, layers, norm(cfg.hidden_size)), rope);
}
