// The demo's tiny TinyLLaVA, as TinyLLaVA Factory's config.json describes it: a SigLIP-like vision tower, a Qwen2-like
// LLM and the mlp2x_gelu connector, sized so that both training stages fit in a few minutes on two CPU cores (see
// DEMO_MODEL_SIZES for the measured cost), plus the SigLIP-style preprocessor_config.json and a writer for the model
// folder skeleton (config, processor, tokenizer) that training completes with model.safetensors.
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Json } from "../../config/index.js";
import { initFromScratch } from "../../models/init.js";
import type { TinyLlava } from "../../models/tinyllava.js";
import { type DemoTokenizerFiles, EOS_TOKEN } from "./tokenizer.js";

export interface DemoModelSizes {
  vision: {
    hidden_size: number;
    intermediate_size: number;
    /** hidden_states[-2] is what the connector reads, so the last layer is never run */
    num_hidden_layers: number;
    num_attention_heads: number;
    patch_size: number;
  };
  llm: {
    hidden_size: number;
    intermediate_size: number;
    num_hidden_layers: number;
    num_attention_heads: number;
    num_key_value_heads: number;
  };
}

/** 48 px pictures in 16 px patches (3 × 3 = one patch per grid cell, 8 tokens after the `patch` strategy); a
 * one-layer SigLIP encoder whose hidden_states[-2] (what the connector reads) is the patch + position embedding, so
 * the encoder layer never runs; a 4-layer 128-wide Qwen2 with 4 heads of 32 (as many KV heads).
 * Measured on the 2-core machine (2,000 pictures, 300 + 900 steps, held-out accuracy): with 2 encoder layers run
 * (3 configured) the tokens mix across cells and the LLM tells less well which object a question means: 69.3%; with
 * none, 74.4% in 25% less time. 8 heads instead of 4 cost the same (with 8 rounds per sample: 71.6%). Patch size 8
 * (35 tokens) gave no gain (65.1% vs 63.8%) at 1.4× the time. With 6,000 pictures and 400 + 1,500 steps: 8 heads of 16
 * with 4 KV heads and rope_theta 1e4 73.0%; rope_theta 1e6 (Qwen2's own) 75.4%; and 4 heads of 32, 77.6% — wider heads
 * keep more of each head's dimensions free of rotation at the distances between a question and the picture. */
export const DEMO_MODEL_SIZES: DemoModelSizes = {
  vision: { hidden_size: 96, intermediate_size: 384, num_hidden_layers: 1, num_attention_heads: 4, patch_size: 16 },
  llm: {
    hidden_size: 128,
    intermediate_size: 512,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 4,
  },
};

/** text_config.rope_theta: Qwen2-0.5B's 1e6 rather than Llama's 1e4 (see DEMO_MODEL_SIZES). */
export const DEMO_ROPE_THETA = 1e6;

/** The vision position embeddings start at N(0, (5/√width)²), five times transformers' SiglipPreTrainedModel init: at
 * 1/√width the patch content drowned them (a linear probe read an object's cell from its token 56% of the time) and
 * place questions stayed near chance; at 5/√width the probe reads it 97% of the time. */
export const DEMO_POSITION_EMBEDDING_SCALE = 5;

/** text_config.initializer_range. Qwen2's 0.02 is sized for widths near 1000 (0.02·√896 ≈ 0.6 per projection);
 * at width 128 it starts attention so close to uniform (q·k ≈ 0, a saddle) that in measured runs the model answered
 * from the question alone for 500+ steps, never reading the image. 0.06 keeps 0.06·√128 ≈ 0.7: the image is used
 * within ~150 steps. */
export const DEMO_INITIALIZER_RANGE = 0.06;

export interface DemoModelOptions {
  /** the tokenizer's vocabulary size (tokenizerVocabSize) */
  vocabSize: number;
  /** picture side in pixels (the data's imageSize) */
  imageSize: number;
  eosTokenId?: number;
  padTokenId?: number;
  /** tokenizer_model_max_length and the LLM's max_position_embeddings (default 256: the longest demo sample, four
   * question rounds with the image, is ~95 positions) */
  maxLength?: number;
  sizes?: { vision?: Partial<DemoModelSizes["vision"]>; llm?: Partial<DemoModelSizes["llm"]> };
  /** the std of the LLM's initial weights (text_config.initializer_range; default DEMO_INITIALIZER_RANGE) */
  initializerRange?: number;
  /** the Factory template the finetuned model answers with (default qwen2_base) */
  convVersion?: string;
}

/** The number of token ids a tokenizer.json defines (its vocabulary and added tokens; the largest id + 1). */
export function tokenizerVocabSize(tokenizerJson: Json): number {
  const model = tokenizerJson.model as { vocab?: Record<string, number> } | undefined;
  let max = -1;
  for (const id of Object.values(model?.vocab ?? {})) max = Math.max(max, id);
  for (const t of (tokenizerJson.added_tokens ?? []) as { id: number }[]) max = Math.max(max, t.id);
  return max + 1;
}

/** The model's config.json in TinyLLaVA Factory's format (model_type "tinyllava"). */
export function demoModelConfig(o: DemoModelOptions): Json {
  const v = { ...DEMO_MODEL_SIZES.vision, ...o.sizes?.vision };
  const t = { ...DEMO_MODEL_SIZES.llm, ...o.sizes?.llm };
  const maxLength = o.maxLength ?? 256;
  const eos = o.eosTokenId ?? 0;
  const pad = o.padTokenId ?? eos;
  if (!Number.isInteger(o.vocabSize) || o.vocabSize < 1) throw new RangeError(`demo model: vocabSize ${o.vocabSize}`);
  if (o.imageSize % v.patch_size !== 0)
    throw new RangeError(`demo model: imageSize ${o.imageSize} is not a multiple of patch_size ${v.patch_size}`);
  const text_config: Json = {
    model_type: "qwen2",
    vocab_size: o.vocabSize,
    hidden_size: t.hidden_size,
    intermediate_size: t.intermediate_size,
    num_hidden_layers: t.num_hidden_layers,
    num_attention_heads: t.num_attention_heads,
    num_key_value_heads: t.num_key_value_heads,
    hidden_act: "silu",
    max_position_embeddings: maxLength,
    rope_theta: DEMO_ROPE_THETA,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: true,
    attention_dropout: 0.0,
    initializer_range: o.initializerRange ?? DEMO_INITIALIZER_RANGE,
    use_sliding_window: false,
    sliding_window: null,
    use_cache: true,
    bos_token_id: null,
    eos_token_id: eos,
    pad_token_id: pad,
    torch_dtype: "float32",
  };
  const vision_config: Json = {
    model_type: "siglip_vision_model",
    hidden_size: v.hidden_size,
    intermediate_size: v.intermediate_size,
    num_hidden_layers: v.num_hidden_layers,
    num_attention_heads: v.num_attention_heads,
    num_channels: 3,
    image_size: o.imageSize,
    patch_size: v.patch_size,
    hidden_act: "gelu_pytorch_tanh",
    layer_norm_eps: 1e-6,
    attention_dropout: 0.0,
  };
  return {
    architectures: ["TinyLlavaForConditionalGeneration"],
    model_type: "tinyllava",
    llm_model_name_or_path: "tinyllava-demo/qwen2-tiny",
    vision_model_name_or_path: "tinyllava-demo/siglip-tiny",
    tokenizer_name_or_path: null,
    connector_type: "mlp2x_gelu",
    text_config,
    vision_config,
    hidden_size: t.hidden_size,
    vocab_size: o.vocabSize,
    vision_hidden_size: v.hidden_size,
    vision_feature_layer: -2,
    vision_feature_select_strategy: "patch",
    image_aspect_ratio: "square",
    ignore_index: -100,
    image_token_index: -200,
    pad_token: EOS_TOKEN,
    pad_token_id: pad,
    tokenizer_padding_side: "right",
    tokenizer_model_max_length: maxLength,
    tokenizer_use_fast: true,
    conv_version: o.convVersion ?? "qwen2_base",
    tie_word_embeddings: true,
    use_cache: true,
    torch_dtype: "float32",
  };
}

/** preprocessor_config.json as SigLIP's: bicubic resize to the picture size (a no-op for the demo's own pictures),
 * rescale by 1/255, normalise with mean = std = 0.5. */
export function demoPreprocessorConfig(imageSize: number): Json {
  return {
    do_convert_rgb: true,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.5, 0.5, 0.5],
    image_processor_type: "SiglipImageProcessor",
    image_std: [0.5, 0.5, 0.5],
    processor_class: "SiglipProcessor",
    resample: 3,
    rescale_factor: 1 / 255,
    size: { height: imageSize, width: imageSize },
  };
}

/** Writes config.json, preprocessor_config.json and the tokenizer files into `dir`, each atomically. The folder is
 * what training takes as its tokenizer and processor folder; saving the trained weights (model.safetensors) into it
 * makes it a model folder that loadTinyLlava, `tinyllava generate` and `tinyllava chat` load. */
export function writeDemoModelFolder(
  dir: string,
  parts: { config: Json; preprocessor: Json; tokenizer: DemoTokenizerFiles },
): void {
  mkdirSync(dir, { recursive: true });
  const files: [string, Json][] = [
    ["config.json", parts.config],
    ["preprocessor_config.json", parts.preprocessor],
    ...(Object.entries(parts.tokenizer) as [string, Json][]),
  ];
  for (const [name, json] of files) {
    const path = join(dir, name);
    const tmp = `${path}.tmp-${process.pid}`;
    try {
      writeFileSync(tmp, `${JSON.stringify(json, null, 1)}\n`);
      renameSync(tmp, path);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
  }
}

/** The demo's init: initFromScratch with the position embeddings at DEMO_POSITION_EMBEDDING_SCALE. */
export function initDemoWeights(
  model: TinyLlava,
  opts: { seed?: number; initializerRange?: number; onInit?: (name: string) => void } = {},
): number {
  return initFromScratch(model, { ...opts, positionEmbeddingScale: DEMO_POSITION_EMBEDDING_SCALE });
}
