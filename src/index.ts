// tinyllava's public API.

export * from "./config/index.js";
export * from "./errors.js";
export { greedyGenerate } from "./generation/greedy.js";
export { canonicalKey, detectLayout, factoryKey } from "./models/checkpoint.js";
export { buildConnector } from "./models/connectors/index.js";
export { loadTinyLlava, tinyLlavaFromParts } from "./models/load.js";
export { buildLanguageModel, buildVisionTower, LLM_FAMILIES, VISION_TOWERS } from "./models/registry.js";
export { causalLmLoss, IGNORE_INDEX, TinyLlava } from "./models/tinyllava.js";
export * as nn from "./nn/index.js";
export { VisionLanguagePipeline } from "./pipeline/index.js";
export { decodeImage, ImageProcessor } from "./processing/image.js";
export * from "./processing/templates.js";
export { TinyTokenizer } from "./processing/tokenizer.js";
export * as torch from "./torch/index.js";
export { VERSION } from "./version.js";
