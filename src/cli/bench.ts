// `tinyllava bench generate`: generation at the shapes of the released checkpoints (random weights), beside PyTorch
// eager (bench/generate_ref.py on Debian's python3-torch, the same libtorch) and llama.cpp (node-llama-cpp's
// binaries, on a GGUF our exporter writes from the same kind of random weights), measured in the same run, with the
// ratios. A benchmark, not a test: it needs a checkout (bench/ scripts) and minutes.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { IMAGE_PLACEHOLDER } from "../config/index.js";
import { GenerationRun } from "../generation/generate.js";
import { randomModel } from "../models/init.js";
import { PRESETS, presetConfig } from "../models/presets.js";
import { manualSeed, randn } from "../torch/creation.js";
import { disposeAll } from "../torch/memory.js";
import { getNumThreads } from "../torch/runtime.js";
import { lastJson, round } from "./bench-json.js";
import { type BenchTrainFlags, benchTrain } from "./bench-train.js";
import { choice, int, peakRssMb, UsageError } from "./options.js";

export interface BenchFlags {
  preset: string;
  dtype: string;
  quantize?: string;
  newTokens: string;
  promptTextTokens: string;
  reference: string;
  repeats: string;
}

function repoRoot(): string {
  // dist/src/cli/bench.js or src/cli/bench.ts → the checkout
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(d, "bench", "generate_ref.py"))) return d;
    d = dirname(d);
  }
  throw new UsageError("tinyllava bench needs a checkout of the repository (bench/generate_ref.py not found)");
}

interface Ours {
  engine: "tinyllava";
  vision_encode_ms: number;
  prefill_ms: number;
  decode_tok_s: number;
  peak_rss_mb: number;
  weights_mb: number;
  generated_head: number[];
}

function ours(
  preset: string,
  dtype: "float32" | "bfloat16",
  int8: boolean,
  textTokens: number,
  newTokens: number,
  repeats: number,
): Ours {
  manualSeed(0);
  const cfg = presetConfig(preset);
  const model = randomModel(cfg, dtype, int8);
  let weights = 0;
  for (const [, t] of model.stateDict())
    weights += t.numel() * (t.dtype === "float32" ? 4 : t.dtype === "int8" ? 1 : t.dtype === "float64" ? 8 : 2);
  const px = randn([1, 3, cfg.vision.image_size, cfg.vision.image_size]);
  const half = Math.floor(textTokens / 2);
  const ids = [
    ...Array.from({ length: half }, (_, i) => 1000 + i),
    IMAGE_PLACEHOLDER,
    ...Array.from({ length: textTokens - half }, (_, i) => 2000 + i),
  ];
  const best = { vision: Number.POSITIVE_INFINITY, prefill: Number.POSITIVE_INFINITY, decode: 0 };
  let head: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const run = new GenerationRun(model, [{ inputIds: ids, pixelValues: px }], {
      maxNewTokens: newTokens,
      eosTokenIds: [],
    });
    for (const _ of run.steps());
    best.vision = Math.min(best.vision, run.timings.visionMs);
    best.prefill = Math.min(best.prefill, run.timings.prefillMs);
    best.decode = Math.max(best.decode, run.timings.decodeTokensPerSecond);
    head = run.outputs()[0]?.tokens.slice(0, 8) ?? [];
  }
  disposeAll([px]);
  model.dispose();
  return {
    engine: "tinyllava",
    vision_encode_ms: round(best.vision, 1),
    prefill_ms: round(best.prefill, 1),
    decode_tok_s: round(best.decode),
    peak_rss_mb: round(peakRssMb(), 1),
    weights_mb: round(weights / 2 ** 20, 1),
    generated_head: head,
  };
}

function pytorch(
  root: string,
  preset: string,
  dtype: string,
  threads: number,
  textTokens: number,
  newTokens: number,
  repeats: number,
) {
  const r = spawnSync(
    "/usr/bin/python3",
    [
      join(root, "bench", "generate_ref.py"),
      "--preset",
      preset,
      "--dtype",
      dtype,
      "--threads",
      String(threads),
      "--prompt-text-tokens",
      String(textTokens),
      "--new-tokens",
      String(newTokens),
      "--repeats",
      String(repeats),
    ],
    { encoding: "utf8", maxBuffer: 64 * 2 ** 20 },
  );
  if (r.status !== 0) return { engine: "pytorch-eager", error: (r.stderr || r.stdout).slice(-1500) };
  return lastJson(r.stdout);
}

function llamacpp(
  root: string,
  preset: string,
  type: string,
  threads: number,
  promptTokens: number,
  newTokens: number,
) {
  const dir = mkdtempSync(join(tmpdir(), "tinyllava-bench-"));
  try {
    const gguf = join(dir, `${preset}-${type}.gguf`);
    const exp = spawnSync(
      process.execPath,
      [
        "--import",
        "tsx",
        join(root, "bench", "llamacpp", "export-preset.ts"),
        "--preset",
        preset,
        "--type",
        type,
        "--out",
        gguf,
      ],
      {
        encoding: "utf8",
        cwd: root,
        maxBuffer: 64 * 2 ** 20,
      },
    );
    if (exp.status !== 0) return { engine: "llama.cpp", error: (exp.stderr || exp.stdout).slice(-1500) };
    const r = spawnSync(
      process.execPath,
      [
        join(root, "bench", "llamacpp", "run.mjs"),
        "bench",
        "--model",
        gguf,
        "--prompt-tokens",
        String(promptTokens),
        "--new-tokens",
        String(newTokens),
        "--threads",
        String(threads),
      ],
      { encoding: "utf8", cwd: root, maxBuffer: 64 * 2 ** 20 },
    );
    if (r.status !== 0) return { engine: "llama.cpp", error: (r.stderr || r.stdout).slice(-1500) };
    return { ...lastJson(r.stdout), export: lastJson(exp.stdout) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchCommand(what: string, o: BenchFlags & BenchTrainFlags): Promise<void> {
  if (what === "train") return benchTrain(o, repoRoot());
  if (what !== "generate") throw new UsageError(`bench ${JSON.stringify(what)}: expected generate or train`);
  const preset = choice("--preset", o.preset, Object.keys(PRESETS));
  const dtype = choice("--dtype", o.dtype, ["float32", "bfloat16"] as const);
  const int8 = o.quantize !== undefined && choice("--quantize", o.quantize, ["int8"] as const) === "int8";
  const newTokens = int("--new-tokens", o.newTokens, { min: 1 });
  const textTokens = int("--prompt-text-tokens", o.promptTextTokens, { min: 2 });
  const repeats = int("--repeats", o.repeats, { min: 1 });
  const refs =
    o.reference === "none"
      ? []
      : o.reference.split(",").map((r) => choice("--reference", r, ["pytorch", "llamacpp"] as const));
  const threads = getNumThreads();
  const root = repoRoot();
  const cfg = presetConfig(preset);
  const imageTokens = Math.floor(cfg.vision.image_size / cfg.vision.patch_size) ** 2 - 1; // Factory's `patch`
  const precision = int8 ? "int8" : dtype;
  console.error(
    `bench generate: ${preset}, ${precision}, ${threads} threads, ${imageTokens} image + ${textTokens} text tokens, ${newTokens} new tokens`,
  );
  const result: Record<string, unknown> = {
    bench: "generate",
    preset,
    precision,
    threads,
    prompt_tokens: imageTokens + textTokens,
    new_tokens: newTokens,
    load: execFileSync("uptime", { encoding: "utf8" }).trim(),
  };
  const mine = ours(preset, dtype, int8, textTokens, newTokens, repeats);
  result.tinyllava = { ...mine, time_to_first_token_ms: round(mine.vision_encode_ms + mine.prefill_ms, 1) };
  console.error(JSON.stringify(result.tinyllava));
  const ratios: Record<string, number> = {};
  if (refs.includes("pytorch") && !int8) {
    const pt = pytorch(root, preset, dtype, threads, textTokens, newTokens, repeats) as unknown as Record<
      string,
      number
    >;
    result.pytorch = pt;
    console.error(JSON.stringify(pt));
    if (pt.prefill_ms && pt.vision_encode_ms && pt.decode_tok_s) {
      ratios.vision_vs_pytorch = round(pt.vision_encode_ms / mine.vision_encode_ms);
      ratios.prefill_vs_pytorch = round(pt.prefill_ms / mine.prefill_ms);
      ratios.decode_vs_pytorch = round(mine.decode_tok_s / pt.decode_tok_s);
    }
  }
  if (refs.includes("llamacpp")) {
    const type = int8 ? "q8_0" : dtype === "bfloat16" ? "bf16" : "f32";
    const lc = llamacpp(root, preset, type, threads, imageTokens + textTokens, newTokens) as unknown as Record<
      string,
      number
    >;
    result.llamacpp = lc;
    console.error(JSON.stringify(lc));
    if (lc.decode_tok_s && lc.prefill_ms) {
      ratios.prefill_vs_llamacpp = round(lc.prefill_ms / mine.prefill_ms);
      ratios.decode_vs_llamacpp = round(mine.decode_tok_s / lc.decode_tok_s);
    }
  }
  result.ratios = ratios;
  result.peak_rss_vs_weights = round(mine.peak_rss_mb / mine.weights_mb);
  console.log(JSON.stringify(result));
}
