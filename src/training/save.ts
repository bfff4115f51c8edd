// What training writes, in the layouts TinyLLaVA Factory and transformers read: a full model folder (config.json in
// Factory's format, model.safetensors with Factory's key names, tokenizer and processor files), and for the pretrain
// stage also Factory's component folders (language_model/, vision_tower/, connector/). Folders are written next to
// their destination and renamed into place, so an interrupted save never leaves a half-written model behind.
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Json } from "../config/index.js";
import { factoryKey } from "../models/checkpoint.js";
import type { TinyLlava } from "../models/tinyllava.js";
import { saveSafetensors } from "../torch/safetensors.js";
import type { Tensor } from "../torch/tensor.js";

/** A model folder's tokenizer files (whichever exist are copied with the model). */
export const TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "added_tokens.json",
  "vocab.json",
  "merges.txt",
  "tokenizer.model",
];

/** The model's config as Factory's TinyLlavaConfig writes it (a llava config is converted). */
export function factoryConfig(model: TinyLlava, extra: Json = {}): Json {
  const c = model.config;
  const base: Json =
    c.source_format === "tinyllava"
      ? structuredClone(c.raw)
      : {
          architectures: ["TinyLlavaForConditionalGeneration"],
          model_type: "tinyllava",
          connector_type: c.connector_type,
          text_config: structuredClone(c.raw.text_config as Json),
          vision_config: structuredClone(c.raw.vision_config as Json),
          image_token_index: -200,
          ignore_index: -100,
        };
  const strategy = c.vision_feature_select_strategy === "default" ? "patch" : c.vision_feature_select_strategy;
  return {
    ...base,
    hidden_size: c.text.hidden_size,
    vocab_size: c.text.vocab_size,
    vision_hidden_size: c.vision.hidden_size,
    vision_feature_layer: c.vision_feature_layer,
    vision_feature_select_strategy: strategy,
    image_aspect_ratio: c.image_aspect_ratio,
    num_queries: c.num_queries,
    num_resampler_layers: c.num_resampler_layers,
    tokenizer_padding_side: "right",
    use_cache: true,
    torch_dtype: "float32",
    ...extra,
  };
}

/** Builds a folder at a temporary name next to `dir`, then puts it in place of `dir`. */
export function writeFolderAtomically(dir: string, build: (tmp: string) => void): void {
  const parent = dirname(dir);
  mkdirSync(parent, { recursive: true });
  const tmp = join(parent, `.${basename(dir)}.tmp-${process.pid}-${Date.now()}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    build(tmp);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const old = join(parent, `.${basename(dir)}.old-${process.pid}-${Date.now()}`);
  if (existsSync(dir)) renameSync(dir, old);
  renameSync(tmp, dir);
  rmSync(old, { recursive: true, force: true });
}

/** Parameters (and persistent buffers) under Factory's key names, as float32 unless `keepDtype`. */
export function factoryStateDict(model: TinyLlava, overrides: Map<string, Tensor> = new Map()): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, v] of model.stateDict()) {
    if (model.config.text.tie_word_embeddings && k === "language_model.lm_head.weight") continue;
    out.set(factoryKey(k), overrides.get(k) ?? v);
  }
  return out;
}

export interface SaveModelOptions {
  /** folder with the tokenizer files to copy */
  tokenizerDir: string;
  /** folder with preprocessor_config.json (when present) */
  processorDir?: string | null;
  /** config fields to add (tune types, template, …) */
  config?: Json;
  /** also write Factory's stage-1 component folders */
  components?: boolean;
  /** replacement values for some parameters (e.g. float32 master weights of a bfloat16 model) */
  overrides?: Map<string, Tensor>;
}

/** Writes a complete model folder that `loadTinyLlava` (and Factory/transformers) load. */
export function saveModelFolder(model: TinyLlava, dir: string, o: SaveModelOptions): void {
  const cfg = factoryConfig(model, o.config);
  const sd = factoryStateDict(model, o.overrides);
  writeFolderAtomically(dir, (tmp) => {
    writeFileSync(join(tmp, "config.json"), `${JSON.stringify(cfg, null, 2)}\n`);
    saveSafetensors(join(tmp, "model.safetensors"), sd, { format: "pt" });
    copyTokenizer(o.tokenizerDir, tmp);
    const proc = o.processorDir && join(o.processorDir, "preprocessor_config.json");
    if (proc && existsSync(proc)) copyFileSync(proc, join(tmp, "preprocessor_config.json"));
    if (o.components) writeComponents(model, tmp, cfg, o.overrides ?? new Map());
  });
}

export function copyTokenizer(from: string, to: string): void {
  let n = 0;
  for (const f of TOKENIZER_FILES) {
    if (existsSync(join(from, f))) {
      copyFileSync(join(from, f), join(to, f));
      n++;
    }
  }
  if (n === 0) throw new Error(`${from}: no tokenizer files to copy (${readdirSync(from).join(", ")})`);
}

/** Factory's pretrain output: language_model/ and vision_tower/ as HF folders, connector/ with its weights. */
function writeComponents(model: TinyLlava, dir: string, cfg: Json, overrides: Map<string, Tensor>): void {
  const part = (prefix: string, strip: string) => {
    const m = new Map<string, Tensor>();
    for (const [k, v] of model.stateDict()) {
      if (!k.startsWith(prefix)) continue;
      if (model.config.text.tie_word_embeddings && k === "language_model.lm_head.weight") continue;
      m.set(k.slice(strip.length), overrides.get(k) ?? v);
    }
    return m;
  };
  const lm = join(dir, "language_model");
  mkdirSync(lm);
  writeFileSync(join(lm, "config.json"), `${JSON.stringify(cfg.text_config, null, 2)}\n`);
  saveSafetensors(join(lm, "model.safetensors"), part("language_model.", "language_model."), { format: "pt" });
  const vt = join(dir, "vision_tower");
  mkdirSync(vt);
  writeFileSync(join(vt, "config.json"), `${JSON.stringify(cfg.vision_config, null, 2)}\n`);
  saveSafetensors(join(vt, "model.safetensors"), part("vision_tower.", "vision_tower."), { format: "pt" });
  const cn = join(dir, "connector");
  mkdirSync(cn);
  saveSafetensors(join(cn, "model.safetensors"), part("connector.", ""), { format: "pt" });
}
