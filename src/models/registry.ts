// Model families by Hugging Face `model_type` (exact names). Adding a family = one file in llm/ + one line here.

import type { TextConfig, VisionConfig } from "../config/index.js";
import { ConfigError } from "../errors.js";
import type { DType } from "../torch/dtype.js";
import type { BuildContext, CausalLM } from "./llm/base.js";
import { buildGemma } from "./llm/gemma.js";
import { buildLlama } from "./llm/llama.js";
import { buildPhi } from "./llm/phi.js";
import { buildQwen2 } from "./llm/qwen2.js";
import { buildQwen3 } from "./llm/qwen3.js";
import { buildStableLm } from "./llm/stablelm.js";
import { ClipVisionTower } from "./vision/clip.js";
import type { VisionTower } from "./vision/encoder.js";
import { SiglipVisionTower } from "./vision/siglip.js";

export const LLM_FAMILIES: Record<string, (cfg: TextConfig, ctx: BuildContext) => CausalLM> = {
  llama: buildLlama,
  qwen2: buildQwen2,
  qwen3: buildQwen3,
  phi: buildPhi,
  gemma: buildGemma,
  stablelm: buildStableLm,
};

export const VISION_TOWERS: Record<string, (cfg: VisionConfig, dtype: DType) => VisionTower> = {
  siglip_vision_model: (cfg, dtype) => new SiglipVisionTower(cfg, dtype),
  clip_vision_model: (cfg, dtype) => new ClipVisionTower(cfg, dtype),
};

export function buildLanguageModel(cfg: TextConfig, ctx: BuildContext): CausalLM {
  const build = LLM_FAMILIES[cfg.model_type];
  if (!build) {
    throw new ConfigError(
      `unknown LLM model_type "${cfg.model_type}"; supported: ${Object.keys(LLM_FAMILIES).join(", ")}`,
    );
  }
  return build(cfg, ctx);
}

export function buildVisionTower(cfg: VisionConfig, dtype: DType): VisionTower {
  const build = VISION_TOWERS[cfg.model_type];
  if (!build)
    throw new ConfigError(
      `unknown vision model_type "${cfg.model_type}"; supported: ${Object.keys(VISION_TOWERS).join(", ")}`,
    );
  return build(cfg, dtype);
}
