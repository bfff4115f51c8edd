// Qwen2 / Qwen2.5 (model_type "qwen2"): Llama with biases on q/k/v (none on o_proj).
import type { TextConfig } from "../../config/index.js";
import type { BuildContext, CausalLM } from "./base.js";
import { buildLlama } from "./llama.js";

export function buildQwen2(cfg: TextConfig, ctx: BuildContext): CausalLM {
  return buildLlama(cfg, ctx, { attention: { qkvBias: true, outBias: false } });
}
