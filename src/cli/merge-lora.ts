// `tinyllava merge-lora`: a base model folder + a LoRA adapter folder (PEFT's adapter_config.json +
// adapter_model.safetensors, and Factory's component folders when its LoRA recipe wrote them) → a plain model folder
// with the adapter folded into the weights (PEFT's merge_and_unload), in the base folder's key layout, that
// loadTinyLlava (and transformers/Factory) load without PEFT.
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Json } from "../config/index.js";
import { type CheckpointLayout, canonicalKey, detectLayout } from "../models/checkpoint.js";
import { loadTinyLlava } from "../models/load.js";
import { COMPONENTS, layoutKey, loadAdapter, loadLoraComponents, readAdapterConfig } from "../models/lora.js";
import { mergeLora } from "../nn/lora.js";
import type { DType } from "../torch/dtype.js";
import { atomicWrite, SafetensorsCheckpoint, saveShardedSafetensors } from "../torch/safetensors.js";
import type { Tensor } from "../torch/tensor.js";
import { DTYPES, loadProgressBar, dtype as parseDtype, UsageError } from "./options.js";

export interface MergeLoraFlags {
  model: string;
  adapter: string;
  out: string;
  dtype?: string;
}

/** Files of a model folder besides its weights and config that a merged folder keeps (tokenizer, processor,
 * generation settings). */
export const SIDE_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "added_tokens.json",
  "vocab.json",
  "merges.txt",
  "tokenizer.model",
  "chat_template.json",
  "chat_template.jinja",
  "preprocessor_config.json",
  "processor_config.json",
  "generation_config.json",
];

function hasWeights(dir: string): boolean {
  return existsSync(join(dir, "model.safetensors")) || existsSync(join(dir, "model.safetensors.index.json"));
}

function same(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return resolve(a) === resolve(b);
  }
}

/** The dtype the base folder's config declares (torch_dtype, or transformers 5's dtype), when it is one we load. */
function configDtype(config: Json): DType | null {
  for (const k of ["torch_dtype", "dtype"]) {
    const v = config[k];
    if (typeof v === "string" && (DTYPES as readonly string[]).includes(v)) return v as DType;
  }
  return null;
}

export interface MergeResult {
  out: string;
  layout: CheckpointLayout;
  dtype: DType;
  layers: number;
  components: string[];
  files: string[];
}

/** Merges `adapter` into the model in `model` and writes the result to `out` (see the file comment). */
export function mergeLoraFolders(modelDir: string, adapterDir: string, outDir: string, dt?: DType): MergeResult {
  if (!existsSync(join(modelDir, "config.json")))
    throw new UsageError(`--model ${JSON.stringify(modelDir)}: no config.json there (expected a model folder)`);
  if (existsSync(outDir) && (same(outDir, modelDir) || same(outDir, adapterDir)))
    throw new UsageError(`--out ${JSON.stringify(outDir)}: must be a new folder, not the base model or adapter folder`);
  readAdapterConfig(adapterDir); // a bad adapter folder fails before the model is loaded
  const baseConfig = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8")) as Json;
  const dtype = dt ?? configDtype(baseConfig) ?? "float32";
  const bar = loadProgressBar();
  let model: ReturnType<typeof loadTinyLlava>;
  try {
    model = loadTinyLlava(modelDir, { dtype, onProgress: bar.onProgress });
  } finally {
    bar.stop();
  }
  try {
    const components = COMPONENTS.some((c) => existsSync(join(adapterDir, c)))
      ? loadLoraComponents(model, adapterDir)
      : [];
    const loaded = loadAdapter(model, adapterDir);
    const layers = mergeLora(model);
    // the base folder's layout (Factory's for its component folders) and the tensors it has that the model does not
    // own (an lm_head stored although tied): copied unchanged
    const tensors = new Map<string, Tensor>();
    let layout: CheckpointLayout = "tinyllava-factory";
    const owned: Tensor[] = [];
    if (hasWeights(modelDir)) {
      const ck = SafetensorsCheckpoint.open(modelDir);
      try {
        layout = detectLayout(ck.keys());
        const tied = model.config.text.tie_word_embeddings;
        for (const k of ck.keys()) {
          const c = canonicalKey(k);
          if (c !== null && !(tied && c === "language_model.lm_head.weight")) continue;
          const info = ck.info(k)!;
          const float = ["float32", "float64", "bfloat16", "float16"].includes(info.dtype);
          const t = ck.get(k, float ? dtype : undefined);
          owned.push(t);
          tensors.set(k, t);
        }
      } finally {
        ck.close();
      }
    }
    for (const [k, t] of model.stateDict()) tensors.set(layoutKey(k, layout), t);
    mkdirSync(outDir, { recursive: true });
    const files = saveShardedSafetensors(outDir, tensors);
    for (const t of owned) t.dispose();
    // config.json: the base's, with the dtype the weights now have
    const config = structuredClone(baseConfig);
    let set = false;
    for (const k of ["torch_dtype", "dtype"])
      if (k in config) {
        config[k] = dtype;
        set = true;
      }
    if (!set) config.torch_dtype = dtype;
    const text = Buffer.from(`${JSON.stringify(config, null, 2)}\n`);
    const cfgPath = join(outDir, "config.json");
    atomicWrite(cfgPath, (fd) => {
      let done = 0;
      while (done < text.length) done += writeSync(fd, text, done, text.length - done);
    });
    files.push(cfgPath);
    // tokenizer / processor / generation files: the base's, else the adapter folder's (Factory saves the tokenizer
    // beside the adapter)
    for (const f of SIDE_FILES) {
      const from = [modelDir, adapterDir].map((d) => join(d, f)).find((p) => existsSync(p));
      if (!from) continue;
      copyFileSync(from, join(outDir, f));
      files.push(join(outDir, f));
    }
    if (loaded.ignored.length)
      console.error(
        `merge-lora: ${loaded.ignored.length} adapter tensor(s) of SigLIP's pooling head (never run by TinyLLaVA) were not merged (e.g. ${loaded.ignored[0]})`,
      );
    return { out: outDir, layout, dtype, layers: layers.length, components, files };
  } finally {
    model.dispose();
  }
}

export async function mergeLoraCommand(o: MergeLoraFlags): Promise<void> {
  for (const [flag, v] of [
    ["--model", o.model],
    ["--adapter", o.adapter],
    ["--out", o.out],
  ] as const)
    if (!v?.trim()) throw new UsageError(`${flag}: expected a folder`);
  if (!existsSync(o.model)) throw new UsageError(`--model ${JSON.stringify(o.model)}: no such folder`);
  if (!existsSync(o.adapter)) throw new UsageError(`--adapter ${JSON.stringify(o.adapter)}: no such folder`);
  const dt = o.dtype === undefined ? undefined : parseDtype(o.dtype);
  const t0 = performance.now();
  const r = mergeLoraFolders(o.model, o.adapter, o.out, dt);
  const parts = r.components.length ? ` + ${r.components.join(", ")} from the adapter folder` : "";
  console.log(
    `merged ${r.layers} LoRA layer(s)${parts} into ${o.model} → ${r.out} (${r.dtype}, ${r.layout} key layout, ${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
}
