// Writes the language model of a preset (src/models/presets.ts) with random weights as a GGUF file, with a synthetic
// vocabulary of the model's size, for llama.cpp timings at real shapes (run.mjs bench feeds token ids directly).
//   node --import tsx bench/llamacpp/export-preset.ts --preset qwen2-0.5b-siglip --type q8_0 --out /tmp/q.gguf \
//        [--dtype float32|bfloat16] [--seed 0]
// Prints one JSON line (file, size, time, peak RSS).

import type { GgufType } from "../../src/export/index.js";
import { writeGguf } from "../../src/export/index.js";
import { presetConfig } from "../../src/models/presets.js";
import { buildLanguageModel } from "../../src/models/registry.js";
import { manualSeed } from "../../src/torch/index.js";

function arg(name: string, dflt?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (v === undefined) {
    if (dflt === undefined) throw new Error(`--${name} is required`);
    return dflt;
  }
  return v;
}

const preset = arg("preset", "qwen2-0.5b-siglip");
const type = arg("type", "q8_0") as GgufType;
const out = arg("out");
const dtype = arg("dtype", type === "f32" || type === "q8_0" ? "float32" : "bfloat16") as "float32" | "bfloat16";
manualSeed(Number(arg("seed", "0")));
const cfg = presetConfig(preset);
const t0 = performance.now();
const lm = buildLanguageModel(cfg.text, { dtype });
const t1 = performance.now();
const r = writeGguf(lm, { synthetic: true }, out, { type, name: `random-${preset}` });
const t2 = performance.now();
console.log(
  JSON.stringify({
    mode: "export-preset",
    preset,
    type,
    build_dtype: dtype,
    file: r.path,
    arch: r.arch,
    tensors: r.tensors,
    file_mb: Math.round((r.bytes / 1024 ** 2) * 10) / 10,
    build_s: Math.round(t1 - t0) / 1000,
    export_s: Math.round(t2 - t1) / 1000,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  }),
);
