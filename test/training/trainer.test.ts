// The trainer: recipes (what trains), parameter groups, resume equality, activation recomputation, mixed precision,
// outputs that load back (full folder and Factory's component folders), metrics and the loss curve, bad arguments.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { loadTinyLlava } from "../../src/models/load.js";
import { noGrad, SafetensorsFile, tensor, tidy } from "../../src/torch/index.js";
import { argumentsHelp, resolveArguments, type TrainingArguments } from "../../src/training/args.js";
import { train } from "../../src/training/trainer.js";
import { applyTuneTypes, noDecayNames, parameterGroups } from "../../src/training/tune.js";
import { FIXTURES } from "../helpers.js";

const MODEL = join(FIXTURES, "reference", "models", "tinyllava-siglip-qwen2");
const DATA = join(FIXTURES, "training", "llava_small.json");
const PRETRAIN_DATA = join(FIXTURES, "training", "llava_pretrain.json");
const IMAGES = join(FIXTURES, "reference", "images");
const tmp = mkdtempSync(join(tmpdir(), "tinyllava-trainer-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function args(over: Record<string, unknown>): TrainingArguments {
  return resolveArguments({
    flags: {
      stage: "finetune",
      pretrained_model_path: MODEL,
      data_path: DATA,
      image_folder: IMAGES,
      per_device_train_batch_size: 2,
      gradient_accumulation_steps: 2,
      learning_rate: 1e-3,
      max_steps: 6,
      progress: false,
      ...over,
    },
  });
}

describe("recipes", () => {
  test("pretrain trains the connector only, with lr 1e-3 and the pretrain template", async () => {
    const a = args({ stage: "pretrain", data_path: PRETRAIN_DATA, output_dir: join(tmp, "pre"), max_steps: 2 });
    assert.equal(a.learning_rate, 1e-3);
    assert.equal(a.conv_version, "pretrain");
    const r = await train(a);
    const trainable = [...r.model.namedParameters()].filter(([, p]) => p.requiresGrad).map(([n]) => n);
    assert.ok(trainable.length > 0 && trainable.every((n) => n.startsWith("connector.")), trainable.join(", "));
    assert.equal(r.template, "pretrain");
    // Factory's component folders beside the full folder, each loadable
    for (const d of ["language_model", "vision_tower", "connector"])
      assert.ok(existsSync(join(r.outputDir, d, "model.safetensors")), d);
    const full = loadTinyLlava(r.outputDir);
    full.dispose();
    r.model.dispose();
  });

  test("finetune trains LLM + connector, vision frozen, lr 2e-5 by default; partially-tune from a layer", () => {
    const a = resolveArguments({ flags: { stage: "finetune" } });
    assert.equal(a.learning_rate, 2e-5);
    assert.deepEqual([a.tune_type_llm, a.tune_type_vision_tower, a.tune_type_connector], ["full", "frozen", "full"]);
    const explicit = resolveArguments({ flags: { stage: "finetune", learningRate: 5e-5 } });
    assert.equal(explicit.learning_rate, 5e-5, "explicit arguments win over the stage preset");
  });

  test("Factory's parameter groups: no weight decay on biases and norms; the connector's own lr", () => {
    const model = loadTinyLlava(MODEL);
    const a = args({
      weight_decay: 0.1,
      mm_projector_lr: 2e-4,
      tune_type_vision_tower: "partially-tune",
      tune_vision_tower_from_layer: 2,
    });
    applyTuneTypes(model, a);
    const groups = parameterGroups(model, a);
    const byName = new Map(groups.map((g) => [g.name, g]));
    const nd = noDecayNames(model);
    for (const g of groups) {
      for (const n of g.names) {
        assert.equal(nd.has(n), g.weightDecay === 0, `${n} in ${g.name}`);
        if (/(\.bias|norm.*\.weight|layernorm.*\.weight)$/.test(n)) assert.equal(g.weightDecay, 0, n);
      }
    }
    assert.equal(byName.get("connector:decay")?.lr, 2e-4);
    assert.equal(byName.get("model:decay")?.lr, 1e-3);
    const vision = groups.flatMap((g) => g.names).filter((n) => n.startsWith("vision_tower."));
    assert.ok(vision.length > 0 && vision.every((n) => /encoder\.layers\.2\./.test(n)), vision.join(", "));
    model.dispose();
  });
});

describe("checkpoints and resume", () => {
  test("resuming from a checkpoint gives the uninterrupted loss curve and weights", async () => {
    const full = await train(args({ output_dir: join(tmp, "full"), save_steps: 2 }));
    const part = await train(args({ output_dir: join(tmp, "part"), save_steps: 2 }), { stopAfter: 3 });
    assert.equal(part.steps, 3);
    assert.ok(existsSync(join(tmp, "part", "checkpoint-2")));
    assert.ok(!existsSync(join(tmp, "part", "model.safetensors")), "no final model from an interrupted run");
    const resumed = await train(args({ output_dir: join(tmp, "part"), save_steps: 2, resume_from_checkpoint: "last" }));
    assert.deepEqual(
      resumed.logs.map((l) => l.loss),
      full.logs.map((l) => l.loss),
    );
    assert.deepEqual(
      resumed.logs.map((l) => l.lr),
      full.logs.map((l) => l.lr),
    );
    const a = new SafetensorsFile(join(tmp, "full", "model.safetensors"));
    const b = new SafetensorsFile(join(tmp, "part", "model.safetensors"));
    for (const k of a.keys()) assert.deepEqual(b.get(k).toArray(), a.get(k).toArray(), k);
    a.close();
    b.close();
    // save_total_limit 1: only the newest checkpoint is kept
    assert.ok(!existsSync(join(tmp, "full", "checkpoint-2")) && existsSync(join(tmp, "full", "checkpoint-4")));
    const metrics = readFileSync(join(tmp, "full", "metrics.jsonl"), "utf8")
      .trim()
      .split("\n");
    assert.equal(metrics.length, 6);
    const png = readFileSync(join(tmp, "full", "loss_curve.png"));
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG");
    full.model.dispose();
    part.model.dispose();
    resumed.model.dispose();
  });

  test("the finetune output loads with loadTinyLlava and computes what the trained model computes", async () => {
    const r = await train(args({ output_dir: join(tmp, "ft"), max_steps: 2 }));
    const back = loadTinyLlava(join(tmp, "ft"));
    const ids = tensor([[1, 2, 3, 4, 5]], { dtype: "int64" });
    const run = (m: typeof back) => tidy(() => noGrad(() => m.forward({ inputIds: ids }).logits.toArray()));
    r.model.eval();
    assert.deepEqual(run(back), run(r.model));
    // the key layout of Factory's checkpoints (the fixture model is one)
    const mine = new SafetensorsFile(join(tmp, "ft", "model.safetensors"));
    const factory = new SafetensorsFile(join(MODEL, "model.safetensors"));
    assert.deepEqual(mine.keys().sort(), factory.keys().sort());
    mine.close();
    factory.close();
    const cfg = JSON.parse(readFileSync(join(tmp, "ft", "config.json"), "utf8"));
    assert.equal(cfg.model_type, "tinyllava");
    assert.equal(cfg.conv_version, "qwen2_base");
    assert.equal(cfg.tune_type_llm, "full");
    back.dispose();
    r.model.dispose();
  });
});

describe("recomputation and mixed precision", () => {
  test("gradient checkpointing gives the same training as without", async () => {
    const plain = await train(args({ output_dir: join(tmp, "nogc"), max_steps: 3 }));
    const gc = await train(args({ output_dir: join(tmp, "gc"), max_steps: 3, gradient_checkpointing: true }));
    plain.logs.forEach((l, i) => {
      const g = gc.logs[i];
      assert.ok(g && Math.abs(g.loss - l.loss) <= 1e-5 * Math.abs(l.loss), `step ${i + 1}: ${g?.loss} vs ${l.loss}`);
      assert.ok(
        g && Math.abs(g.grad_norm - l.grad_norm) <= 1e-4 * l.grad_norm,
        `grad norm ${g?.grad_norm} vs ${l.grad_norm}`,
      );
    });
    plain.model.dispose();
    gc.model.dispose();
  });

  test("bfloat16 mixed precision trains close to float32 and saves float32 master weights", async () => {
    const f32 = await train(args({ output_dir: join(tmp, "f32"), max_steps: 3 }));
    const bf = await train(args({ output_dir: join(tmp, "bf16"), max_steps: 3, bf16: true }));
    bf.logs.forEach((l, i) => {
      const ref = f32.logs[i]?.loss as number;
      assert.ok(Math.abs(l.loss - ref) < 0.02 * ref, `step ${i + 1}: ${l.loss} vs ${ref}`);
    });
    const st = new SafetensorsFile(join(tmp, "bf16", "model.safetensors"));
    const k = st.keys().find((n) => n.startsWith("connector."));
    assert.equal(st.get(k as string).dtype, "float32");
    st.close();
    f32.model.dispose();
    bf.model.dispose();
  });
});

describe("arguments", () => {
  test("unknown or invalid arguments are errors naming the argument and where it came from", () => {
    assert.throws(
      () => resolveArguments({ flags: { learning_rat: 1 } }),
      /command line: unknown argument "learning_rat"/,
    );
    assert.throws(
      () => resolveArguments({ flags: { learning_rate: "fast" } }),
      /learning_rate is "fast"; expected a number/,
    );
    assert.throws(() => resolveArguments({ flags: { max_steps: 1.5 } }), /max_steps is 1.5; expected an integer/);
    assert.throws(
      () => resolveArguments({ flags: { tune_type_llm: "some" } }),
      /tune_type_llm is "some"; expected one of frozen, full, lora, partially-tune/,
    );
    assert.throws(
      () => resolveArguments({ recipe: { warmup_ratio: 2 }, recipePath: "recipe.yaml" }),
      /recipe.yaml: warmup_ratio is 2; expected a number in \[0, 1\]/,
    );
    assert.match(argumentsHelp(), /--tune-vision-tower-from-layer/);
    assert.match(argumentsHelp(), /--mm-projector-lr/);
  });

  test("bad data stops before the first step with the file and sample named", async () => {
    await assert.rejects(
      train(args({ output_dir: join(tmp, "bad"), data_path: join(tmp, "missing.json") })),
      /missing\.json/,
    );
  });
});

describe("LoRA recipe", () => {
  test("lora on the LLM: adapters on every Linear but lm_head, a PEFT adapter folder that loads back merged", async () => {
    const out = join(tmp, "lora");
    const r = await train(
      args({ output_dir: out, max_steps: 3, tune_type_llm: "lora", lora_r: 4, lora_alpha: 8, lora_dropout: 0 }),
    );
    const trainable = [...r.model.namedParameters()].filter(([, p]) => p.requiresGrad).map(([n]) => n);
    assert.ok(trainable.some((n) => n.includes(".lora_A.")));
    assert.ok(
      trainable.every((n) => n.includes(".lora_") || n.startsWith("connector.")),
      trainable.join(", "),
    );
    const cfg = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"));
    assert.equal(cfg.peft_type, "LORA");
    assert.equal(cfg.r, 4);
    const ad = new SafetensorsFile(join(out, "adapter_model.safetensors"));
    assert.ok(ad.keys().every((k) => k.startsWith("base_model.model.language_model.") && !k.includes("lm_head")));
    ad.close();
    const merged = loadTinyLlava(out);
    const ids = tensor([[1, 2, 3, 4, 5]], { dtype: "int64" });
    r.model.eval();
    const a = tidy(() => noGrad(() => r.model.forward({ inputIds: ids }).logits.toArray()));
    const b = tidy(() => noGrad(() => merged.forward({ inputIds: ids }).logits.toArray()));
    const scale = Math.max(...a.map(Math.abs));
    for (const [i, v] of a.entries())
      assert.ok(Math.abs(v - (b[i] as number)) <= 1e-5 * scale, `logit ${i}: ${v} vs ${b[i]}`);
    merged.dispose();
    r.model.dispose();
  });
});
