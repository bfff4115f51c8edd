// `tinyllava demo`: the main job on a built-in default, offline. Generates a synthetic visual-question dataset
// (pictures of coloured shapes; captions for stage 1; questions about colour, shape, count and position for stage 2;
// a held-out split), learns a tokenizer on it, builds a tiny TinyLLaVA from scratch (SigLIP-like tower, Qwen2-like
// LLM, mlp2x_gelu), runs the two stages with the trainer, evaluates held-out accuracy with batched generation, shows a
// few answers, and leaves a model folder that `generate`, `chat` and `serve` load. The last line is JSON with the
// accuracy and the wall time; the exit code is 1 when the accuracy misses the target.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseTinyLlavaConfig } from "../config/index.js";
import { TinyLlava } from "../models/tinyllava.js";
import { VisionLanguagePipeline } from "../pipeline/index.js";
import { resolveArguments } from "../training/args.js";
import {
  type EvalQuestion,
  evaluateBatched,
  formatReport,
  initDemoWeights,
  prepareDemo,
} from "../training/demo/index.js";
import { type StepLog, train } from "../training/trainer.js";
import { int, num, UsageError } from "./options.js";

export interface DemoFlags {
  out: string;
  seed: string;
  quick?: boolean;
  trainImages?: string;
  pretrainSteps?: string;
  finetuneSteps?: string;
  target?: string;
  force?: boolean;
}

interface Settings {
  trainImages: number;
  evalImages: number;
  pretrainSteps: number;
  finetuneSteps: number;
  batch: number;
  target: number;
}

const DEFAULT: Settings = {
  trainImages: 6000,
  evalImages: 200,
  // measured on the 2-core machine: 300 + 1,900 steps took 511 s in all (91.8%); 400 + 2,200 took 629 s (95.0%)
  pretrainSteps: 300,
  finetuneSteps: 1900,
  batch: 16,
  target: 0.9,
};
// CI's short run: learns well above chance (≈ 25% for these questions), in about a minute
const QUICK: Settings = {
  trainImages: 600,
  evalImages: 40,
  pretrainSteps: 200,
  finetuneSteps: 220,
  batch: 16,
  target: 0.4,
};

function progress(label: string) {
  let last = 0;
  return (l: StepLog, total: number) => {
    const now = performance.now();
    if (l.step === 1 || l.step === total || now - last > 15000) {
      last = now;
      const eta = ((total - l.step) * l.elapsed_s) / Math.max(1, l.step);
      console.log(
        `  ${label} step ${l.step}/${total}  loss ${l.loss.toFixed(4)}  lr ${l.lr.toExponential(2)}  ${l.samples_per_s.toFixed(1)} samples/s  ETA ${Math.round(eta)}s`,
      );
    }
  };
}

export async function demo(o: DemoFlags): Promise<void> {
  const t0 = performance.now();
  const base = o.quick ? QUICK : DEFAULT;
  const s: Settings = {
    ...base,
    trainImages: o.trainImages !== undefined ? int("--train-images", o.trainImages, { min: 10 }) : base.trainImages,
    pretrainSteps:
      o.pretrainSteps !== undefined ? int("--pretrain-steps", o.pretrainSteps, { min: 1 }) : base.pretrainSteps,
    finetuneSteps:
      o.finetuneSteps !== undefined ? int("--finetune-steps", o.finetuneSteps, { min: 1 }) : base.finetuneSteps,
    target: o.target !== undefined ? num("--target", o.target, { min: 0, max: 1 }) : base.target,
  };
  const seed = int("--seed", o.seed, { min: 0 });
  const dir = resolve(o.out);
  if (existsSync(dir) && !o.force && existsSync(join(dir, "model", "model.safetensors")))
    throw new UsageError(`--out ${dir} already holds a demo model; pass --force to replace it, or another --out`);
  rmSync(dir, { recursive: true, force: true });

  console.log(`tinyllava demo → ${dir}`);
  const prep = await prepareDemo({ dir, trainImages: s.trainImages, evalImages: s.evalImages, seed });
  const { files, modelDir } = prep;
  console.log(
    `data: ${prep.data.images.length} pictures of coloured shapes (${s.trainImages} train, ${s.evalImages} held out); ` +
      `${prep.data.pretrain.length} captions, ${prep.data.finetune.length} question conversations; ` +
      `tokenizer of ${prep.config.vocab_size} tokens (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );

  const model = new TinyLlava(parseTinyLlavaConfig(prep.config, join(modelDir, "config.json")), "float32");
  initDemoWeights(model, { seed });
  const c = model.config;
  console.log(
    `model: SigLIP-like tower (${c.vision.hidden_size} wide, ${c.vision.image_size}px pictures in ${c.vision.patch_size}px patches, hidden_states[${c.vision_feature_layer}] of ${c.vision.num_hidden_layers} layer(s)) + ` +
      `mlp2x_gelu + Qwen2-like LLM (${c.text.num_hidden_layers} layers, ${c.text.hidden_size} wide): ${(model.numParameters() / 1e6).toFixed(2)}M parameters, from scratch`,
  );
  const common = {
    image_folder: files.imageFolder,
    per_device_train_batch_size: s.batch,
    weight_decay: 0,
    warmup_ratio: 0.03,
    lr_scheduler_type: "cosine",
    max_grad_norm: 1,
    seed,
    model_max_length: 256,
    learning_rate: 1e-3,
    tune_type_vision_tower: "full",
    // the tower learns at a fifth of the rate: at 1e-3 Adam inflates the patch projection until the objects' colour
    // and form drown their position embedding (0.5% of the connector output's variance between objects), and place
    // questions stayed near bag-of-objects level (see DEMO_DATA_DEFAULTS)
    vision_tower_lr: 2e-4,
    progress: false,
    verify_images: false, // the demo wrote them a moment ago
  };
  const stage = (label: string, from: TinyLlava, flags: Record<string, unknown>) =>
    train(resolveArguments({ flags: { ...common, ...flags } }), {
      model: { model: from, tokenizerDir: modelDir, processorDir: modelDir },
      onStep: progress(label),
    });
  // Stage 1 (TinyLLaVA's pretrain: captions, template `pretrain`). Factory freezes a pretrained LLM and tower here;
  // ours are random, so all three parts learn from the captions.
  console.log(`stage 1 — pretrain on captions (${s.pretrainSteps} steps)`);
  const pre = await stage("pretrain", model, {
    stage: "pretrain",
    data_path: files.pretrain,
    output_dir: join(dir, "pretrain"),
    max_steps: s.pretrainSteps,
    tune_type_llm: "full",
  });
  // Stage 2 (finetune: questions with the qwen2_base template; everything trains, as the tower is ours too).
  console.log(`stage 2 — finetune on questions (${s.finetuneSteps} steps)`);
  const ft = await stage("finetune", pre.model, {
    stage: "finetune",
    data_path: files.finetune,
    output_dir: join(dir, "model"),
    max_steps: s.finetuneSteps,
    conv_version: "qwen2_base",
  });
  const trainS = (performance.now() - t0) / 1000;

  // held-out evaluation through the saved folder, as a user would load it
  const pipe = VisionLanguagePipeline.load(modelDir);
  const questions = JSON.parse(readFileSync(files.evalAnswers, "utf8")) as EvalQuestion[];
  const report = await evaluateBatched(
    questions,
    async (items) =>
      (
        await pipe.generate(
          items.map((it) => ({ prompt: pipe.questionPrompt(it.question, true), images: [it.imagePath] })),
          // the longest reply, "The shape at the bottom is an orange triangle." + EOS, is 11 tokens
          { maxNewTokens: 16 },
        )
      ).map((a) => a.text),
    { imageFolder: files.imageFolder, batchSize: 32 },
  );
  console.log(formatReport(report));
  console.log("a few held-out questions:");
  for (const r of report.results.slice(0, 6)) {
    console.log(
      `  [${r.image}] Q: ${r.question}  A: ${JSON.stringify(r.prediction)}  (expected ${r.answer})${r.correct ? "" : "  ✗"}`,
    );
  }
  const wall = (performance.now() - t0) / 1000;
  console.log(
    `model folder: ${modelDir}\n  try: tinyllava generate -m ${modelDir} -i ${join(files.imageFolder, questions[0]?.image ?? "")} -p "${questions[0]?.question ?? "What color is the circle?"}"`,
  );
  ft.model.dispose();
  pipe.dispose();
  const ok = report.accuracy >= s.target;
  console.log(
    JSON.stringify({
      accuracy: Math.round(report.accuracy * 10000) / 10000,
      per_type: Object.fromEntries(
        Object.entries(report.byType).map(([k, v]) => [k, Math.round(v.accuracy * 10000) / 10000]),
      ),
      target: s.target,
      passed: ok,
      wall_time_s: Math.round(wall * 10) / 10,
      train_time_s: Math.round(trainS * 10) / 10,
      model_dir: modelDir,
    }),
  );
  if (!ok) process.exitCode = 1;
}
