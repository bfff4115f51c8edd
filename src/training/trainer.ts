// The training loop of TinyLLaVA's recipes: builds or loads the model, sets what trains, reads the LLaVA data with the
// stage's template, and runs AdamW (Factory's parameter groups) on a cosine schedule with warm-up, gradient
// accumulation, clipping, optional bfloat16 mixed precision and per-layer activation recomputation. Checkpoints
// (trainable weights, optimiser moments, schedule position, data order, RNG) are written atomically; resuming from
// one continues exactly as the uninterrupted run would (same batches, same dropout, same loss curve).
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../errors.js";
import { loadTinyLlava, readJson, tinyLlavaFromParts } from "../models/load.js";
import type { TinyLlava } from "../models/tinyllava.js";
import { RecomputeTape } from "../nn/recompute.js";
import { ImageProcessor } from "../processing/image.js";
import { defaultTemplate, TEMPLATES, type TemplateName } from "../processing/templates.js";
import { TinyTokenizer } from "../processing/tokenizer.js";
import { noGrad } from "../torch/autograd.js";
import { manualSeed } from "../torch/creation.js";
import { keep, tidy } from "../torch/memory.js";
import { AdamW, clipGradNorm, LRScheduler } from "../torch/optim.js";
import { SafetensorsFile, saveSafetensors } from "../torch/safetensors.js";
import type { Tensor } from "../torch/tensor.js";
import type { TrainingArguments } from "./args.js";
import {
  batchToTensors,
  DataLoader,
  factorySpecialIds,
  LengthGroupedSampler,
  LlavaDataset,
  type LoaderState,
  RandomSampler,
} from "./data/index.js";
import { writeLossCurve } from "./plot.js";
import { saveModelFolder, writeFolderAtomically } from "./save.js";
import { applyTuneTypes, type NamedGroup, parameterGroups } from "./tune.js";

export interface StepLog {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  grad_norm: number;
  samples: number;
  tokens: number;
  samples_per_s: number;
  elapsed_s: number;
}

export interface TrainHooks {
  /** after every optimiser step */
  onStep?: (log: StepLog, total: number) => void;
  /** messages (loading, saving, skipped samples) */
  onMessage?: (msg: string) => void;
  /** stop after this many steps of this run (tests: simulate an interruption) */
  stopAfter?: number;
  /** the model to train instead of building one from the arguments (its tokenizer/processor folders given) */
  model?: { model: TinyLlava; tokenizerDir: string; processorDir?: string | null };
}

export interface TrainResult {
  outputDir: string;
  steps: number;
  totalSteps: number;
  logs: StepLog[];
  finalLoss: number;
  /** samples skipped with skip_mismatched */
  skipped: number;
  model: TinyLlava;
  template: TemplateName;
  files: string[];
}

interface TrainerState {
  global_step: number;
  total_steps: number;
  loader: LoaderState;
  log_history: StepLog[];
  args: TrainingArguments;
  elapsed_s: number;
}

const now = () => performance.now();

function need<T>(v: T | null | undefined, name: string): T {
  if (v === null || v === undefined) throw new ConfigError(`${name} is required`);
  return v;
}

/** The model, its tokenizer folder and processor folder, as the arguments describe them. */
export function buildModel(a: TrainingArguments): {
  model: TinyLlava;
  tokenizerDir: string;
  processorDir: string | null;
} {
  if (a.pretrained_model_path) {
    const dir = a.pretrained_model_path;
    const model = loadTinyLlava(dir);
    const tok =
      a.tokenizer_name_or_path ??
      (existsSync(join(dir, "tokenizer.json")) || existsSync(join(dir, "vocab.json"))
        ? dir
        : join(dir, "language_model"));
    return {
      model,
      tokenizerDir: tok,
      processorDir: existsSync(join(dir, "preprocessor_config.json")) ? dir : a.vision_tower,
    };
  }
  const llm = need(a.model_name_or_path, "model_name_or_path (or pretrained_model_path)");
  const cfg = readJson(join(llm, "config.json"));
  if (cfg.model_type === "tinyllava" || cfg.model_type === "llava") {
    return { model: loadTinyLlava(llm), tokenizerDir: a.tokenizer_name_or_path ?? llm, processorDir: llm };
  }
  const vision = need(a.vision_tower, "vision_tower (with an LLM folder as model_name_or_path)");
  const model = tinyLlavaFromParts(llm, vision, {
    connectorType: a.connector_type,
    visionFeatureLayer: a.mm_vision_select_layer,
    visionFeatureSelectStrategy: a.mm_vision_select_feature,
    imageAspectRatio: a.image_aspect_ratio,
    numQueries: a.num_queries,
    numResamplerLayers: a.num_resampler_layers,
  });
  return { model, tokenizerDir: a.tokenizer_name_or_path ?? llm, processorDir: vision };
}

function templateFor(a: TrainingArguments, model: TinyLlava): Exclude<TemplateName, "raw"> {
  const t =
    a.conv_version ??
    (a.stage === "pretrain"
      ? "pretrain"
      : (model.config.conv_version ?? defaultTemplate(model.config.text.model_type)));
  if (t !== "pretrain" && !(t in TEMPLATES))
    throw new ConfigError(`conv_version "${t}": expected pretrain or one of ${Object.keys(TEMPLATES).join(", ")}`);
  return t as Exclude<TemplateName, "raw">;
}

/** The newest checkpoint-N folder in a directory, or null. */
export function lastCheckpoint(dir: string): string | null {
  if (!existsSync(dir)) return null;
  const steps = readdirSync(dir)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null && existsSync(join(dir, m[0], "trainer_state.json")))
    .map((m) => Number(m[1]))
    .sort((x, y) => x - y);
  const last = steps[steps.length - 1];
  return last === undefined ? null : join(dir, `checkpoint-${last}`);
}

/** bfloat16 mixed precision: the model computes in bfloat16; float32 master copies of the trainable parameters take
 * the (float32-cast) gradients and the optimiser's updates, and are copied back into the model after each step. */
class MasterWeights {
  readonly masters: Tensor[];
  constructor(readonly params: Tensor[]) {
    this.masters = noGrad(() => params.map((p) => keep(p.to("float32").detach().requiresGrad_(true))));
  }
  gradsToMasters(): void {
    noGrad(() => {
      this.params.forEach((p, i) => {
        const g = p.grad;
        const m = this.masters[i] as Tensor;
        m.grad = g ? keep(g.to("float32")) : null;
        p.grad = null;
        g?.dispose();
      });
    });
  }
  mastersToParams(): void {
    noGrad(() =>
      tidy(() => {
        this.params.forEach((p, i) => {
          p.copy_(this.masters[i] as Tensor);
        });
      }),
    );
  }
  dispose(): void {
    for (const m of this.masters) m.dispose();
  }
}

export async function train(a: TrainingArguments, hooks: TrainHooks = {}): Promise<TrainResult> {
  const say = hooks.onMessage ?? (() => {});
  const outputDir = need(a.output_dir, "output_dir");
  manualSeed(a.seed);
  const built = hooks.model ?? buildModel(a);
  const { model, tokenizerDir } = built;
  const processorDir = built.processorDir ?? null;
  model.train();
  const tokenizer = TinyTokenizer.fromFolder(tokenizerDir);
  const template = templateFor(a, model);
  const special = factorySpecialIds(model.config.text.model_type, tokenizer);
  const images = ImageProcessor.fromFolder(processorDir ?? tokenizerDir, model.config.vision, a.image_aspect_ratio);
  const dataset = new LlavaDataset({
    dataPath: need(a.data_path, "data_path"),
    imageFolder: a.image_folder ?? undefined,
    tokenizer,
    template,
    imageProcessor: images,
    modelMaxLength: a.model_max_length,
    padTokenId: special.padTokenId,
    eosTokenId: special.eosTokenId,
    skipMismatched: a.skip_mismatched,
  });
  if (a.verify_images) await dataset.verifyImages();
  // every sample's label mask is checked before the first step (a mismatch is an error naming the sample, unless
  // skip_mismatched, which counts it)
  for (let i = 0; i < dataset.length; i++) dataset.encode(i);
  say(`data: ${dataset.length} samples from ${a.data_path} (template ${template})`);

  applyTuneTypes(model, a);
  if (a.training_recipe === "lora") {
    const { applyLoraRecipe } = await import("./lora-recipe.js");
    applyLoraRecipe(model, a);
  }
  if (a.bf16) model.to("bfloat16");
  const groups: NamedGroup[] = parameterGroups(model, a);
  const trainable = groups.flatMap((g) => g.params);
  const trainableNames = groups.flatMap((g) => g.names);
  if (trainable.length === 0) throw new ConfigError("nothing to train: every component is frozen");
  const master = a.bf16 ? new MasterWeights(trainable) : null;
  const optParams = master ? master.masters : trainable;
  let k = 0;
  const optGroups = groups.map((g) => ({ ...g, params: g.params.map(() => optParams[k++] as Tensor) }));
  const opt = new AdamW(optGroups, {
    lr: a.learning_rate,
    betas: [a.adam_beta1, a.adam_beta2],
    eps: a.adam_epsilon,
    weightDecay: a.weight_decay,
  });

  const sampler = a.group_by_modality_length
    ? new LengthGroupedSampler(dataset.modalityLengths(), {
        batchSize: a.per_device_train_batch_size,
        seed: a.seed,
        groupByModality: true,
      })
    : new RandomSampler(dataset.length, { seed: a.seed, shuffle: true });
  const loader = new DataLoader(dataset, sampler, {
    batchSize: a.per_device_train_batch_size,
    collate: { padTokenId: special.padTokenId, eosTokenId: special.eosTokenId, maxLength: a.model_max_length },
  });
  // transformers: update steps per epoch = max(batches // accumulation, 1); total = ceil(epochs × that)
  const perEpoch = Math.max(Math.floor(loader.batchesPerEpoch / a.gradient_accumulation_steps), 1);
  const totalSteps = a.max_steps > 0 ? a.max_steps : Math.ceil(a.num_train_epochs * perEpoch);
  const sched = new LRScheduler(opt, a.lr_scheduler_type, totalSteps, { warmupRatio: a.warmup_ratio });

  let step = 0;
  let logs: StepLog[] = [];
  let elapsedBefore = 0;
  const resumeFrom = a.resume_from_checkpoint === "last" ? lastCheckpoint(outputDir) : a.resume_from_checkpoint;
  if (a.resume_from_checkpoint === "last" && !resumeFrom) say(`no checkpoint in ${outputDir}: starting from step 0`);
  if (resumeFrom) {
    const st = loadCheckpoint(resumeFrom, trainableNames, optParams, opt);
    if (st.total_steps !== totalSteps)
      throw new ConfigError(
        `${resumeFrom}: saved for ${st.total_steps} total steps; these arguments give ${totalSteps}`,
      );
    step = st.global_step;
    logs = st.log_history;
    elapsedBefore = st.elapsed_s;
    loader.loadState(st.loader);
    sched.setStep(step);
    if (master) master.mastersToParams();
    say(`resumed from ${resumeFrom} at step ${step}/${totalSteps}`);
  }

  const metricsPath = join(outputDir, "metrics.jsonl");
  mkdirSync(outputDir, { recursive: true });
  if (!resumeFrom) writeFileSync(metricsPath, "");
  const t0 = now();
  let ranThisRun = 0;
  try {
    while (step < totalSteps) {
      if (hooks.stopAfter !== undefined && ranThisRun >= hooks.stopAfter) break;
      // dropout (and anything random in the step) depends only on the seed and the step: resuming reproduces it
      manualSeed(a.seed * 1_000_003 + step + 1);
      const ts = now();
      let lossSum = 0;
      let samples = 0;
      let tokens = 0;
      for (let micro = 0; micro < a.gradient_accumulation_steps; micro++) {
        let b = await loader.next();
        if (!b) b = await loader.next(); // an epoch ended: the next one starts
        if (!b) throw new ConfigError(`${a.data_path}: no usable samples`);
        const batch = b.batch;
        samples += batch.ids.length;
        tokens += batch.attentionMask.flat().reduce((x, y) => x + y, 0);
        const loss = tidy(() => {
          const t = batchToTensors(batch);
          const tape = a.gradient_checkpointing ? new RecomputeTape() : null;
          const run = () =>
            model.forward({
              inputIds: t.inputIds,
              attentionMask: t.attentionMask,
              labels: t.labels,
              pixelValues: t.pixelValues,
            });
          const out = tape ? tape.record(run) : run();
          const l = out.loss as Tensor;
          const scaled = l.div(a.gradient_accumulation_steps);
          if (tape) tape.backward(scaled);
          else scaled.backward();
          return l.item();
        });
        if (!Number.isFinite(loss))
          throw new ConfigError(`step ${step + 1}: the loss is ${loss} (diverged; lower learning_rate?)`);
        lossSum += loss;
      }
      if (master) master.gradsToMasters();
      const gradNorm = a.max_grad_norm > 0 ? clipGradNorm(optParams, a.max_grad_norm) : Number.NaN;
      const lr = opt.getLr(0);
      opt.step();
      opt.zeroGrad();
      if (master) master.mastersToParams();
      sched.step();
      step++;
      ranThisRun++;
      const dt = (now() - ts) / 1000;
      const log: StepLog = {
        step,
        epoch: loader.state().epoch + loader.state().position / Math.max(1, loader.state().size),
        loss: lossSum / a.gradient_accumulation_steps,
        lr,
        grad_norm: gradNorm,
        samples,
        tokens,
        samples_per_s: samples / dt,
        elapsed_s: elapsedBefore + (now() - t0) / 1000,
      };
      logs.push(log);
      if (step % a.logging_steps === 0 || step === totalSteps) appendFileSync(metricsPath, `${JSON.stringify(log)}\n`);
      hooks.onStep?.(log, totalSteps);
      if (a.save_steps > 0 && step % a.save_steps === 0 && step < totalSteps) {
        const dir = join(outputDir, `checkpoint-${step}`);
        saveCheckpoint(
          dir,
          {
            global_step: step,
            total_steps: totalSteps,
            loader: loader.state(),
            log_history: logs,
            args: a,
            elapsed_s: log.elapsed_s,
          },
          trainableNames,
          optParams,
          opt,
        );
        pruneCheckpoints(outputDir, a.save_total_limit);
        say(`saved ${dir}`);
      }
    }
    const files: string[] = [];
    if (step >= totalSteps) {
      const overrides = master ? new Map(trainableNames.map((n, i) => [n, master.masters[i] as Tensor])) : undefined;
      if (a.training_recipe === "lora") {
        const { saveLoraOutputs } = await import("./lora-recipe.js");
        files.push(...saveLoraOutputs(model, outputDir, a, tokenizerDir, processorDir, overrides));
      } else {
        saveModelFolderKeepingLogs(model, outputDir, {
          tokenizerDir,
          processorDir,
          components: template === "pretrain",
          overrides,
          config: {
            conv_version: template === "pretrain" ? (model.config.conv_version ?? null) : template,
            tokenizer_model_max_length: a.model_max_length,
            pad_token_id: special.padTokenId,
            tune_type_llm: a.tune_type_llm,
            tune_type_vision_tower: a.tune_type_vision_tower,
            tune_type_connector: a.tune_type_connector,
            tune_vision_tower_from_layer: a.tune_vision_tower_from_layer,
          },
        });
      }
      files.push(
        ...(await writeLossCurve(
          join(outputDir, "loss_curve"),
          `${template === "pretrain" ? "pretrain" : "finetune"} loss`,
          logs.map((l) => [l.step, l.loss]),
        )),
      );
      writeFileSync(
        join(outputDir, "trainer_state.json"),
        `${JSON.stringify({ global_step: step, total_steps: totalSteps, log_history: logs }, null, 1)}\n`,
      );
      say(`saved the model to ${outputDir}`);
    }
    const skipped = dataset.stats().mismatched.length;
    if (skipped > 0) say(`skipped ${skipped} sample(s) whose label mask did not match their tokens (skip_mismatched)`);
    return {
      outputDir,
      steps: step,
      totalSteps,
      logs,
      finalLoss: logs[logs.length - 1]?.loss ?? Number.NaN,
      skipped,
      model,
      template,
      files,
    };
  } finally {
    opt.dispose();
    master?.dispose();
  }
}

/** The final model goes to output_dir itself, which also holds metrics.jsonl and the checkpoints: write the model
 * files through a temporary folder and move them in. */
function saveModelFolderKeepingLogs(
  model: TinyLlava,
  outputDir: string,
  o: Parameters<typeof saveModelFolder>[2],
): void {
  const stage = join(outputDir, ".final");
  saveModelFolder(model, stage, o);
  for (const f of readdirSync(stage)) {
    rmSync(join(outputDir, f), { recursive: true, force: true });
    // rename is atomic per file on one filesystem
    renameSync(join(stage, f), join(outputDir, f));
  }
  rmSync(stage, { recursive: true, force: true });
}

function saveCheckpoint(dir: string, state: TrainerState, names: string[], params: Tensor[], opt: AdamW): void {
  writeFolderAtomically(dir, (tmp) => {
    saveSafetensors(join(tmp, "trainable.safetensors"), new Map(names.map((n, i) => [n, params[i] as Tensor])), {
      format: "pt",
    });
    const st = opt.stateDict();
    const moments = new Map<string, Tensor>();
    const steps: Record<string, number> = {};
    st.forEach((s, i) => {
      if (!s) return;
      moments.set(`${names[i]}.exp_avg`, s.expAvg);
      moments.set(`${names[i]}.exp_avg_sq`, s.expAvgSq);
      steps[names[i] as string] = s.step;
    });
    saveSafetensors(join(tmp, "optimizer.safetensors"), moments, { format: "pt" });
    for (const s of st) {
      s?.expAvg.dispose();
      s?.expAvgSq.dispose();
    }
    writeFileSync(
      join(tmp, "trainer_state.json"),
      `${JSON.stringify({ ...state, optimizer_steps: steps }, null, 1)}\n`,
    );
  });
}

function loadCheckpoint(dir: string, names: string[], params: Tensor[], opt: AdamW): TrainerState {
  const statePath = join(dir, "trainer_state.json");
  if (!existsSync(statePath)) throw new ConfigError(`${dir}: not a checkpoint (no trainer_state.json)`);
  const state = JSON.parse(readFileSync(statePath, "utf8")) as TrainerState & {
    optimizer_steps: Record<string, number>;
  };
  const w = new SafetensorsFile(join(dir, "trainable.safetensors"));
  const o = new SafetensorsFile(join(dir, "optimizer.safetensors"));
  try {
    const have = new Set(w.keys());
    const missing = names.filter((n) => !have.has(n));
    if (missing.length || have.size !== names.length)
      throw new ConfigError(
        `${dir}: its trainable parameters do not match this run's (missing ${missing.slice(0, 5).join(", ") || "none"}; ${have.size} saved, ${names.length} trainable): same recipe arguments are needed to resume`,
      );
    noGrad(() =>
      names.forEach((n, i) => {
        const v = w.get(n);
        (params[i] as Tensor).copy_(v);
        v.dispose();
      }),
    );
    const st = names.map((n) => {
      const s = state.optimizer_steps[n];
      if (s === undefined) return null;
      return { step: s, expAvg: o.get(`${n}.exp_avg`), expAvgSq: o.get(`${n}.exp_avg_sq`) };
    });
    opt.loadStateDict(st);
    for (const s of st) {
      s?.expAvg.dispose();
      s?.expAvgSq.dispose();
    }
  } finally {
    w.close();
    o.close();
  }
  return state;
}

function pruneCheckpoints(dir: string, limit: number): void {
  if (limit <= 0) return;
  const steps = readdirSync(dir)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((x, y) => x - y);
  for (const s of steps.slice(0, Math.max(0, steps.length - limit)))
    rmSync(join(dir, `checkpoint-${s}`), { recursive: true, force: true });
}
