// Training data, with TinyLLaVA Factory's semantics: LLaVA JSON datasets, label masking through the conversation
// templates, the collator, samplers and a resumable loader.
export * from "./collator.js";
export * from "./dataset.js";
export * from "./errors.js";
export * from "./lengths.js";
export * from "./llava-json.js";
export * from "./loader.js";
export * from "./sampler.js";
export * from "./special-tokens.js";
