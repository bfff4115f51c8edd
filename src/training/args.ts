// Training arguments with TinyLLaVA Factory's names (tinyllava/utils/arguments.py + the transformers
// TrainingArguments it extends), set from a YAML/JSON recipe file and/or kebab-case flags (`--learning-rate 1e-3`),
// flags winning. Every value is validated with an error naming the argument (and the file), and `--stage` applies
// the paper's two recipes: pretrain (connector trained, LLM and vision frozen, template `pretrain`, lr 1e-3) and
// finetune (LLM + connector, vision frozen, the family's template, lr 2e-5).
import { existsSync, readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { ConfigError } from "../errors.js";

export type TuneType = "frozen" | "full" | "lora" | "partially-tune";

export interface TrainingArguments {
  // stage preset (ours): fills the tune types, lr and template below unless they are given
  stage: "pretrain" | "finetune" | "custom";
  // model (Factory's ModelArguments)
  model_name_or_path: string | null;
  tokenizer_name_or_path: string | null;
  vision_tower: string | null;
  connector_type: string;
  mm_vision_select_layer: number;
  mm_vision_select_feature: "patch" | "cls_patch";
  num_queries: number;
  num_resampler_layers: number;
  model_max_length: number;
  pretrained_model_path: string | null;
  // data (DataArguments)
  data_path: string | null;
  image_folder: string | null;
  image_aspect_ratio: "square" | "pad";
  conv_version: string | null;
  // training (TrainingArguments)
  output_dir: string | null;
  training_recipe: "common" | "lora";
  tune_type_llm: TuneType;
  tune_type_vision_tower: TuneType;
  tune_vision_tower_from_layer: number;
  tune_type_connector: TuneType;
  lora_r: number;
  lora_alpha: number;
  lora_dropout: number;
  mm_projector_lr: number | null;
  vision_tower_lr: number | null;
  group_by_modality_length: boolean;
  num_train_epochs: number;
  max_steps: number;
  per_device_train_batch_size: number;
  gradient_accumulation_steps: number;
  learning_rate: number;
  weight_decay: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_epsilon: number;
  warmup_ratio: number;
  lr_scheduler_type: "cosine" | "linear" | "constant";
  max_grad_norm: number;
  logging_steps: number;
  save_steps: number;
  save_total_limit: number;
  bf16: boolean;
  gradient_checkpointing: boolean;
  seed: number;
  resume_from_checkpoint: string | null;
  // ours
  skip_mismatched: boolean;
  verify_images: boolean;
  progress: boolean;
}

type Kind = "string" | "path" | "int" | "number" | "bool" | { oneOf: readonly string[] };

interface Spec {
  name: keyof TrainingArguments;
  kind: Kind;
  dflt: unknown;
  help: string;
  nullable?: boolean;
  min?: number;
  max?: number;
}

const TUNE = ["frozen", "full", "lora", "partially-tune"] as const;

export const ARGUMENTS: Spec[] = [
  {
    name: "stage",
    kind: { oneOf: ["pretrain", "finetune", "custom"] },
    dflt: "custom",
    help: "recipe preset: pretrain (connector, lr 1e-3, template pretrain) or finetune (LLM + connector, lr 2e-5, the family's template); explicit arguments win",
  },
  {
    name: "model_name_or_path",
    kind: "path",
    dflt: null,
    nullable: true,
    help: "HF LLM folder (pretrain: the language model to start from)",
  },
  {
    name: "tokenizer_name_or_path",
    kind: "path",
    dflt: null,
    nullable: true,
    help: "tokenizer folder (default: the LLM's / the model's)",
  },
  { name: "vision_tower", kind: "path", dflt: null, nullable: true, help: "HF vision tower folder (SigLIP/CLIP)" },
  {
    name: "connector_type",
    kind: "string",
    dflt: "mlp2x_gelu",
    help: "linear, mlp2x_gelu, …, identity, resampler, qformer",
  },
  { name: "mm_vision_select_layer", kind: "int", dflt: -2, help: "vision hidden state fed to the connector" },
  {
    name: "mm_vision_select_feature",
    kind: { oneOf: ["patch", "cls_patch"] },
    dflt: "patch",
    help: "patch drops the first token (also for SigLIP, as Factory)",
  },
  { name: "num_queries", kind: "int", dflt: 128, min: 1, help: "resampler/qformer queries" },
  { name: "num_resampler_layers", kind: "int", dflt: 3, min: 1, help: "resampler layers" },
  { name: "model_max_length", kind: "int", dflt: 2048, min: 8, help: "truncate samples to this many tokens" },
  {
    name: "pretrained_model_path",
    kind: "path",
    dflt: null,
    nullable: true,
    help: "previous stage's output folder (finetune)",
  },
  { name: "data_path", kind: "path", dflt: null, nullable: true, help: "LLaVA JSON training data" },
  {
    name: "image_folder",
    kind: "path",
    dflt: null,
    nullable: true,
    help: "folder the data's image paths are relative to",
  },
  {
    name: "image_aspect_ratio",
    kind: { oneOf: ["square", "pad"] },
    dflt: "square",
    help: "square (resize) or pad (expand2square)",
  },
  {
    name: "conv_version",
    kind: "string",
    dflt: null,
    nullable: true,
    help: "template: pretrain, phi, qwen2_base, qwen2_instruct, llama, gemma",
  },
  { name: "output_dir", kind: "path", dflt: null, nullable: true, help: "where checkpoints and the final model go" },
  {
    name: "training_recipe",
    kind: { oneOf: ["common", "lora"] },
    dflt: "common",
    help: "lora: LoRA on the components whose tune type is lora",
  },
  { name: "tune_type_llm", kind: { oneOf: TUNE }, dflt: "frozen", help: "frozen | full | lora" },
  {
    name: "tune_type_vision_tower",
    kind: { oneOf: TUNE },
    dflt: "frozen",
    help: "frozen | full | partially-tune | lora",
  },
  {
    name: "tune_vision_tower_from_layer",
    kind: "int",
    dflt: 10,
    help: "partially-tune: vision encoder layers ≥ this are trained",
  },
  { name: "tune_type_connector", kind: { oneOf: TUNE }, dflt: "full", help: "frozen | full | lora" },
  { name: "lora_r", kind: "int", dflt: 64, min: 1, help: "LoRA rank" },
  { name: "lora_alpha", kind: "number", dflt: 16, help: "LoRA alpha (scaling alpha / r)" },
  { name: "lora_dropout", kind: "number", dflt: 0.05, min: 0, max: 1, help: "dropout on LoRA's input" },
  {
    name: "mm_projector_lr",
    kind: "number",
    dflt: null,
    nullable: true,
    min: 0,
    help: "separate learning rate for the connector",
  },
  {
    name: "vision_tower_lr",
    kind: "number",
    dflt: null,
    nullable: true,
    min: 0,
    help: "separate learning rate for the vision tower",
  },
  {
    name: "group_by_modality_length",
    kind: "bool",
    dflt: false,
    help: "length-grouped batches, image and text-only apart (Factory's sampler)",
  },
  { name: "num_train_epochs", kind: "number", dflt: 1, min: 0, help: "epochs (when max_steps is 0)" },
  { name: "max_steps", kind: "int", dflt: 0, min: 0, help: "optimiser steps (0: from the epochs)" },
  { name: "per_device_train_batch_size", kind: "int", dflt: 8, min: 1, help: "samples per micro-batch" },
  { name: "gradient_accumulation_steps", kind: "int", dflt: 1, min: 1, help: "micro-batches per optimiser step" },
  { name: "learning_rate", kind: "number", dflt: 2e-5, min: 0, help: "peak learning rate" },
  { name: "weight_decay", kind: "number", dflt: 0, min: 0, help: "AdamW weight decay (never on biases and norms)" },
  { name: "adam_beta1", kind: "number", dflt: 0.9, min: 0, max: 1, help: "AdamW β1" },
  { name: "adam_beta2", kind: "number", dflt: 0.999, min: 0, max: 1, help: "AdamW β2" },
  { name: "adam_epsilon", kind: "number", dflt: 1e-8, min: 0, help: "AdamW ε" },
  {
    name: "warmup_ratio",
    kind: "number",
    dflt: 0.03,
    min: 0,
    max: 1,
    help: "linear warm-up over this share of the steps",
  },
  {
    name: "lr_scheduler_type",
    kind: { oneOf: ["cosine", "linear", "constant"] },
    dflt: "cosine",
    help: "schedule after warm-up",
  },
  { name: "max_grad_norm", kind: "number", dflt: 1, min: 0, help: "gradient clipping (0: off)" },
  { name: "logging_steps", kind: "int", dflt: 1, min: 1, help: "log every N steps" },
  { name: "save_steps", kind: "int", dflt: 0, min: 0, help: "checkpoint every N steps (0: only at the end)" },
  { name: "save_total_limit", kind: "int", dflt: 1, min: 0, help: "checkpoints kept (0: all)" },
  { name: "bf16", kind: "bool", dflt: false, help: "bfloat16 mixed precision (float32 master weights)" },
  { name: "gradient_checkpointing", kind: "bool", dflt: false, help: "recompute each layer's activations in backward" },
  { name: "seed", kind: "int", dflt: 42, min: 0, help: "seed for initialisation, data order and dropout" },
  {
    name: "resume_from_checkpoint",
    kind: "path",
    dflt: null,
    nullable: true,
    help: "checkpoint folder, or 'last' for the newest in output_dir",
  },
  {
    name: "skip_mismatched",
    kind: "bool",
    dflt: false,
    help: "skip (and count) samples whose label mask disagrees with the tokens, instead of stopping",
  },
  { name: "verify_images", kind: "bool", dflt: true, help: "decode every image before training starts" },
  { name: "progress", kind: "bool", dflt: true, help: "progress bar on a terminal" },
];

export const kebab = (n: string) => n.replace(/_/g, "-");

function coerce(spec: Spec, raw: unknown, where: string): unknown {
  const bad = (expected: string): never => {
    throw new ConfigError(`${where}: ${spec.name} is ${JSON.stringify(raw)}; expected ${expected}`);
  };
  if (raw === null || raw === undefined || raw === "null") {
    if (spec.nullable) return null;
    return bad(describe(spec.kind));
  }
  const k = spec.kind;
  if (k === "string" || k === "path") {
    if (typeof raw !== "string" || raw === "") return bad("a non-empty string");
    return raw;
  }
  if (k === "bool") {
    if (typeof raw === "boolean") return raw;
    if (raw === "true" || raw === "True" || raw === "1") return true;
    if (raw === "false" || raw === "False" || raw === "0") return false;
    return bad("true or false");
  }
  if (k === "int" || k === "number") {
    const n = typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : Number.NaN;
    if (!Number.isFinite(n) || (k === "int" && !Number.isInteger(n)))
      return bad(k === "int" ? "an integer" : "a number");
    if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max))
      return bad(`${k === "int" ? "an integer" : "a number"} in [${spec.min ?? "−∞"}, ${spec.max ?? "∞"}]`);
    return n;
  }
  if (typeof raw !== "string" || !k.oneOf.includes(raw)) return bad(describe(k));
  return raw;
}

function describe(k: Kind): string {
  if (typeof k === "object") return `one of ${k.oneOf.join(", ")}`;
  return k === "int" ? "an integer" : k === "number" ? "a number" : k === "bool" ? "true or false" : "a string";
}

/** Reads a recipe file (YAML or JSON: a mapping of argument names, snake_case or kebab-case). */
export function readRecipe(path: string): Record<string, unknown> {
  if (!existsSync(path)) throw new ConfigError(`${path}: recipe file not found`);
  let doc: unknown;
  try {
    doc = path.endsWith(".json") ? JSON.parse(readFileSync(path, "utf8")) : parseYaml(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConfigError(`${path}: not valid ${path.endsWith(".json") ? "JSON" : "YAML"} (${(e as Error).message})`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc))
    throw new ConfigError(`${path}: expected a mapping of argument names to values`);
  return doc as Record<string, unknown>;
}

/** Defaults ← stage preset ← recipe file ← flags; validated. `flags` keys may be snake_case or camelCase. */
export function resolveArguments(
  opts: { recipe?: Record<string, unknown>; recipePath?: string; flags?: Record<string, unknown> } = {},
): TrainingArguments {
  const byName = new Map(ARGUMENTS.map((s) => [s.name as string, s]));
  const norm = (k: string) => k.replace(/-/g, "_").replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  const given = new Map<string, { value: unknown; where: string }>();
  const take = (src: Record<string, unknown> | undefined, where: string) => {
    for (const [k, v] of Object.entries(src ?? {})) {
      if (v === undefined) continue;
      const name = norm(k);
      if (!byName.has(name))
        throw new ConfigError(`${where}: unknown argument "${k}" (tinyllava train --help lists them)`);
      given.set(name, { value: v, where });
    }
  };
  take(opts.recipe, opts.recipePath ?? "recipe");
  take(opts.flags, "command line");
  const out: Record<string, unknown> = {};
  for (const s of ARGUMENTS) out[s.name] = s.dflt;
  const stage = given.has("stage")
    ? coerce(byName.get("stage") as Spec, given.get("stage")?.value, given.get("stage")?.where as string)
    : "custom";
  if (stage === "pretrain")
    Object.assign(out, {
      tune_type_llm: "frozen",
      tune_type_vision_tower: "frozen",
      tune_type_connector: "full",
      learning_rate: 1e-3,
      conv_version: "pretrain",
    });
  if (stage === "finetune")
    Object.assign(out, {
      tune_type_llm: "full",
      tune_type_vision_tower: "frozen",
      tune_type_connector: "full",
      learning_rate: 2e-5,
    });
  for (const [name, { value, where }] of given) out[name] = coerce(byName.get(name) as Spec, value, where);
  const a = out as unknown as TrainingArguments;
  if (a.tune_type_connector === "partially-tune" || a.tune_type_llm === "partially-tune")
    throw new ConfigError("partially-tune is only for the vision tower (tune_type_vision_tower)");
  if (
    [a.tune_type_llm, a.tune_type_vision_tower, a.tune_type_connector].includes("lora") &&
    a.training_recipe !== "lora"
  )
    a.training_recipe = "lora";
  return a;
}

/** The argument list for `tinyllava train --help`. */
export function argumentsHelp(): string {
  return ARGUMENTS.map((s) => {
    const d = s.dflt === null ? "" : ` (default ${JSON.stringify(s.dflt)})`;
    return `  --${kebab(s.name)} ${typeof s.kind === "object" ? `<${s.kind.oneOf.join("|")}>` : s.kind === "bool" ? "[true|false]" : `<${s.kind}>`}\n      ${s.help}${d}`;
  }).join("\n");
}
