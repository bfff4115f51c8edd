// Llama / TinyLlama (model_type "llama"): RMSNorm pre-norm layers, rotary attention with GQA, SiLU-gated MLP.
// The reference shape: Qwen2, Qwen3 and Gemma are this builder with the few options where they differ.
import type { TextConfig } from "../../config/index.js";
import {
  Attention,
  type AttentionOptions,
  activation,
  attentionOptions,
  type BuildContext,
  CausalLM,
  DecoderBody,
  GatedMLP,
  type NormFactory,
  PreNormLayer,
  rmsNorm,
  ropeFor,
} from "./base.js";

export interface LlamaVariant {
  /** attention options that differ (e.g. biases) */
  attention?: Partial<AttentionOptions>;
  /** RMSNorm over head_dim on q and k before RoPE (Qwen3) */
  qkNorm?: boolean;
  /** RMSNorm scaling by (1 + weight) (Gemma) */
  unitOffsetNorm?: boolean;
}

export function buildLlama(cfg: TextConfig, ctx: BuildContext, variant: LlamaVariant = {}): CausalLM {
  const rope = ropeFor(cfg);
  const norm: NormFactory = rmsNorm(cfg.rms_norm_eps, ctx.dtype, variant.unitOffsetNorm ?? false);
  const mlpBias = cfg.fields.bool("mlp_bias", false);
  const layers = Array.from(
    { length: cfg.num_hidden_layers },
    () =>
      new PreNormLayer(
        norm,
        cfg.hidden_size,
        new Attention({
          ...attentionOptions(cfg, ctx.dtype, rope),
          ...variant.attention,
          qkNorm: variant.qkNorm ? { q: norm(cfg.head_dim), k: norm(cfg.head_dim) } : null,
        }),
        new GatedMLP(cfg.hidden_size, cfg.intermediate_size, activation(cfg), ctx.dtype, mlpBias),
      ),
  );
  return new CausalLM(cfg, ctx.dtype, new DecoderBody(cfg, ctx.dtype, layers, norm(cfg.hidden_size)), rope);
}
