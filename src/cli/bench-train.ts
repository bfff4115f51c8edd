// `tinyllava bench train`: one training step (forward with the causal-LM loss, backward, clipping to 1.0, AdamW) at a
// given shape with random weights and data, beside the same step in PyTorch eager (bench/train_ref.py on Debian's
// python3-torch, the same libtorch), in the same run, with the ratio and both peak RSS. Presets: the demo's model
// (every part trained, as the demo does) and the released shapes (Factory's finetune: LLM + connector, tower frozen).
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { IMAGE_PLACEHOLDER, parseTinyLlavaConfig } from "../config/index.js";
import { PRESETS, presetConfig } from "../models/presets.js";
import { TinyLlava } from "../models/tinyllava.js";
import { withoutInit } from "../nn/layers.js";
import { RecomputeTape } from "../nn/recompute.js";
import { Generator, manualSeed, rand, randint, tensor } from "../torch/creation.js";
import { emptyCache, tidy } from "../torch/memory.js";
import { AdamW, clipGradNorm } from "../torch/optim.js";
import { getNumThreads } from "../torch/runtime.js";
import type { Tensor } from "../torch/tensor.js";
import { demoModelConfig, initDemoWeights } from "../training/demo/model.js";
import { noDecayNames } from "../training/tune.js";
import { lastJson, round } from "./bench-json.js";
import { choice, int, peakRssMb, UsageError } from "./options.js";

export interface BenchTrainFlags {
  preset: string;
  batch?: string;
  textTokens?: string;
  steps?: string;
  reference: string;
  gradientCheckpointing?: boolean;
}

/** The demo model as `tinyllava demo` builds it (vocabulary as its tokenizer learns it on the default data). */
function demoConfig() {
  return parseTinyLlavaConfig(demoModelConfig({ vocabSize: 456, imageSize: 48 }), "demo model");
}

function ours(preset: string, batch: number, textTokens: number, steps: number, recompute: boolean) {
  manualSeed(0);
  const cfg = preset === "demo" ? demoConfig() : presetConfig(preset);
  const model = withoutInit(() => new TinyLlava(cfg, "float32"));
  initDemoWeights(model, { seed: 0 }); // the demo's init (Qwen2's N(0, range) LLM weights) on every preset
  model.train();
  const trainAll = preset === "demo";
  if (!trainAll) model.visionTower.requiresGrad_(false);
  const noDecay = noDecayNames(model);
  const named = [...model.namedParameters()].filter(([, p]) => p.requiresGrad);
  const params = named.map(([, p]) => p);
  const opt = new AdamW(
    [
      { params: named.filter(([n]) => !noDecay.has(n)).map(([, p]) => p), weightDecay: 0 },
      { params: named.filter(([n]) => noDecay.has(n)).map(([, p]) => p), weightDecay: 0 },
    ],
    { lr: 2e-5 },
  );
  const g = new Generator(1);
  const side = cfg.vision.image_size;
  const pixels = rand([batch, 3, side, side], { generator: g }).mul(2).sub(1);
  const text = randint(0, cfg.text.vocab_size, [batch, textTokens], { generator: g }).toArray();
  const ids: number[] = [];
  const labels: number[] = [];
  for (let b = 0; b < batch; b++) {
    ids.push(IMAGE_PLACEHOLDER, ...text.slice(b * textTokens, (b + 1) * textTokens));
    labels.push(
      -100,
      ...text.slice(b * textTokens, (b + 1) * textTokens).map((t, i) => (i < textTokens / 2 ? -100 : t)),
    );
  }
  const inputIds = tensor(ids, { dtype: "int64" }).reshape([batch, textTokens + 1]);
  const labelT = tensor(labels, { dtype: "int64" }).reshape([batch, textTokens + 1]);
  const times: number[] = [];
  let loss = Number.NaN;
  for (let i = 0; i < 2 + steps; i++) {
    const t0 = performance.now();
    loss = tidy(() => {
      const tape = recompute ? new RecomputeTape() : null;
      const run = () => model.forward({ inputIds, labels: labelT, pixelValues: pixels });
      const l = (tape ? tape.record(run) : run()).loss as Tensor;
      if (tape) tape.backward(l);
      else l.backward();
      return l.item();
    });
    clipGradNorm(params, 1);
    opt.step();
    opt.zeroGrad();
    if (i >= 2) times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const med = times[Math.floor(times.length / 2)] as number;
  let trainable = 0;
  for (const p of params) trainable += p.numel() * 4;
  const rss = peakRssMb();
  for (const t of [pixels, inputIds, labelT]) t.dispose();
  opt.dispose();
  model.dispose();
  emptyCache(); // the reference runs next, in its own process: hand the freed memory back first
  return {
    engine: "tinyllava",
    train: trainAll ? "all" : "finetune",
    batch,
    image_tokens: Math.floor(side / cfg.vision.patch_size) ** 2 - 1,
    text_tokens: textTokens,
    steps,
    step_ms_best: round(times[0] as number),
    step_ms_median: round(med),
    samples_per_s: round((batch * 1000) / med, 3),
    last_loss: round(loss, 4),
    trainable_mb: round(trainable / 2 ** 20, 1),
    peak_rss_mb: round(rss, 1),
  };
}

function pytorch(root: string, preset: string, batch: number, textTokens: number, steps: number, threads: number) {
  const r = spawnSync(
    "/usr/bin/python3",
    [
      join(root, "bench", "train_ref.py"),
      ...["--preset", preset, "--batch", String(batch), "--text-tokens", String(textTokens)],
      ...["--steps", String(steps), "--threads", String(threads)],
    ],
    { encoding: "utf8", maxBuffer: 64 * 2 ** 20 },
  );
  if (r.status !== 0) return { engine: "pytorch-eager", error: (r.stderr || r.stdout || "").slice(-1500) };
  return lastJson(r.stdout);
}

export async function benchTrain(o: BenchTrainFlags, root: string): Promise<void> {
  const preset = choice("--preset", o.preset, ["demo", ...Object.keys(PRESETS)]);
  const demo = preset === "demo";
  const batch = o.batch !== undefined ? int("--batch", o.batch, { min: 1 }) : demo ? 16 : 1;
  // the demo's finetune samples are ~84 positions (8 image + ~76 text); the released shapes: 728 image + 40 text
  const textTokens = o.textTokens !== undefined ? int("--text-tokens", o.textTokens, { min: 2 }) : demo ? 76 : 40;
  const steps = o.steps !== undefined ? int("--steps", o.steps, { min: 1 }) : demo ? 20 : 3;
  // the default --reference is generate's "pytorch,llamacpp"; llama.cpp does not train
  const refs = o.reference.split(",");
  for (const r of refs)
    if (!["pytorch", "llamacpp", "none"].includes(r))
      throw new UsageError(`--reference ${JSON.stringify(o.reference)}: expected pytorch or none`);
  const threads = getNumThreads();
  console.error(
    `bench train: ${preset}, batch ${batch}, ${textTokens} text tokens, ${steps} timed steps, ${threads} threads`,
  );
  const mine = ours(preset, batch, textTokens, steps, o.gradientCheckpointing === true);
  console.error(JSON.stringify(mine));
  const result: Record<string, unknown> = { bench: "train", preset, threads, tinyllava: mine };
  if (refs.includes("pytorch")) {
    const pt: Record<string, unknown> = pytorch(root, preset, batch, textTokens, steps, threads);
    result.pytorch = pt;
    if (typeof pt.samples_per_s === "number" && typeof pt.peak_rss_mb === "number")
      result.ratios = {
        samples_per_s_vs_pytorch: round(mine.samples_per_s / pt.samples_per_s),
        peak_rss_vs_pytorch: round(mine.peak_rss_mb / pt.peak_rss_mb),
      };
  }
  console.log(JSON.stringify(result));
}
