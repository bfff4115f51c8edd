// Llama / TinyLlama (model_type "llama"): RMSNorm pre-norm layers, rotary attention with GQA, SiLU-gated MLP.
// The reference shape every other family is described against.
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

export function buildLlama(cfg: TextConfig, ctx: BuildContext): CausalLM {
  const rope = ropeFor(cfg);
  const norm = rmsNorm(cfg.rms_norm_eps, ctx.dtype);
  const mlpBias = cfg.fields.bool("mlp_bias", false);
  const layers = Array.from(
    { length: cfg.num_hidden_layers },
    () =>
      new PreNormLayer(
        norm,
        cfg.hidden_size,
        new Attention(attentionOptions(cfg, ctx.dtype, rope)),
        new GatedMLP(cfg.hidden_size, cfg.intermediate_size, activation(cfg), ctx.dtype, mlpBias),
      ),
  );
  return new CausalLM(cfg, ctx.dtype, new DecoderBody(cfg, ctx.dtype, layers, norm(cfg.hidden_size)), rope);
}
