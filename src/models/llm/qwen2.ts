// Qwen2 / Qwen2.5 (model_type "qwen2"): Llama with biases on q/k/v (none on o_proj).
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

export function buildQwen2(cfg: TextConfig, ctx: BuildContext): CausalLM {
  const rope = ropeFor(cfg);
  const norm = rmsNorm(cfg.rms_norm_eps, ctx.dtype);
  const layers = Array.from(
    { length: cfg.num_hidden_layers },
    () =>
      new PreNormLayer(
        norm,
        cfg.hidden_size,
        new Attention({ ...attentionOptions(cfg, ctx.dtype, rope), qkvBias: true, outBias: false }), // difference 1
        new GatedMLP(cfg.hidden_size, cfg.intermediate_size, activation(cfg), ctx.dtype),
      ),
  );
  return new CausalLM(cfg, ctx.dtype, new DecoderBody(cfg, ctx.dtype, layers, norm(cfg.hidden_size)), rope);
}
