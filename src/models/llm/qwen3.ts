// Qwen3 (model_type "qwen3"): Llama plus RMSNorm on each head of q and k (over head_dim) before RoPE; explicit
// head_dim; attention_bias from the config.
import type { TextConfig } from "../../config/index.js";
import type { BuildContext, CausalLM } from "./base.js";
import { buildLlama } from "./llama.js";

export function buildQwen3(cfg: TextConfig, ctx: BuildContext): CausalLM {
  return buildLlama(cfg, ctx, { qkNorm: true });
}
