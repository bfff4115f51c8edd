// Factory's LoRA recipe (training_recipe/lora_recipe.py): after the tune types are set, every Linear of the
// components whose tune type is "lora" — lm_head excepted — gets an adapter (r, alpha, dropout); the rest keeps its
// tune type (e.g. a fully trained connector). The output is what Factory writes: a PEFT adapter (adapter_config.json
// + adapter_model.safetensors with PEFT's key names) beside config.json, the tokenizer, and each component's non-LoRA
// weights in language_model/, vision_tower/, connector/ (PEFT-wrapped names, ".base_layer" for adapted layers).
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { factoryLoraTargets, saveAdapter } from "../models/lora.js";
import type { TinyLlava } from "../models/tinyllava.js";
import { applyLora, loraLayers } from "../nn/lora.js";
import { saveSafetensors } from "../torch/safetensors.js";
import type { Tensor } from "../torch/tensor.js";
import type { TrainingArguments } from "./args.js";
import { copyTokenizer, factoryConfig, writeFolderAtomically } from "./save.js";

export function applyLoraRecipe(model: TinyLlava, a: TrainingArguments): Tensor[] {
  return applyLora(model, {
    r: a.lora_r,
    alpha: a.lora_alpha,
    dropout: a.lora_dropout,
    seed: a.seed,
    targets: factoryLoraTargets({
      llm: a.tune_type_llm === "lora",
      visionTower: a.tune_type_vision_tower === "lora",
      connector: a.tune_type_connector === "lora",
    }),
    // the components' own tune types were applied already: only the adapted layers' weights freeze here
    freeze: "layers",
  });
}

/** Writes Factory's LoRA output into `outputDir`; returns the files written. */
export function saveLoraOutputs(
  model: TinyLlava,
  outputDir: string,
  a: TrainingArguments,
  tokenizerDir: string,
  processorDir: string | null,
  overrides: Map<string, Tensor> = new Map(),
): string[] {
  mkdirSync(outputDir, { recursive: true });
  const files = saveAdapter(model, outputDir, {
    baseModelNameOrPath: a.pretrained_model_path ?? a.model_name_or_path,
    overrides,
  });
  const cfg = factoryConfig(model, {
    tune_type_llm: a.tune_type_llm,
    tune_type_vision_tower: a.tune_type_vision_tower,
    tune_type_connector: a.tune_type_connector,
    lora_r: a.lora_r,
    lora_alpha: a.lora_alpha,
  });
  writeFileSync(join(outputDir, "config.json"), `${JSON.stringify(cfg, null, 2)}\n`);
  files.push(join(outputDir, "config.json"));
  copyTokenizer(tokenizerDir, outputDir);
  const proc = processorDir ? join(processorDir, "preprocessor_config.json") : null;
  if (proc && existsSync(proc)) copyFileSync(proc, join(outputDir, "preprocessor_config.json"));
  // non-LoRA weights per component, named as PEFT's wrapped model names them
  const adapted = new Set(loraLayers(model).map(([path]) => path));
  const wrapped = (k: string) => {
    const dot = k.lastIndexOf(".");
    const mod = k.slice(0, dot);
    return adapted.has(mod) ? `${mod}.base_layer.${k.slice(dot + 1)}` : k;
  };
  for (const [comp, prefix] of [
    ["language_model", "language_model."],
    ["vision_tower", "vision_tower."],
    ["connector", ""],
  ] as const) {
    const tensors = new Map<string, Tensor>();
    for (const [k, v] of model.stateDict()) {
      if (!k.startsWith(`${comp}.`) || /\.lora_[AB]\./.test(k)) continue;
      if (model.config.text.tie_word_embeddings && k === "language_model.lm_head.weight") continue;
      tensors.set(wrapped(k).slice(prefix.length), overrides.get(k) ?? v);
    }
    const dir = join(outputDir, comp);
    writeFolderAtomically(dir, (tmp) => {
      saveSafetensors(join(tmp, "model.safetensors"), tensors, { format: "pt" });
      if (comp !== "connector")
        writeFileSync(
          join(tmp, "config.json"),
          `${JSON.stringify(comp === "language_model" ? cfg.text_config : cfg.vision_config, null, 2)}\n`,
        );
    });
    files.push(join(dir, "model.safetensors"));
  }
  return files;
}
