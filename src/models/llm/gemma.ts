// Gemma (model_type "gemma"): Llama with (1) input embeddings × √hidden — applied to the whole input embedding
// sequence, image features included, (2) RMSNorm scaling by (1 + weight), (3) GELU-tanh gated MLP
// (hidden_activation), (4) tied embeddings by default.
import type { TextConfig } from "../config.js";
import type { BuildContext, CausalLM } from "./base.js";
import { buildLlama } from "./llama.js";

export function buildGemma(cfg: TextConfig, ctx: BuildContext): CausalLM {
  // (3) comes from the config's hidden_activation; (4) from tie_word_embeddings
  const lm = buildLlama(cfg, ctx, { unitOffsetNorm: true }); // (2)
  // (1) transformers multiplies by sqrt(hidden) rounded to the model's dtype
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
