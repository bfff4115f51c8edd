// The shapes of released TinyLLaVA checkpoints, as config.json objects (Factory's `tinyllava` format), for building
// models with random weights at real sizes (benchmarks, memory checks) without downloading anything.
import { type Json, parseTinyLlavaConfig, type TinyLlavaConfig } from "../config/index.js";

/** SigLIP-so400m-patch14-384 (google/siglip-so400m-patch14-384's vision_config). */
export const SIGLIP_SO400M_384: Json = {
  model_type: "siglip_vision_model",
  hidden_size: 1152,
  intermediate_size: 4304,
  num_hidden_layers: 27,
  num_attention_heads: 16,
  num_channels: 3,
  image_size: 384,
  patch_size: 14,
  hidden_act: "gelu_pytorch_tanh",
  layer_norm_eps: 1e-6,
};

/** Qwen/Qwen2-0.5B. */
export const QWEN2_0_5B: Json = {
  model_type: "qwen2",
  vocab_size: 151936,
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  max_position_embeddings: 32768,
  rope_theta: 1000000.0,
  rms_norm_eps: 1e-6,
  hidden_act: "silu",
  tie_word_embeddings: true,
  attention_bias: true,
  bos_token_id: 151643,
  eos_token_id: 151643,
};

/** microsoft/phi-2. */
export const PHI_2: Json = {
  model_type: "phi",
  vocab_size: 51200,
  hidden_size: 2560,
  intermediate_size: 10240,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  max_position_embeddings: 2048,
  rope_theta: 10000.0,
  partial_rotary_factor: 0.4,
  layer_norm_eps: 1e-5,
  hidden_act: "gelu_new",
  tie_word_embeddings: false,
  bos_token_id: 50256,
  eos_token_id: 50256,
};

function tinyllava(text: Json, vision: Json): Json {
  return {
    model_type: "tinyllava",
    connector_type: "mlp2x_gelu",
    text_config: text,
    vision_config: vision,
    vision_feature_layer: -2,
    vision_feature_select_strategy: "patch",
    image_aspect_ratio: "square",
    hidden_size: text.hidden_size,
    vision_hidden_size: vision.hidden_size,
    vocab_size: text.vocab_size,
    tokenizer_model_max_length: 3072,
  };
}

export const PRESETS: Record<string, { description: string; config: Json }> = {
  "qwen2-0.5b-siglip": {
    description: "TinyLLaVA-Qwen2-0.5B-SigLIP shapes: SigLIP-so400m/384 + Qwen2-0.5B, mlp2x_gelu (0.91B parameters)",
    config: tinyllava(QWEN2_0_5B, SIGLIP_SO400M_384),
  },
  "phi-2-siglip": {
    description: "TinyLLaVA-Phi-2-SigLIP-3.1B shapes: SigLIP-so400m/384 + Phi-2, mlp2x_gelu",
    config: tinyllava(PHI_2, SIGLIP_SO400M_384),
  },
};

export function presetConfig(name: string): TinyLlavaConfig {
  const p = PRESETS[name];
  if (!p) throw new RangeError(`unknown preset "${name}"; known: ${Object.keys(PRESETS).join(", ")}`);
  return parseTinyLlavaConfig(structuredClone(p.config), `preset ${name}`);
}
