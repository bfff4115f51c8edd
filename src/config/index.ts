// Typed views of Hugging Face / TinyLLaVA Factory config.json files. Field names stay HF's snake_case; every read
// is validated with an error that names the file, the field and what was expected.
import { ConfigError } from "../errors.js";

export type Json = Record<string, unknown>;

/** Reads fields of one JSON object with validation; `where` prefixes every message (e.g. "config.json: text_config"). */
export class Fields {
  constructor(
    readonly obj: Json,
    readonly where: string,
  ) {
    if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
      throw new ConfigError(`${where}: expected a JSON object, got ${JSON.stringify(obj)}`);
    }
  }
  has(k: string): boolean {
    return this.obj[k] !== undefined && this.obj[k] !== null;
  }
  private fail(k: string, expected: string): never {
    throw new ConfigError(
      `${this.where}: field "${k}" ${this.has(k) ? `is ${JSON.stringify(this.obj[k])}` : "is missing"}; expected ${expected}`,
    );
  }
  int(k: string, dflt?: number, opts: { min?: number } = {}): number {
    const v = this.obj[k];
    if (v === undefined || v === null) {
      if (dflt !== undefined) return dflt;
      this.fail(k, "an integer");
    }
    if (typeof v !== "number" || !Number.isInteger(v) || (opts.min !== undefined && v < opts.min)) {
      this.fail(k, `an integer${opts.min !== undefined ? ` ≥ ${opts.min}` : ""}`);
    }
    return v as number;
  }
  num(k: string, dflt?: number): number {
    const v = this.obj[k];
    if (v === undefined || v === null) {
      if (dflt !== undefined) return dflt;
      this.fail(k, "a number");
    }
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(k, "a number");
    return v as number;
  }
  str(k: string, dflt?: string): string {
    const v = this.obj[k];
    if (v === undefined || v === null) {
      if (dflt !== undefined) return dflt;
      this.fail(k, "a string");
    }
    if (typeof v !== "string") this.fail(k, "a string");
    return v as string;
  }
  bool(k: string, dflt?: boolean): boolean {
    const v = this.obj[k];
    if (v === undefined || v === null) {
      if (dflt !== undefined) return dflt;
      this.fail(k, "true or false");
    }
    if (typeof v !== "boolean") this.fail(k, "true or false");
    return v as boolean;
  }
  oneOf<T extends string>(k: string, allowed: readonly T[], dflt?: T): T {
    const v = this.str(k, dflt);
    if (!allowed.includes(v as T)) this.fail(k, `one of ${allowed.map((a) => `"${a}"`).join(", ")}`);
    return v as T;
  }
  obj_(k: string): Fields {
    const v = this.obj[k];
    if (v === null || typeof v !== "object" || Array.isArray(v)) this.fail(k, "an object");
    return new Fields(v as Json, `${this.where}.${k}`);
  }
  optObj(k: string): Fields | null {
    return this.has(k) ? this.obj_(k) : null;
  }
}

export interface RopeScaling {
  rope_type: string;
  factor?: number;
  original_max_position_embeddings?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
}

/** What every decoder family needs; families read extra fields themselves. */
export interface TextConfig {
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  max_position_embeddings: number;
  rope_theta: number;
  partial_rotary_factor: number;
  rope_scaling: RopeScaling | null;
  hidden_act: string;
  rms_norm_eps: number;
  layer_norm_eps: number;
  tie_word_embeddings: boolean;
  attention_bias: boolean;
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
  pad_token_id: number | null;
  fields: Fields;
}

function optId(f: Fields, k: string): number | null {
  const v = f.obj[k];
  if (v === undefined || v === null) return null;
  if (typeof v !== "number" || !Number.isInteger(v))
    throw new ConfigError(`${f.where}: field "${k}" is ${JSON.stringify(v)}; expected a token id`);
  return v;
}

export function parseTextConfig(f: Fields, tieDefault = false): TextConfig {
  const model_type = f.str("model_type");
  const hidden_size = f.int("hidden_size", undefined, { min: 1 });
  const num_attention_heads = f.int("num_attention_heads", undefined, { min: 1 });
  const num_key_value_heads = f.int("num_key_value_heads", num_attention_heads, { min: 1 });
  if (num_attention_heads % num_key_value_heads !== 0) {
    throw new ConfigError(
      `${f.where}: num_attention_heads (${num_attention_heads}) must be a multiple of num_key_value_heads (${num_key_value_heads})`,
    );
  }
  const head_dim = f.int("head_dim", Math.floor(hidden_size / num_attention_heads), { min: 1 });
  // transformers 5 groups rope settings under rope_parameters; older configs have them at top level.
  const rp = f.optObj("rope_parameters");
  const rope_theta =
    rp?.num("rope_theta", f.num("rope_theta", 10000)) ?? f.num("rope_theta", model_type === "phi" ? 10000 : 10000);
  const partial_rotary_factor =
    rp?.num("partial_rotary_factor", f.num("partial_rotary_factor", 1)) ?? f.num("partial_rotary_factor", 1);
  let rope_scaling: RopeScaling | null = null;
  const rs = f.optObj("rope_scaling");
  const ropeType = rp?.str("rope_type", "default") ?? rs?.str("rope_type", rs.str("type", "default")) ?? "default";
  if (ropeType !== "default") {
    const src = rp ?? rs;
    rope_scaling = {
      rope_type: ropeType,
      factor: src?.num("factor", 1),
      original_max_position_embeddings: src?.has("original_max_position_embeddings")
        ? src.int("original_max_position_embeddings")
        : undefined,
      low_freq_factor: src?.has("low_freq_factor") ? src.num("low_freq_factor") : undefined,
      high_freq_factor: src?.has("high_freq_factor") ? src.num("high_freq_factor") : undefined,
    };
  }
  const eosRaw = f.obj.eos_token_id;
  const eos_token_id = Array.isArray(eosRaw) ? (eosRaw as number[]) : optId(f, "eos_token_id");
  return {
    model_type,
    vocab_size: f.int("vocab_size", undefined, { min: 1 }),
    hidden_size,
    intermediate_size: f.int("intermediate_size", 4 * hidden_size, { min: 1 }),
    num_hidden_layers: f.int("num_hidden_layers", undefined, { min: 1 }),
    num_attention_heads,
    num_key_value_heads,
    head_dim,
    max_position_embeddings: f.int("max_position_embeddings", 2048),
    rope_theta,
    partial_rotary_factor,
    rope_scaling,
    hidden_act: f.str("hidden_activation", f.str("hidden_act", "silu")),
    rms_norm_eps: f.num("rms_norm_eps", 1e-6),
    layer_norm_eps: f.num("layer_norm_eps", 1e-5),
    tie_word_embeddings: f.bool("tie_word_embeddings", tieDefault),
    attention_bias: f.bool("attention_bias", false),
    bos_token_id: optId(f, "bos_token_id"),
    eos_token_id,
    pad_token_id: optId(f, "pad_token_id"),
    fields: f,
  };
}

/** Patches per image side: HF's `image_size // patch_size` (the conv's stride drops a partial patch). */
export function patchesPerSide(cfg: Pick<VisionConfig, "image_size" | "patch_size">): number {
  return Math.floor(cfg.image_size / cfg.patch_size);
}

export interface VisionConfig {
  model_type: "siglip_vision_model" | "clip_vision_model";
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_channels: number;
  image_size: number;
  patch_size: number;
  hidden_act: string;
  layer_norm_eps: number;
  /** SigLIP's attention-pooling head is in the checkpoint (HF's vision_use_head, default true) */
  vision_use_head: boolean;
}

export const VISION_TYPES = ["siglip_vision_model", "clip_vision_model"] as const;

export function parseVisionConfig(f: Fields): VisionConfig {
  let mt = f.str("model_type");
  // a full SigLIP/CLIP config (text + vision) names the pair; the vision part is what we need
  if (mt === "siglip" || mt === "clip") mt = `${mt}_vision_model`;
  if (!(VISION_TYPES as readonly string[]).includes(mt)) {
    throw new ConfigError(`${f.where}: unknown vision model_type "${mt}"; supported: ${VISION_TYPES.join(", ")}`);
  }
  const isClip = mt === "clip_vision_model";
  const hidden = f.int("hidden_size", undefined, { min: 1 });
  const heads = f.int("num_attention_heads", undefined, { min: 1 });
  if (hidden % heads !== 0)
    throw new ConfigError(`${f.where}: hidden_size ${hidden} is not divisible by num_attention_heads ${heads}`);
  const image_size = f.int("image_size", undefined, { min: 1 });
  const patch_size = f.int("patch_size", undefined, { min: 1 });
  // the patch conv (stride = patch size) drops a partial last row/column, as HF: SigLIP-so400m/384 with patch 14
  // gives 27 × 27 = 729 patches
  if (patch_size > image_size)
    throw new ConfigError(`${f.where}: patch_size ${patch_size} is larger than image_size ${image_size}`);
  return {
    model_type: mt as VisionConfig["model_type"],
    hidden_size: hidden,
    intermediate_size: f.int("intermediate_size", 4 * hidden),
    num_hidden_layers: f.int("num_hidden_layers", undefined, { min: 1 }),
    num_attention_heads: heads,
    num_channels: f.int("num_channels", 3),
    image_size,
    patch_size,
    hidden_act: f.str("hidden_act", isClip ? "quick_gelu" : "gelu_pytorch_tanh"),
    layer_norm_eps: f.num("layer_norm_eps", isClip ? 1e-5 : 1e-6),
    vision_use_head: !isClip && f.bool("vision_use_head", true),
  };
}

export type SelectStrategy = "patch" | "default" | "full" | "cls_patch";
export type AspectRatio = "square" | "pad";

/** A TinyLLaVA model: the union of what llava (HF) and tinyllava (Factory) configs say. */
export interface TinyLlavaConfig {
  source_format: "llava" | "tinyllava";
  text: TextConfig;
  vision: VisionConfig;
  connector_type: string;
  /** LLaVA's image token id in input_ids (HF); Factory uses the −200 placeholder */
  image_token_index: number;
  vision_feature_layer: number;
  vision_feature_select_strategy: SelectStrategy;
  image_aspect_ratio: AspectRatio;
  num_queries: number;
  num_resampler_layers: number;
  pad_token_id: number | null;
  tokenizer_model_max_length: number | null;
  conv_version: string | null;
  raw: Json;
}

export const IMAGE_PLACEHOLDER = -200;
const STRATEGIES: readonly SelectStrategy[] = ["patch", "default", "full", "cls_patch"];

export function parseTinyLlavaConfig(raw: Json, where = "config.json"): TinyLlavaConfig {
  const f = new Fields(raw, where);
  const mt = f.str("model_type");
  if (mt !== "llava" && mt !== "tinyllava") {
    throw new ConfigError(`${where}: model_type "${mt}" is not a TinyLLaVA model; expected "llava" or "tinyllava"`);
  }
  const text = parseTextConfig(f.obj_("text_config"), f.bool("tie_word_embeddings", false));
  const vision = parseVisionConfig(f.obj_("vision_config"));
  let connector_type = "mlp2x_gelu";
  if (mt === "tinyllava") connector_type = f.str("connector_type");
  else {
    const act = f.str("projector_hidden_act", "gelu");
    if (act !== "gelu")
      throw new ConfigError(
        `${where}: projector_hidden_act "${act}" is not supported (llava's projector is Linear-GELU-Linear)`,
      );
  }
  return {
    source_format: mt,
    text,
    vision,
    connector_type,
    image_token_index: f.int("image_token_index", mt === "tinyllava" ? IMAGE_PLACEHOLDER : 32000),
    vision_feature_layer: f.int("vision_feature_layer", -2),
    vision_feature_select_strategy: f.oneOf("vision_feature_select_strategy", STRATEGIES, "patch"),
    image_aspect_ratio: f.oneOf("image_aspect_ratio", ["square", "pad"] as const, "square"),
    num_queries: f.int("num_queries", 128),
    num_resampler_layers: f.int("num_resampler_layers", 3),
    pad_token_id: f.has("pad_token_id") ? f.int("pad_token_id") : text.pad_token_id,
    tokenizer_model_max_length: f.has("tokenizer_model_max_length") ? f.int("tokenizer_model_max_length") : null,
    conv_version: f.has("conv_version") ? f.str("conv_version") : null,
    raw,
  };
}
