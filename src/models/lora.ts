// LoRA on TinyLLaVA as TinyLLaVA Factory does it, and adapters on disk as PEFT writes them.
//
// Which layers: Factory's LoRA recipe (training_recipe/lora_recipe.py) wraps the model with peft's get_peft_model,
// target_modules = find_all_linear_names(model, skip) (utils/train_utils.py): every nn.Linear whose full module name
// contains none of the skipped components ("connector", "vision_tower", "language_model" minus those whose tune type
// is lora) and none of "lm_head", "output_layer", "head" (substring tests on Factory's names). The list holds full
// module names, e.g. "language_model.model.layers.0.self_attn.q_proj".
//
// The adapter folder (PeftModel.save_pretrained): adapter_model.safetensors with get_peft_model_state_dict's keys —
// "base_model.model." + the module's name in the wrapped model + ".lora_A.weight" / ".lora_B.weight" (the adapter
// name, ".default", removed), full tensors of modules_to_save under "base_model.model.<module>.<param>", biases
// with bias "all"/"lora_only" — and adapter_config.json (LoraConfig.to_dict, sorted keys, indent 2, inference_mode
// true). Module names are Factory's (factoryKey: vision_tower._vision_tower.vision_model.*, connector._connector.*,
// language_model.*), or any other supported layout when reading (canonicalKey).
import { existsSync, mkdirSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { Fields, type Json } from "../config/index.js";
import { CheckpointError, ConfigError } from "../errors.js";
import type { Linear } from "../nn/layers.js";
import { applyLora, type LoraAdapter, type LoraBias, linearLayers, loraLayers } from "../nn/lora.js";
import { checkShape } from "../nn/module.js";
import { noGrad } from "../torch/autograd.js";
import { atomicWrite, SafetensorsFile, saveSafetensors } from "../torch/safetensors.js";
import type { Tensor } from "../torch/tensor.js";
import { type CheckpointLayout, canonicalKey, factoryKey } from "./checkpoint.js";
import type { TinyLlava } from "./tinyllava.js";

export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";
/** get_peft_model_state_dict's prefix: PeftModel.base_model (LoraModel) .model (the wrapped TinyLLaVA) */
export const PEFT_PREFIX = "base_model.model.";
/** SigLIP's attention-pooling head: carried in the model (as buffers) but never run */
const SIGLIP_HEAD = "vision_tower.vision_model.head.";

// ---- which layers (Factory's find_all_linear_names) ----

/** The components Factory's tune types set to "lora". */
export interface LoraComponents {
  llm?: boolean;
  visionTower?: boolean;
  connector?: boolean;
}

/** Factory's find_all_linear_names(model, lora_skip_module) as a predicate on our module paths (tested on their
 * Factory names). */
export function factoryLoraTargets(tuned: LoraComponents): (path: string, linear: Linear) => boolean {
  const skip = [
    ...(tuned.connector ? [] : ["connector"]),
    ...(tuned.visionTower ? [] : ["vision_tower"]),
    ...(tuned.llm ? [] : ["language_model"]),
  ];
  return (path) => {
    const name = factoryKey(path);
    if (skip.some((s) => name.includes(s))) return false;
    return !(name.includes("lm_head") || name.includes("output_layer") || name.includes("head"));
  };
}

/** The Linear layers (our paths) Factory's rule puts LoRA on, in model order. */
export function factoryLoraTargetNames(model: TinyLlava, tuned: LoraComponents): string[] {
  const pick = factoryLoraTargets(tuned);
  return linearLayers(model)
    .filter(([p, l]) => pick(p, l))
    .map(([p]) => p);
}

// ---- key layouts ----

/** Internal name → the name in `layout` (the inverse of canonicalKey for keys the model owns). */
export function layoutKey(key: string, layout: CheckpointLayout): string {
  if (layout === "tinyllava-factory") return factoryKey(key);
  let k = key;
  if (k.startsWith("connector.")) {
    // HF's LlavaMultiModalProjector: linear_1, (GELU), linear_2 = Factory's _connector.0, _connector.2
    const m = /^connector\._connector\.(\d+)\.(.+)$/.exec(k);
    if (!m || Number(m[1]) % 2 !== 0)
      throw new CheckpointError(`"${key}" has no name in the ${layout} layout (only mlp2x_gelu connectors do)`);
    k = `multi_modal_projector.linear_${Number(m[1]) / 2 + 1}.${m[2]}`;
  }
  if (layout === "llava-hf-classic") return k;
  if (layout === "transformers-5")
    return k.startsWith("vision_tower.vision_model.")
      ? `vision_tower.${k.slice("vision_tower.vision_model.".length)}`
      : k;
  // modern
  if (k.startsWith("language_model.model.")) return `model.language_model.${k.slice("language_model.model.".length)}`;
  if (k.startsWith("language_model.lm_head.")) return k.slice("language_model.".length);
  if (k.startsWith("vision_tower.") || k.startsWith("multi_modal_projector.")) return `model.${k}`;
  return k;
}

const LAYOUTS: CheckpointLayout[] = ["tinyllava-factory", "llava-hf-classic", "transformers-5", "modern"];

function moduleName(path: string, layout: CheckpointLayout): string {
  return layoutKey(`${path}.weight`, layout).slice(0, -".weight".length);
}

// ---- adapter_config.json ----

/** adapter_config.json as PEFT's LoraConfig writes it (the fields this library reads or writes; others are kept
 * when read). */
export interface LoraAdapterConfig {
  peft_type: "LORA";
  task_type: string | null;
  base_model_name_or_path: string | null;
  revision: string | null;
  inference_mode: boolean;
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[] | string | null;
  exclude_modules: string[] | string | null;
  bias: LoraBias;
  fan_in_fan_out: boolean;
  use_rslora: boolean;
  use_dora: boolean;
  init_lora_weights: boolean | string;
  modules_to_save: string[] | null;
  layers_to_transform: number[] | number | null;
  layers_pattern: string[] | string | null;
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  raw: Json;
}

/** Fields of LoraConfig that change what an adapter computes in ways this library does not implement: each must be
 * absent, null, false, {} or [] (the defaults), or loading fails naming it. */
const UNSUPPORTED: [field: string, what: string][] = [
  ["use_dora", "DoRA (weight-decomposed LoRA)"],
  ["lora_bias", "a bias on lora_B"],
  ["use_qalora", "QA-LoRA"],
  ["alora_invocation_tokens", "activated LoRA (aLoRA)"],
  ["layer_replication", "layer replication"],
  ["target_parameters", "LoRA on nn.Parameter targets"],
  ["trainable_token_indices", "trainable tokens"],
  ["megatron_config", "Megatron parallel layers"],
  ["velora_config", "VeLoRA"],
  ["monteclora_config", "MonteCLoRA"],
  ["use_bdlora", "block-diagonal LoRA"],
  ["arrow_config", "Arrow routing"],
  ["kasa_config", "KaSA"],
];

/** init_lora_weights values whose adapters are plain A/B on the unchanged base weights (pissa, olora, corda, loftq
 * change the base weights at initialisation; mica is a LoRA variant). */
const PLAIN_INITS = new Set<unknown>([true, false, "gaussian", "eva", "orthogonal"]);

function isDefault(v: unknown): boolean {
  if (v === undefined || v === null || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === "object") return Object.keys(v as object).length === 0;
  return false;
}

function strList(f: Fields, k: string, regexAllowed: boolean): string[] | string | null {
  const v = f.obj[k];
  if (v === undefined || v === null) return null;
  if (regexAllowed && typeof v === "string") return v;
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v as string[];
  throw new ConfigError(
    `${f.where}: field "${k}" is ${JSON.stringify(v)}; expected ${regexAllowed ? "a list of module names or a regular expression" : "a list of module names"}`,
  );
}

function numberMap(f: Fields, k: string, integer: boolean): Record<string, number> {
  const v = f.obj[k];
  if (v === undefined || v === null) return {};
  const bad = () => {
    throw new ConfigError(
      `${f.where}: field "${k}" is ${JSON.stringify(v)}; expected an object of module patterns to ${integer ? "positive integers" : "numbers"}`,
    );
  };
  if (typeof v !== "object" || Array.isArray(v)) bad();
  for (const x of Object.values(v as object))
    if (typeof x !== "number" || !Number.isFinite(x) || (integer && (!Number.isInteger(x) || x <= 0))) bad();
  return v as Record<string, number>;
}

/** Parses and validates adapter_config.json (missing fields take LoraConfig's defaults, as PEFT does). */
export function parseAdapterConfig(raw: unknown, where = ADAPTER_CONFIG): LoraAdapterConfig {
  const f = new Fields(raw as Json, where);
  if (!f.has("peft_type")) throw new ConfigError(`${where}: field "peft_type" is missing (not a PEFT adapter config)`);
  if (f.str("peft_type") !== "LORA")
    throw new ConfigError(
      `${where}: field "peft_type" is ${JSON.stringify(f.obj.peft_type)}; only "LORA" adapters are supported`,
    );
  for (const [k, what] of UNSUPPORTED)
    if (!isDefault(f.obj[k]))
      throw new ConfigError(`${where}: field "${k}" is ${JSON.stringify(f.obj[k])}: ${what} is not supported`);
  const init = f.obj.init_lora_weights ?? true;
  if (!PLAIN_INITS.has(init))
    throw new ConfigError(
      `${where}: field "init_lora_weights" is ${JSON.stringify(init)}: that initialisation changes the base weights or the layer (pissa, olora, corda, loftq, mica); only true, false, "gaussian", "eva" and "orthogonal" adapters are supported`,
    );
  const dropout = f.num("lora_dropout", 0);
  if (dropout < 0 || dropout >= 1)
    throw new ConfigError(`${where}: field "lora_dropout" is ${dropout}; expected a probability 0 ≤ p < 1`);
  const ltt = f.obj.layers_to_transform;
  if (
    ltt !== undefined &&
    ltt !== null &&
    !(Number.isInteger(ltt) || (Array.isArray(ltt) && ltt.every((x) => Number.isInteger(x))))
  )
    throw new ConfigError(
      `${where}: field "layers_to_transform" is ${JSON.stringify(ltt)}; expected a layer index or a list of them`,
    );
  const opt = (k: string): string | null => (f.has(k) ? f.str(k) : null);
  return {
    peft_type: "LORA",
    task_type: opt("task_type"),
    base_model_name_or_path: opt("base_model_name_or_path"),
    revision: opt("revision"),
    inference_mode: f.bool("inference_mode", false),
    r: f.int("r", 8, { min: 1 }),
    lora_alpha: f.num("lora_alpha", 8),
    lora_dropout: dropout,
    target_modules: strList(f, "target_modules", true),
    exclude_modules: strList(f, "exclude_modules", true),
    bias: f.oneOf("bias", ["none", "all", "lora_only"] as const, "none"),
    // PEFT resets fan_in_fan_out to false for torch.nn.Linear targets (with a warning): the tensors are [out, in]
    fan_in_fan_out: f.bool("fan_in_fan_out", false),
    use_rslora: f.bool("use_rslora", false),
    use_dora: false,
    init_lora_weights: init as boolean | string,
    modules_to_save: strList(f, "modules_to_save", false) as string[] | null,
    layers_to_transform: (ltt ?? null) as number[] | number | null,
    layers_pattern: strList(f, "layers_pattern", true),
    rank_pattern: numberMap(f, "rank_pattern", true),
    alpha_pattern: numberMap(f, "alpha_pattern", false),
    raw: f.obj,
  };
}

/** PEFT's pattern lookup (get_pattern_key): the first key that matches the end of the module name on a dot. */
function patternValue(pattern: Record<string, number>, name: string): number | undefined {
  for (const [k, v] of Object.entries(pattern)) if (new RegExp(`(^|.*\\.)(?:${k})$`).test(name)) return v;
  return undefined;
}

/** Whether PEFT's check_target_module_exists would select module `name` (regex: full match; list: exact or a
 * dotted suffix; "all-linear": every Linear but the output layer). */
function targetMatches(spec: string[] | string, name: string, isOutput: boolean): boolean {
  if (typeof spec === "string") {
    if (spec === "all-linear") return !isOutput;
    return new RegExp(`^(?:${spec})$`).test(name);
  }
  return spec.some((t) => name === t || name.endsWith(`.${t}`));
}

/** PEFT's layers_to_transform filter: the index after the layer pattern (default ModuleList names). */
function layerSelected(cfg: LoraAdapterConfig, name: string): boolean {
  if (cfg.layers_to_transform === null) return true;
  const wanted = Array.isArray(cfg.layers_to_transform) ? cfg.layers_to_transform : [cfg.layers_to_transform];
  const patterns =
    cfg.layers_pattern === null
      ? ["layers", "h", "block", "blocks", "layer"]
      : Array.isArray(cfg.layers_pattern)
        ? cfg.layers_pattern
        : [cfg.layers_pattern];
  for (const p of patterns) {
    const m = new RegExp(`.*\\.(?:${p})\\.(\\d+)\\.`).exec(name);
    if (m) return wanted.includes(Number(m[1]));
  }
  return false;
}

// ---- saving ----

export interface SaveAdapterOptions {
  /** adapter_config.json's base_model_name_or_path (the base model folder or hub id) */
  baseModelNameOrPath?: string | null;
  revision?: string | null;
  /** default "CAUSAL_LM" (Factory's) */
  taskType?: string | null;
  /** modules (our paths, e.g. "connector") saved in full beside the adapters, as PEFT's modules_to_save */
  modulesToSave?: string[];
  /** biases saved beside the adapters (PEFT's bias): every parameter named *bias*, or the adapted layers' */
  bias?: LoraBias;
  /** module naming: Factory's (default), or an HF LLaVA layout */
  layout?: CheckpointLayout;
  /** tensors to write instead of the live ones, by our parameter name (e.g. float32 master copies) */
  overrides?: Map<string, Tensor>;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Writes `dir`/adapter_model.safetensors and `dir`/adapter_config.json (each atomically: temporary file + rename)
 * for the adapters in `model`, with PEFT's key names and config fields. Returns the two paths. */
export function saveAdapter(model: TinyLlava, dir: string, opts: SaveAdapterOptions = {}): string[] {
  const layers = loraLayers(model);
  if (layers.length === 0) throw new ConfigError("saveAdapter: the model has no LoRA adapters");
  const layout = opts.layout ?? "tinyllava-factory";
  const bias = opts.bias ?? "none";
  const pick = (name: string, t: Tensor) => opts.overrides?.get(name) ?? t;
  const tensors = new Map<string, Tensor>();
  for (const [path, , a] of layers)
    for (const [n, t] of a.namedParameters()) {
      const name = `${path}.${n}`;
      tensors.set(`${PEFT_PREFIX}${moduleName(path, layout)}.${n}`, pick(name, t));
    }
  const adapted = new Set(layers.map(([p]) => p));
  const params = new Map(model.namedParameters());
  if (bias !== "none") {
    for (const [name, t] of params) {
      if (name.includes(".lora_A.") || name.includes(".lora_B.") || !name.includes("bias")) continue;
      if (bias === "lora_only" && !(name.endsWith(".bias") && adapted.has(name.slice(0, -".bias".length)))) continue;
      tensors.set(PEFT_PREFIX + layoutKey(name, layout), pick(name, t));
    }
  }
  const toSave = opts.modulesToSave ?? [];
  const state = model.stateDict();
  for (const m of toSave) {
    // PEFT saves the module's whole state_dict (its buffers too)
    const below = [...state].filter(
      ([n]) => n.startsWith(`${m}.`) && !n.includes(".lora_A.") && !n.includes(".lora_B."),
    );
    if (below.length === 0) throw new ConfigError(`saveAdapter: modulesToSave "${m}" names no module with parameters`);
    if (layers.some(([p]) => p === m || p.startsWith(`${m}.`)))
      throw new ConfigError(`saveAdapter: modulesToSave "${m}" also holds LoRA layers (PEFT cannot save both)`);
    for (const [n, t] of below) tensors.set(PEFT_PREFIX + layoutKey(n, layout), pick(n, t));
  }
  // r / alpha: the most common values are the config's, the others go to rank_pattern / alpha_pattern by full name
  const mode = (xs: number[]) => {
    const counts = new Map<number, number>();
    for (const x of xs) counts.set(x, (counts.get(x) ?? 0) + 1);
    return [...counts].reduce((best, c) => (c[1] > best[1] ? c : best))[0];
  };
  const r = mode(layers.map(([, , a]) => a.r));
  const alpha = mode(layers.map(([, , a]) => a.alpha));
  const first = layers[0]![2];
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  const dropouts = new Set(layers.map(([, , a]) => a.dropout));
  const rs = new Set(layers.map(([, , a]) => a.useRslora));
  if (dropouts.size > 1 || rs.size > 1)
    throw new ConfigError(
      "saveAdapter: the adapters differ in dropout or rsLoRA; PEFT's config has one value for each",
    );
  for (const [path, , a] of layers) {
    const key = escapeRegex(moduleName(path, layout));
    if (a.r !== r) rankPattern[key] = a.r;
    if (a.alpha !== alpha) alphaPattern[key] = a.alpha;
  }
  const config: Json = {
    alpha_pattern: alphaPattern,
    auto_mapping: null,
    base_model_name_or_path: opts.baseModelNameOrPath ?? null,
    bias,
    corda_config: null,
    eva_config: null,
    exclude_modules: null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: first.init,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: alpha,
    lora_bias: false,
    lora_dropout: first.dropout,
    megatron_config: null,
    megatron_core: "megatron.core",
    modules_to_save: toSave.length ? toSave.map((m) => moduleName(m, layout)) : null,
    peft_type: "LORA",
    qalora_group_size: 16,
    r,
    rank_pattern: rankPattern,
    revision: opts.revision ?? null,
    target_modules: layers.map(([p]) => moduleName(p, layout)).sort(),
    target_parameters: null,
    task_type: opts.taskType === undefined ? "CAUSAL_LM" : opts.taskType,
    trainable_token_indices: null,
    use_dora: false,
    use_qalora: false,
    use_rslora: first.useRslora,
  };
  mkdirSync(dir, { recursive: true });
  const weights = join(dir, ADAPTER_WEIGHTS);
  const cfgPath = join(dir, ADAPTER_CONFIG);
  saveSafetensors(weights, tensors, { format: "pt" });
  // json.dumps(indent=2, sort_keys=True) (the keys above are sorted), ASCII-only as Python's default
  const text = Buffer.from(
    JSON.stringify(config, null, 2).replace(
      /[\u007f-\uffff]/g,
      (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
    ),
  );
  atomicWrite(cfgPath, (fd) => {
    let done = 0;
    while (done < text.length) done += writeSync(fd, text, done, text.length - done);
  });
  return [weights, cfgPath];
}

// ---- loading ----

export interface LoadAdapterOptions {
  /** adapters (and modules_to_save) trainable, as PeftModel.from_pretrained(is_trainable=True); default false:
   * everything frozen (inference) */
  trainable?: boolean;
}

export interface LoadedAdapter {
  config: LoraAdapterConfig;
  /** the module layout the adapter's names are in */
  layout: CheckpointLayout;
  /** our paths of the layers that got an adapter */
  layers: string[];
  /** our names of the parameters overwritten from modules_to_save / bias tensors */
  copied: string[];
  /** adapter tensors of SigLIP's attention-pooling head, which TinyLLaVA never runs (and Factory never targets) */
  ignored: string[];
}

/** Reads and validates `dir`/adapter_config.json. */
export function readAdapterConfig(dir: string): LoraAdapterConfig {
  const path = join(dir, ADAPTER_CONFIG);
  if (!existsSync(path)) throw new CheckpointError(`${dir}: no ${ADAPTER_CONFIG} (not a PEFT adapter folder)`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  return parseAdapterConfig(raw, path);
}

const LORA_KEY = /^(.*)\.(lora_A|lora_B)\.(?:([^.]+)\.)?weight$/;

/** Attaches the adapter saved in `dir` (PEFT's adapter_config.json + adapter_model.safetensors) to `model`: its
 * tensors are matched to the model's Linear layers by name (Factory's or any supported layout; keys with or without
 * the adapter name, e.g. ".default"), checked against the config (r / rank_pattern, target_modules,
 * exclude_modules, layers_to_transform) and the layers' shapes, then loaded (converted to the model's dtype).
 * Everything is validated before the model is touched. */
export function loadAdapter(model: TinyLlava, dir: string, opts: LoadAdapterOptions = {}): LoadedAdapter {
  const config = readAdapterConfig(dir);
  const file = join(dir, ADAPTER_WEIGHTS);
  if (!existsSync(file)) {
    const bin = existsSync(join(dir, "adapter_model.bin"));
    throw new CheckpointError(
      bin
        ? `${dir}: only adapter_model.bin (a PyTorch pickle) found; tinyllava reads safetensors — convert it with safetensors' save_file (pickles can run code, so they are not loaded)`
        : `${dir}: no ${ADAPTER_WEIGHTS}`,
    );
  }
  const st = new SafetensorsFile(file);
  try {
    return attach(model, config, st, opts);
  } finally {
    st.close();
  }
}

interface AdaptedModule {
  name: string;
  path: string;
  linear: Linear;
  A?: string;
  B?: string;
}

function attach(
  model: TinyLlava,
  config: LoraAdapterConfig,
  st: SafetensorsFile,
  opts: LoadAdapterOptions,
): LoadedAdapter {
  const file = st.path;
  const linears = new Map(linearLayers(model));
  const params = new Map(model.namedParameters());
  const state = model.stateDict();
  const modules = new Map<string, AdaptedModule>();
  const extras: [key: string, internal: string][] = [];
  const ignored: string[] = [];
  const unexpected: string[] = [];
  const adapterNames = new Set<string>();
  for (const key of st.keys()) {
    if (!key.startsWith(PEFT_PREFIX)) {
      unexpected.push(key);
      continue;
    }
    const rest = key.slice(PEFT_PREFIX.length);
    const m = LORA_KEY.exec(rest);
    if (!m) {
      if (/\.lora_[A-Za-z_]+\./.test(rest))
        throw new CheckpointError(
          `${file}: tensor "${key}" is not a plain LoRA weight (lora_A/lora_B .weight): embeddings, DoRA magnitudes and lora_B biases are not supported`,
        );
      // modules_to_save / bias tensors (an older PEFT kept "modules_to_save.<adapter>." in the name)
      const plain = rest.replace(/\.modules_to_save\.[^.]+\./, ".");
      const internal = canonicalKey(plain);
      if (internal === null || (internal.startsWith(SIGLIP_HEAD) && !state.has(internal))) ignored.push(key);
      else extras.push([key, internal]);
      continue;
    }
    const [, name, which, adapterName] = m as unknown as [string, string, "lora_A" | "lora_B", string | undefined];
    if (adapterName !== undefined) adapterNames.add(adapterName);
    const internal = canonicalKey(`${name}.weight`);
    if (internal === null || internal.startsWith(SIGLIP_HEAD)) {
      ignored.push(key);
      continue;
    }
    const path = internal.slice(0, -".weight".length);
    const linear = linears.get(path);
    if (!linear) {
      const tied = path === "language_model.lm_head" && model.config.text.tie_word_embeddings;
      throw new CheckpointError(
        `${file}: tensor "${key}" adapts "${name}", which is not a Linear layer of this model${tied ? " (its lm_head is tied to the input embeddings)" : ""}`,
      );
    }
    const entry = modules.get(path) ?? { name, path, linear };
    if (entry.name !== name)
      throw new CheckpointError(`${file}: "${entry.name}" and "${name}" both name the layer "${path}"`);
    if (entry[which.slice(-1) as "A" | "B"] !== undefined)
      throw new CheckpointError(
        `${file}: two ${which} tensors for "${name}" ("${entry[which.slice(-1) as "A" | "B"]}", "${key}")`,
      );
    entry[which.slice(-1) as "A" | "B"] = key;
    modules.set(path, entry);
  }
  if (adapterNames.size > 1)
    throw new CheckpointError(
      `${file}: tensors of several adapters (${[...adapterNames].join(", ")}); save one adapter per folder`,
    );
  if (unexpected.length)
    throw new CheckpointError(
      `${file}: tensors outside PEFT's "${PEFT_PREFIX}" prefix: ${unexpected.slice(0, 8).join(", ")}${unexpected.length > 8 ? ", …" : ""}`,
    );
  if (modules.size === 0)
    throw new CheckpointError(`${file}: no LoRA weights (lora_A/lora_B) for any layer of this model`);
  for (const e of modules.values()) {
    if (!e.A || !e.B)
      throw new CheckpointError(
        `${file}: missing keys: "${PEFT_PREFIX}${e.name}.${e.A ? "lora_B" : "lora_A"}.weight" (the layer's ${e.A ? "lora_A" : "lora_B"} is there)`,
      );
  }
  // the layout the names are in: the one that names every adapted layer as the file does
  const layout = LAYOUTS.find((l) => [...modules.values()].every((e) => safeModuleName(e.path, l) === e.name));
  if (!layout) {
    const e = [...modules.values()][0]!;
    throw new CheckpointError(`${file}: module names mix checkpoint layouts (e.g. "${e.name}")`);
  }
  // what the config says PEFT wrapped, over this model's Linear layers
  const where = join(file, "..", ADAPTER_CONFIG);
  if (config.target_modules !== null) {
    const expected = new Set<string>();
    for (const path of linears.keys()) {
      const name = safeModuleName(path, layout);
      if (name === null) continue;
      const isOutput = path === "language_model.lm_head";
      if (!targetMatches(config.target_modules, name, isOutput)) continue;
      if (config.exclude_modules !== null && targetMatches(config.exclude_modules, name, false)) continue;
      if (!layerSelected(config, name)) continue;
      expected.add(path);
    }
    const missing = [...expected].filter((p) => !modules.has(p));
    if (missing.length)
      throw new CheckpointError(
        `${file}: missing keys for ${missing.length} layer(s) that ${where} targets: ${missing
          .slice(0, 6)
          .map((p) => `"${PEFT_PREFIX}${safeModuleName(p, layout)}.lora_A.weight"`)
          .join(", ")}${missing.length > 6 ? ", …" : ""}`,
      );
    const extra = [...modules.values()].filter((e) => !expected.has(e.path));
    if (extra.length)
      throw new CheckpointError(
        `${file}: LoRA weights for layer(s) that target_modules in ${where} does not select: ${extra
          .slice(0, 6)
          .map((e) => `"${e.name}"`)
          .join(", ")}${extra.length > 6 ? ", …" : ""}`,
      );
  }
  // ranks and shapes
  const rankOf = (e: AdaptedModule) => patternValue(config.rank_pattern, e.name) ?? config.r;
  const alphaOf = (e: AdaptedModule) => patternValue(config.alpha_pattern, e.name) ?? config.lora_alpha;
  for (const e of modules.values()) {
    const a = st.tensors.get(e.A!)!.shape;
    const b = st.tensors.get(e.B!)!.shape;
    const r = rankOf(e);
    if (a.length !== 2 || a[0] !== r || b.length !== 2 || b[1] !== r)
      throw new CheckpointError(
        `${file}: r mismatch for "${e.name}": ${where} says r = ${r}${config.rank_pattern && patternValue(config.rank_pattern, e.name) !== undefined ? " (rank_pattern)" : ""} but lora_A.weight is [${a.join(", ")}] and lora_B.weight is [${b.join(", ")}]`,
      );
    checkShape(`${file}: `, e.A!, a, [r, e.linear.inFeatures]);
    checkShape(`${file}: `, e.B!, b, [e.linear.outFeatures, r]);
  }
  // modules_to_save and bias tensors
  const saveNames = config.modules_to_save ?? [];
  const copied: [key: string, name: string][] = [];
  const stray: string[] = [];
  for (const [key, internal] of extras) {
    const target = state.get(internal);
    const inSaved = saveNames.some((m) => {
      const name = key.slice(PEFT_PREFIX.length);
      // PEFT's _set_trainable: a module whose name ends with the entry
      const parts = name.split(".");
      for (let i = parts.length - 1; i > 0; i--) if (parts.slice(0, i).join(".").endsWith(m)) return true;
      return false;
    });
    const isBias = config.bias !== "none" && internal.includes("bias");
    if (!target || !(inSaved || isBias)) {
      stray.push(key);
      continue;
    }
    checkShape(`${file}: `, key, st.tensors.get(key)!.shape, target.shape);
    copied.push([key, internal]);
  }
  if (stray.length)
    throw new CheckpointError(
      `${file}: unexpected tensors (neither LoRA weights nor modules_to_save / bias tensors of this model): ${stray.slice(0, 8).join(", ")}${stray.length > 8 ? ", …" : ""}`,
    );
  // all checked: attach and load
  const byPath = new Map([...modules.values()].map((e) => [e.path, e]));
  applyLora(model, {
    r: config.r,
    alpha: config.lora_alpha,
    dropout: config.lora_dropout,
    useRslora: config.use_rslora,
    targets: (p) => byPath.has(p),
    rankFor: (p) => rankOf(byPath.get(p)!),
    alphaFor: (p) => alphaOf(byPath.get(p)!),
    bias: config.bias,
  });
  const adapters = new Map(loraLayers(model).map(([p, , a]) => [p, a] as [string, LoraAdapter]));
  noGrad(() => {
    for (const e of modules.values()) {
      const a = adapters.get(e.path)!;
      for (const [t, key] of [
        [a.A, e.A!],
        [a.B, e.B!],
      ] as [Tensor, string][]) {
        const v = st.get(key, t.dtype);
        t.copy_(v);
        v.dispose();
      }
    }
    for (const [key, name] of copied) {
      const t = state.get(name)!;
      const v = st.get(key, t.dtype);
      t.copy_(v);
      v.dispose();
    }
  });
  const trainable = opts.trainable ?? false;
  for (const a of adapters.values()) {
    a.A.requiresGrad = trainable;
    a.B.requiresGrad = trainable;
  }
  for (const [, name] of copied) {
    const p = params.get(name);
    if (p) p.requiresGrad = trainable;
  }
  if (!trainable) for (const p of model.parameters()) p.requiresGrad = false;
  return {
    config,
    layout,
    layers: [...modules.keys()],
    copied: copied.map(([, n]) => n),
    ignored,
  };
}

function safeModuleName(path: string, layout: CheckpointLayout): string | null {
  try {
    return moduleName(path, layout);
  } catch {
    return null;
  }
}

// ---- Factory's LoRA output folder ----

export const COMPONENTS = ["language_model", "vision_tower", "connector"] as const;

/** Factory's LoRA recipe saves, beside the adapter, each component's non-LoRA parameters (language_model/,
 * vision_tower/, connector/; PEFT-wrapped names with ".base_layer"), and its loader (load_pretrained_model) puts them
 * into the model before the adapter — the connector, trained in full, lives only there. Loads those of `dir`'s
 * component folders that exist (safetensors only; a pickle is an error saying so) into `model`; returns their
 * names. */
export function loadLoraComponents(model: TinyLlava, dir: string): string[] {
  const loaded: string[] = [];
  const params = new Map(model.stateDict());
  const tied = model.config.text.tie_word_embeddings;
  for (const c of COMPONENTS) {
    const sub = join(dir, c);
    if (!existsSync(sub)) continue;
    const file = join(sub, "model.safetensors");
    if (!existsSync(file)) {
      const bin = existsSync(join(sub, "pytorch_model.bin"));
      throw new CheckpointError(
        bin
          ? `${sub}: only pytorch_model.bin (a PyTorch pickle) found; tinyllava reads safetensors — convert it with safetensors' save_file (pickles can run code, so they are not loaded)`
          : `${sub}: no model.safetensors`,
      );
    }
    const st = new SafetensorsFile(file);
    try {
      const seen = new Set<string>();
      const unexpected: string[] = [];
      const pending: [string, string][] = [];
      for (const key of st.keys()) {
        const k = key.replace(/\.base_layer\./g, ".");
        if (/\.lora_[A-Za-z_]+\./.test(k)) continue;
        const internal =
          c === "vision_tower"
            ? canonicalKey(`vision_tower.${k.startsWith("_vision_tower.") ? k.slice("_vision_tower.".length) : k}`)
            : c === "connector"
              ? `connector.${k.startsWith("connector.") ? k.slice("connector.".length) : k}`
              : `language_model.${k}`;
        if (internal === null || (tied && internal === "language_model.lm_head.weight")) continue;
        const t = params.get(internal);
        if (!t) {
          unexpected.push(key);
          continue;
        }
        checkShape(`${file}: `, key, st.tensors.get(key)!.shape, t.shape);
        seen.add(internal);
        pending.push([key, internal]);
      }
      // Factory loads the language model and the vision tower strictly, the connector with strict=False
      const missing =
        c === "connector"
          ? []
          : [...params.keys()].filter(
              (k) =>
                k.startsWith(`${c}.`) && !seen.has(k) && !k.endsWith(".position_ids") && !k.startsWith(SIGLIP_HEAD),
            );
      if (missing.length || unexpected.length)
        throw new CheckpointError(
          `${file}: does not match the model's ${c}: ${[
            missing.length
              ? `missing ${missing.length} (${missing.slice(0, 6).join(", ")}${missing.length > 6 ? ", …" : ""})`
              : "",
            unexpected.length
              ? `unexpected ${unexpected.length} (${unexpected.slice(0, 6).join(", ")}${unexpected.length > 6 ? ", …" : ""})`
              : "",
          ]
            .filter(Boolean)
            .join("; ")}`,
        );
      noGrad(() => {
        for (const [key, internal] of pending) {
          const t = params.get(internal)!;
          const v = st.get(key, t.dtype);
          t.copy_(v);
          v.dispose();
        }
      });
    } finally {
      st.close();
    }
    loaded.push(c);
  }
  return loaded;
}
