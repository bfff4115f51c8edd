// Gemma (model_type "gemma"): Llama with (1) input embeddings × √hidden — applied to the whole input embedding
// sequence, image features included, (2) RMSNorm scaling by (1 + weight), (3) GELU-tanh gated MLP
// (hidden_activation), (4) tied embeddings by default.
import type { TextConfig } from "../../config/index.js";
import { tensor } from "../../torch/creation.js";
import type { DType } from "../../torch/dtype.js";
import { tidy } from "../../torch/memory.js";
import type { BuildContext, CausalLM } from "./base.js";
import { buildLlama } from "./llama.js";

export function buildGemma(cfg: TextConfig, ctx: BuildContext): CausalLM {
  // (3) comes from the config's hidden_activation; (4) from tie_word_embeddings
  const lm = buildLlama(cfg, ctx, { unitOffsetNorm: true }); // (2)
  // (1) transformers keeps the normalizer as a float32 buffer (torch.tensor(hidden_size ** 0.5)) and casts it to the
  // model's dtype: float32-rounded first, even in a float64 model (√96 differs from its float64 root)
  lm.embedScale = roundTo(Math.sqrt(cfg.hidden_size), ctx.dtype);
  return lm;
}

/** A float32 value cast to `dtype` by libtorch (as `normalizer.to(dtype)`). */
export function roundTo(v: number, dtype: DType): number {
  return tidy(() => tensor([v], { dtype: "float32" }).to(dtype).to("float64").item());
}
