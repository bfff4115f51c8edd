// Gemma (model_type "gemma"): Llama with (1) input embeddings × √hidden — applied to the whole input embedding
// sequence, image features included, (2) RMSNorm scaling by (1 + weight), (3) GELU-tanh gated MLP
// (hidden_activation), (4) tied embeddings by default.
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

export function buildGemma(cfg: TextConfig, ctx: BuildContext): CausalLM {
  const rope = ropeFor(cfg);
  const norm = rmsNorm(cfg.rms_norm_eps, ctx.dtype, true); // (2)
  const layers = Array.from(
    { length: cfg.num_hidden_layers },
    () =>
      new PreNormLayer(
        norm,
        cfg.hidden_size,
        new Attention(attentionOptions(cfg, ctx.dtype, rope)),
        new GatedMLP(cfg.hidden_size, cfg.intermediate_size, activation(cfg), ctx.dtype), // (3)
      ),
  );
  const lm = new CausalLM(cfg, ctx.dtype, new DecoderBody(cfg, ctx.dtype, layers, norm(cfg.hidden_size)), rope);
  // (1) HF multiplies by sqrt(hidden) rounded to the model's dtype
  lm.embedScale = roundTo(Math.sqrt(cfg.hidden_size), ctx.dtype);
  return lm;
}

function roundTo(v: number, dtype: string): number {
  if (dtype === "float32") return Math.fround(v);
  if (dtype === "bfloat16") {
    const b = new Float32Array([v]);
    const u = new Uint32Array(b.buffer);
    u[0] = ((u[0] as number) + 0x7fff + (((u[0] as number) >> 16) & 1)) & 0xffff0000;
    return b[0] as number;
  }
  return v;
}
