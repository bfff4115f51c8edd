// Which parameters a recipe trains (Factory's BaseTrainingRecipe.tune_type_setting) and the optimiser's parameter
// groups (Factory's LLaVATrainer.create_optimizer): no weight decay on biases and normalisation weights, separate
// learning rates for the connector (mm_projector_lr) and the vision tower (vision_tower_lr).
import { ConfigError } from "../errors.js";
import type { TinyLlava } from "../models/tinyllava.js";
import { LayerNorm, RMSNorm } from "../nn/layers.js";
import type { ParamGroup } from "../torch/optim.js";
import type { Tensor } from "../torch/tensor.js";
import type { TrainingArguments } from "./args.js";

/** Sets requiresGrad per component as the arguments say (LoRA components are frozen here; the LoRA recipe then adds
 * trainable adapters). */
export function applyTuneTypes(model: TinyLlava, a: TrainingArguments): void {
  const set = (m: { requiresGrad_(v: boolean): unknown }, t: string) => m.requiresGrad_(t === "full");
  set(model.languageModel, a.tune_type_llm);
  set(model.connector, a.tune_type_connector);
  if (a.tune_type_vision_tower === "partially-tune") {
    const from = a.tune_vision_tower_from_layer;
    const n = model.config.vision.num_hidden_layers;
    if (from < 0 || from >= n)
      throw new ConfigError(`tune_vision_tower_from_layer ${from}: the vision tower has layers 0…${n - 1}`);
    // Factory: only vision_model.encoder.layers.{i ≥ from} train; embeddings and norms stay frozen
    for (const [name, p] of model.visionTower.namedParameters()) {
      const m = /vision_model\.encoder\.layers\.(\d+)\./.exec(name);
      p.requiresGrad = m !== null && Number(m[1]) >= from;
    }
  } else set(model.visionTower, a.tune_type_vision_tower);
}

/** Names of parameters that are never decayed: biases and the weights of normalisation layers. */
export function noDecayNames(model: TinyLlava): Set<string> {
  const out = new Set<string>();
  for (const [prefix, m] of model.namedModules()) {
    const isNorm = m instanceof LayerNorm || m instanceof RMSNorm;
    for (const [n] of m.namedParameters()) {
      if (n.includes(".")) continue; // direct parameters of this module only
      const full = prefix ? `${prefix}.${n}` : n;
      if (isNorm || n === "bias" || n.endsWith("_bias")) out.add(full);
    }
  }
  return out;
}

export interface NamedGroup extends ParamGroup {
  name: string;
  names: string[];
}

/** Factory's groups over the trainable parameters: (connector | vision tower | the rest) × (decay | no decay), the
 * empty ones dropped. */
export function parameterGroups(model: TinyLlava, a: TrainingArguments): NamedGroup[] {
  const noDecay = noDecayNames(model);
  const buckets = new Map<string, NamedGroup>();
  for (const [name, p] of model.namedParameters()) {
    if (!p.requiresGrad) continue;
    const part =
      name.startsWith("connector.") && a.mm_projector_lr !== null
        ? "connector"
        : name.startsWith("vision_tower.") && a.vision_tower_lr !== null
          ? "vision_tower"
          : "model";
    const decay = !noDecay.has(name);
    const key = `${part}:${decay ? "decay" : "no_decay"}`;
    let g = buckets.get(key);
    if (!g) {
      const lr =
        part === "connector"
          ? (a.mm_projector_lr as number)
          : part === "vision_tower"
            ? (a.vision_tower_lr as number)
            : a.learning_rate;
      g = { name: key, names: [], params: [], lr, weightDecay: decay ? a.weight_decay : 0 };
      buckets.set(key, g);
    }
    g.names.push(name);
    g.params.push(p as Tensor);
  }
  // Factory's order (the LLM's groups first, then the connector's and the tower's), so that group 0, whose rate the
  // progress and metrics report as HF's Trainer does, is at learning_rate
  const rank = (g: NamedGroup) => ["model", "connector", "vision_tower"].indexOf(g.name.split(":")[0] as string);
  return [...buckets.values()].sort((x, y) => rank(x) - rank(y));
}
