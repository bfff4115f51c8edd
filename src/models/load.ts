// Loading TinyLLaVA models from folders: a full checkpoint (config.json of model_type llava or tinyllava, any of the
// four key layouts, one file or shards), Factory's stage-1 component folders (language_model/, vision_tower/,
// connector/), or parts as Factory's training builds them (an HF LLM folder + an HF vision folder + a connector type).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  Fields,
  type Json,
  parseTextConfig,
  parseTinyLlavaConfig,
  parseVisionConfig,
  type TinyLlavaConfig,
} from "../config/index.js";
import { CheckpointError, ConfigError } from "../errors.js";
import { withoutInit } from "../nn/layers.js";
import { mergeLora } from "../nn/lora.js";
import { checkKeys, checkShape } from "../nn/module.js";
import { IncrementalInt8, quantizeInt8 } from "../nn/quant.js";
import { noGrad } from "../torch/autograd.js";
import type { DType } from "../torch/dtype.js";
import { SafetensorsCheckpoint } from "../torch/safetensors.js";
import { canonicalKey } from "./checkpoint.js";
import { ADAPTER_CONFIG, loadAdapter, loadLoraComponents } from "./lora.js";
import { TinyLlava } from "./tinyllava.js";

export interface LoadProgress {
  /** bytes of weights read so far / in all the folder's files */
  loadedBytes: number;
  totalBytes: number;
  tensors: number;
}

export interface LoadOptions {
  /** compute dtype (float32 default; bfloat16, float16, float64) */
  dtype?: DType;
  /** called after each tensor is loaded */
  onProgress?: (p: LoadProgress) => void;
  /** weight-only int8 for the language model's Linear and Embedding layers, each quantised as soon as its weight is
   * loaded (peak memory: the int8 model plus about one float layer); the report is in `model.quantization` */
  quantize?: "int8" | null;
}

export function readJson(path: string): Json {
  if (!existsSync(path)) throw new ConfigError(`${path}: file not found`);
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Json;
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

function hasWeights(dir: string): boolean {
  return existsSync(join(dir, "model.safetensors")) || existsSync(join(dir, "model.safetensors.index.json"));
}

function weightsError(dir: string): CheckpointError {
  const bin = existsSync(join(dir, "pytorch_model.bin")) || existsSync(join(dir, "pytorch_model.bin.index.json"));
  return new CheckpointError(
    bin
      ? `${dir}: only PyTorch pickle weights (pytorch_model.bin) found; tinyllava reads safetensors — convert with safetensors' torch.save_file (pickles can run code, so they are not loaded)`
      : `${dir}: no model.safetensors or model.safetensors.index.json`,
  );
}

/** Opens the safetensors weights of a folder (one file or shards), runs `fn`, closes them. */
function withWeights<T>(dir: string, fn: (ck: SafetensorsCheckpoint) => T): T {
  if (!hasWeights(dir)) throw weightsError(dir);
  const ck = SafetensorsCheckpoint.open(dir);
  try {
    return fn(ck);
  } finally {
    ck.close();
  }
}

/** Loads a checkpoint's tensors (mapped to internal names by `rename`) into `model`, strictly. */
function loadInto(
  model: TinyLlava,
  ck: SafetensorsCheckpoint,
  dir: string,
  rename: (k: string) => string | null,
  dtype: DType,
  skipPrefixes: string[] = [],
  onProgress?: (p: LoadProgress) => void,
  onLoaded?: (name: string) => void,
): void {
  const own = model.stateDict();
  const seen = new Set<string>();
  const unexpected: string[] = [];
  const keys = ck.keys();
  const size = (k: string) => {
    const i = ck.info(k);
    return i ? i.end - i.start : 0;
  };
  const totalBytes = keys.reduce((a, k) => a + size(k), 0);
  let loadedBytes = 0;
  noGrad(() => {
    for (const [n, key] of keys.entries()) {
      const name = rename(key);
      loadedBytes += size(key);
      if (name !== null) {
        const target = own.get(name);
        if (!target) unexpected.push(key);
        else {
          checkShape(`${dir}: `, key, ck.info(key)!.shape, target.shape);
          const v = ck.get(key, dtype);
          target.copy_(v);
          v.dispose();
          seen.add(name);
          onLoaded?.(name);
        }
      }
      onProgress?.({ loadedBytes, totalBytes, tensors: n + 1 });
    }
  });
  const expected = [...own.keys()].filter((k) => !skipPrefixes.some((p) => k.startsWith(p)));
  // SigLIP's unused pooling head may be absent (then it stays zero, as a checkpoint without it)
  const missing = expected.filter(
    (k) => !seen.has(k) && !k.endsWith(".position_ids") && !k.startsWith("vision_tower.vision_model.head."),
  );
  checkKeys(`${dir}: `, "weights", missing, unexpected, 12);
}

/** The LLM folder's keys under their internal names (lets families detect optional tensors). */
function languageModelKeys(ck: SafetensorsCheckpoint): Set<string> {
  return new Set(ck.keys().map((k) => `language_model.${k}`));
}

/** Loads a TinyLLaVA model from a folder. */
export function loadTinyLlava(dir: string, opts: LoadOptions = {}): TinyLlava {
  const model = loadFolder(dir, opts);
  // the single-folder path quantised layer by layer as it loaded; the others load whole, then quantise here
  if (opts.quantize && !model.quantization) model.quantization = quantizeInt8(model.languageModel);
  return model;
}

function loadFolder(dir: string, opts: LoadOptions): TinyLlava {
  const dtype = opts.dtype ?? "float32";
  const cfgPath = join(dir, "config.json");
  const config = parseTinyLlavaConfig(readJson(cfgPath), cfgPath);
  const components = ["language_model", "vision_tower", "connector"].map((c) => join(dir, c));
  // Factory's LoRA output: component folders with the base weights + a PEFT adapter, merged on load (as Factory's
  // load_pretrained_model does)
  if (!hasWeights(dir) && existsSync(join(dir, ADAPTER_CONFIG))) {
    const model = withoutInit(() => new TinyLlava(config, dtype));
    loadLoraComponents(model, dir);
    loadAdapter(model, dir);
    mergeLora(model);
    return model;
  }
  if (!hasWeights(dir) && components.every((c) => existsSync(c))) return loadFactoryComponents(dir, config, dtype);
  if (!hasWeights(dir)) throw weightsError(dir);
  return withWeights(dir, (ck) => {
    const keys = new Set(
      ck
        .keys()
        .map((k) => canonicalKey(k))
        .filter((k): k is string => k !== null),
    );
    const model = withoutInit(() => new TinyLlava(config, dtype, { keys }));
    const tied = config.text.tie_word_embeddings;
    const rename = (k: string) => {
      const c = canonicalKey(k);
      return tied && c === "language_model.lm_head.weight" ? null : c;
    };
    const q = opts.quantize ? new IncrementalInt8(model.languageModel, "language_model.") : null;
    loadInto(model, ck, dir, rename, dtype, [], opts.onProgress, q ? (name) => q.loaded(name) : undefined);
    if (q) model.quantization = q.finish();
    return model;
  });
}

/** Factory's stage-1 output: language_model/ and vision_tower/ as HF folders, connector/ with the connector. */
function loadFactoryComponents(dir: string, config: TinyLlavaConfig, dtype: DType): TinyLlava {
  const lmDir = join(dir, "language_model");
  return withWeights(lmDir, (lm) => {
    const model = withoutInit(() => new TinyLlava(config, dtype, { keys: languageModelKeys(lm) }));
    loadPart(model, lm, lmDir, "language_model.", config.text.tie_word_embeddings, dtype);
    loadPart(model, null, join(dir, "vision_tower"), "vision_tower.", false, dtype);
    loadPart(model, null, join(dir, "connector"), "connector.", false, dtype);
    return model;
  });
}

function visionRename(k: string): string | null {
  // HF vision folders: SiglipVisionModel / CLIPVisionModel (vision_model.*), a full SigLIP/CLIP (text_model.* too),
  // or Factory's vision_tower/ (_vision_tower.vision_model.*)
  let key = k.startsWith("_vision_tower.") ? k.slice("_vision_tower.".length) : k;
  if (!key.startsWith("vision_model.")) return null;
  key = `vision_tower.${key}`;
  return canonicalKey(key);
}

/** Loads one component folder (opened already, or opened here when `ck` is null) into the matching part of
 * `model`; the other parts are loaded separately. */
function loadPart(
  model: TinyLlava,
  ck: SafetensorsCheckpoint | null,
  dir: string,
  part: "language_model." | "vision_tower." | "connector.",
  tied: boolean,
  dtype: DType,
): void {
  const rename =
    part === "vision_tower."
      ? visionRename
      : part === "connector."
        ? (k: string) => (k.startsWith("connector.") ? k : `connector.${k}`)
        : (k: string) => (tied && k === "lm_head.weight" ? null : `language_model.${k}`);
  const others = ["language_model.", "vision_tower.", "connector."].filter((p) => p !== part);
  if (ck) loadInto(model, ck, dir, rename, dtype, others);
  else withWeights(dir, (opened) => loadInto(model, opened, dir, rename, dtype, others));
}

export interface FromPartsOptions extends LoadOptions {
  connectorType: string;
  visionFeatureLayer?: number;
  visionFeatureSelectStrategy?: "patch" | "default" | "full" | "cls_patch";
  imageAspectRatio?: "square" | "pad";
  numQueries?: number;
  numResamplerLayers?: number;
}

/** Builds a TinyLLaVA as Factory's training does: an HF LLM folder + an HF vision folder + a new connector
 * (randomly initialised). */
export function tinyLlavaFromParts(llmDir: string, visionDir: string, opts: FromPartsOptions): TinyLlava {
  const dtype = opts.dtype ?? "float32";
  const llmCfgPath = join(llmDir, "config.json");
  const llmRaw = readJson(llmCfgPath);
  const visionCfgPath = join(visionDir, "config.json");
  const visionRaw = readJson(visionCfgPath);
  const vf = new Fields(visionRaw, visionCfgPath);
  const visionFields = vf.has("vision_config") ? vf.obj_("vision_config") : vf;
  if (!visionFields.has("model_type")) visionFields.obj.model_type = vf.str("model_type");
  const text = parseTextConfig(new Fields(llmRaw, llmCfgPath));
  const vision = parseVisionConfig(visionFields);
  const raw: Json = {
    model_type: "tinyllava",
    connector_type: opts.connectorType,
    text_config: llmRaw,
    vision_config: visionFields.obj,
    vision_feature_layer: opts.visionFeatureLayer ?? -2,
    vision_feature_select_strategy: opts.visionFeatureSelectStrategy ?? "patch",
    image_aspect_ratio: opts.imageAspectRatio ?? "square",
    num_queries: opts.numQueries ?? 128,
    num_resampler_layers: opts.numResamplerLayers ?? 3,
    hidden_size: text.hidden_size,
    vision_hidden_size: vision.hidden_size,
    vocab_size: text.vocab_size,
  };
  const config = parseTinyLlavaConfig(raw, `${llmCfgPath} + ${visionCfgPath}`);
  return withWeights(llmDir, (lm) => {
    const model = new TinyLlava(config, dtype, { keys: languageModelKeys(lm) });
    loadPart(model, lm, llmDir, "language_model.", config.text.tie_word_embeddings, dtype);
    loadPart(model, null, visionDir, "vision_tower.", false, dtype);
    return model;
  });
}
