// LoRA on TinyLLaVA as TinyLLaVA Factory applies it (find_all_linear_names: every Linear of the LoRA-tuned
// components except heads) and adapters as PEFT saves them (get_peft_model_state_dict keys for a model wrapped by
// get_peft_model: "base_model.model.<Factory module name>.lora_A.weight"; LoraConfig's adapter_config.json), on the
// reference fixtures: exact no-op before training, training moves only A/B, merge = adapter model, save/load round
// trip, bad adapter folders, and `tinyllava merge-lora` end to end.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { mergeLoraFolders } from "../../src/cli/merge-lora.js";
import { IMAGE_PLACEHOLDER } from "../../src/config/index.js";
import { CheckpointError, ConfigError } from "../../src/errors.js";
import { canonicalKey, detectLayout } from "../../src/models/checkpoint.js";
import { loadTinyLlava } from "../../src/models/load.js";
import {
  ADAPTER_CONFIG,
  ADAPTER_WEIGHTS,
  factoryLoraTargetNames,
  factoryLoraTargets,
  layoutKey,
  loadAdapter,
  loadLoraComponents,
  saveAdapter,
} from "../../src/models/lora.js";
import type { TinyLlava } from "../../src/models/tinyllava.js";
import type { Linear } from "../../src/nn/layers.js";
import { applyLora, type LoraAdapter, linearLayers, loraLayers, mergeLora } from "../../src/nn/lora.js";
import {
  AdamW,
  loadSafetensors,
  noGrad,
  SafetensorsCheckpoint,
  SafetensorsFile,
  saveSafetensors,
  type Tensor,
  tensor,
  tidy,
} from "../../src/torch/index.js";
import { diff, REFERENCE, ROOT } from "../helpers.js";

const MODELS = join(REFERENCE, "models");
const QWEN = join(MODELS, "tinyllava-siglip-qwen2"); // tied embeddings: no lm_head layer
const PHI = join(MODELS, "tinyllava-siglip-phi"); // untied: an lm_head Linear that LoRA must skip

const tmp = mkdtempSync(join(tmpdir(), "tinyllava-lora-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => join(tmp, `${name}-${n++}`);

/** The golden training sample (Factory placeholder −200 for the image) and its pixels. */
function sample(dir: string) {
  const golden = JSON.parse(readFileSync(join(dir, "golden.json"), "utf8"));
  const g = new SafetensorsFile(join(dir, "golden.safetensors"));
  try {
    const ids = (g.get("train_input_ids").tolist() as number[][])[0] as number[];
    const labels = (g.get("train_labels").tolist() as number[][])[0] as number[];
    const keep = ids.map((id, j) => !(id === golden.image_token_id && ids[j - 1] === golden.image_token_id));
    const inputIds = ids.filter((_, j) => keep[j]).map((id) => (id === golden.image_token_id ? IMAGE_PLACEHOLDER : id));
    return {
      inputIds: tensor([inputIds], { dtype: "int64" }),
      labels: tensor([labels.filter((_, j) => keep[j])], { dtype: "int64" }),
      pixelValues: g.get("pixel_values"),
    };
  } finally {
    g.close();
  }
}

const logits = (m: TinyLlava, s: ReturnType<typeof sample>) =>
  noGrad(() => m.forward({ inputIds: s.inputIds, pixelValues: s.pixelValues }).logits.toArray());

/** A few AdamW steps on the adapters' parameters (loss from model.forward with labels); returns the losses. */
function train(m: TinyLlava, params: Tensor[], s: ReturnType<typeof sample>, steps: number): number[] {
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0 });
  const losses: number[] = [];
  for (let i = 0; i < steps; i++)
    losses.push(
      tidy(() => {
        const { loss } = m.forward(s);
        loss!.backward();
        opt.step();
        opt.zeroGrad();
        return loss!.item();
      }),
    );
  opt.dispose();
  return losses;
}

const LLM_LAYERS = [
  "language_model.model.layers.0.self_attn.q_proj",
  "language_model.model.layers.0.self_attn.k_proj",
  "language_model.model.layers.0.self_attn.v_proj",
  "language_model.model.layers.0.self_attn.o_proj",
  "language_model.model.layers.0.mlp.gate_proj",
  "language_model.model.layers.0.mlp.up_proj",
  "language_model.model.layers.0.mlp.down_proj",
  "language_model.model.layers.1.self_attn.q_proj",
  "language_model.model.layers.1.self_attn.k_proj",
  "language_model.model.layers.1.self_attn.v_proj",
  "language_model.model.layers.1.self_attn.o_proj",
  "language_model.model.layers.1.mlp.gate_proj",
  "language_model.model.layers.1.mlp.up_proj",
  "language_model.model.layers.1.mlp.down_proj",
];

/** What PEFT saves for the qwen2 fixture with LoRA on the LLM (Factory: tune_type_llm lora, the rest not). */
const QWEN_LLM_KEYS = [
  "base_model.model.language_model.model.layers.0.mlp.down_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.0.mlp.down_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.0.mlp.gate_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.0.mlp.gate_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.0.mlp.up_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.0.mlp.up_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.0.self_attn.k_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.0.self_attn.k_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.0.self_attn.o_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.0.self_attn.o_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.0.self_attn.v_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.0.self_attn.v_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.1.mlp.down_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.1.mlp.down_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.1.mlp.gate_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.1.mlp.gate_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.1.mlp.up_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.1.mlp.up_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.1.self_attn.k_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.1.self_attn.k_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.1.self_attn.o_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.1.self_attn.o_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.1.self_attn.q_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.1.self_attn.q_proj.lora_B.weight",
  "base_model.model.language_model.model.layers.1.self_attn.v_proj.lora_A.weight",
  "base_model.model.language_model.model.layers.1.self_attn.v_proj.lora_B.weight",
];

function keysOf(file: string): string[] {
  const f = new SafetensorsFile(file);
  try {
    return f.keys().sort();
  } finally {
    f.close();
  }
}

/** An adapter folder for the qwen2 fixture: LoRA (r 4, alpha 8) on the LLM, trained 3 steps (float32). */
function trainedQwenAdapter(): { dir: string; model: TinyLlava } {
  const model = loadTinyLlava(QWEN);
  const params = applyLora(model, {
    r: 4,
    alpha: 8,
    dropout: 0.05,
    targets: factoryLoraTargets({ llm: true }),
    seed: 1,
  });
  train(model, params, sample(QWEN), 3);
  model.eval();
  const dir = fresh("adapter");
  saveAdapter(model, dir, { baseModelNameOrPath: QWEN });
  return { dir, model };
}

describe("Factory's LoRA targets (find_all_linear_names)", () => {
  test("LLM only: every Linear of the language model, in model order; with vision + connector: theirs too", () => {
    const q = loadTinyLlava(QWEN);
    assert.deepEqual(factoryLoraTargetNames(q, { llm: true }), LLM_LAYERS);
    const all = factoryLoraTargetNames(q, { llm: true, visionTower: true, connector: true });
    const vision = [0, 1, 2].flatMap((i) =>
      ["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"].map(
        (m) => `vision_tower.vision_model.encoder.layers.${i}.${m}`,
      ),
    );
    assert.deepEqual(
      new Set(all),
      new Set([...LLM_LAYERS, "connector._connector.0", "connector._connector.2", ...vision]),
    );
    assert.equal(all.length, 14 + 2 + 18);
    assert.deepEqual(factoryLoraTargetNames(q, { connector: true }), [
      "connector._connector.0",
      "connector._connector.2",
    ]);
    q.dispose();
  });

  test("phi (untied): lm_head is a Linear but never a target", () => {
    const p = loadTinyLlava(PHI);
    assert.ok(linearLayers(p).some(([path]) => path === "language_model.lm_head"));
    const t = factoryLoraTargetNames(p, { llm: true, visionTower: true, connector: true });
    assert.ok(!t.some((x) => x.includes("lm_head")));
    assert.deepEqual(
      t.filter((x) => x.startsWith("language_model.model.layers.0.")),
      ["q_proj", "k_proj", "v_proj", "dense"]
        .map((x) => `language_model.model.layers.0.self_attn.${x}`)
        .concat(["language_model.model.layers.0.mlp.fc1", "language_model.model.layers.0.mlp.fc2"]),
    );
    p.dispose();
  });
});

describe("LoRA on the qwen2 fixture", () => {
  test("before training the adapted model's logits equal the base model's exactly (float32 and float64)", () => {
    for (const dtype of ["float32", "float64"] as const) {
      const s = sample(QWEN);
      const base = loadTinyLlava(QWEN, { dtype });
      const expected = logits(base, s);
      const m = loadTinyLlava(QWEN, { dtype });
      applyLora(m, {
        r: 8,
        alpha: 16,
        dropout: 0.05,
        targets: factoryLoraTargets({ llm: true, connector: true, visionTower: true }),
      });
      assert.deepEqual(logits(m, s), expected);
      m.train();
      const trainLoss = noGrad(() => m.forward(s).loss!.item());
      const baseLoss = noGrad(() => base.forward(s).loss!.item());
      assert.equal(trainLoss, baseLoss);
      base.dispose();
      m.dispose();
    }
  });

  test("AdamW steps on the loss move A and B only: every base tensor is bit-identical, the loss falls", () => {
    const m = loadTinyLlava(QWEN);
    const s = sample(QWEN);
    const params = applyLora(m, {
      r: 4,
      alpha: 8,
      dropout: 0.05,
      targets: factoryLoraTargets({ llm: true, connector: true }),
      seed: 3,
    });
    const adapterNames = new Set(loraLayers(m).flatMap(([p]) => [`${p}.lora_A.weight`, `${p}.lora_B.weight`]));
    const before = new Map([...m.stateDict()].map(([k, v]) => [k, v.toArray()]));
    const losses = train(m, params, s, 4);
    assert.ok(losses[3]! < losses[0]!, `losses ${losses}`);
    assert.equal(adapterNames.size, 2 * 16);
    for (const [k, v] of m.stateDict()) {
      if (adapterNames.has(k)) assert.notDeepEqual(v.toArray(), before.get(k), `${k} did not change`);
      else {
        assert.deepEqual(v.toArray(), before.get(k), `${k} changed`);
        assert.equal(v.grad, null, `${k} has a gradient`);
      }
    }
    m.dispose();
  });

  test("float64: the merged model's logits equal the adapter model's within 1e-12; its keys are the base's", () => {
    const s = sample(QWEN);
    const m = loadTinyLlava(QWEN, { dtype: "float64" });
    const baseKeys = [...m.stateDict().keys()];
    const baseLogits = logits(m, s);
    const params = applyLora(m, {
      r: 4,
      alpha: 8,
      targets: factoryLoraTargets({ llm: true, connector: true, visionTower: true }),
      seed: 2,
    });
    train(m, params, s, 2);
    m.eval();
    const adapted = logits(m, s);
    assert.ok(diff(adapted, baseLogits).maxAbs > 1e-3, "training changed nothing");
    assert.equal(mergeLora(m).length, 34);
    const merged = logits(m, s);
    const d = diff(merged, adapted);
    assert.ok(d.maxAbs <= 1e-12, JSON.stringify(d));
    assert.deepEqual([...m.stateDict().keys()], baseKeys);
    m.dispose();
  });
});

describe("PEFT adapter folders", () => {
  test("saveAdapter writes PEFT's keys and adapter_config.json; loadAdapter reproduces the outputs exactly", () => {
    const { dir, model } = trainedQwenAdapter();
    const s = sample(QWEN);
    assert.deepEqual(keysOf(join(dir, ADAPTER_WEIGHTS)), QWEN_LLM_KEYS);
    const f = new SafetensorsFile(join(dir, ADAPTER_WEIGHTS));
    assert.deepEqual(f.metadata, { format: "pt" });
    assert.deepEqual(f.tensors.get(QWEN_LLM_KEYS[0]!)?.shape, [4, 128]); // down_proj A: [r, intermediate]
    assert.deepEqual(f.tensors.get(QWEN_LLM_KEYS[1]!)?.shape, [64, 4]);
    assert.equal(f.tensors.get(QWEN_LLM_KEYS[0]!)?.dtype, "float32");
    f.close();
    const text = readFileSync(join(dir, ADAPTER_CONFIG), "utf8");
    const cfg = JSON.parse(text);
    // json.dumps(indent=2, sort_keys=True)
    assert.deepEqual(Object.keys(cfg), Object.keys(cfg).sort());
    assert.equal(text, JSON.stringify(cfg, null, 2));
    assert.deepEqual(cfg, {
      alpha_pattern: {},
      auto_mapping: null,
      base_model_name_or_path: QWEN,
      bias: "none",
      corda_config: null,
      eva_config: null,
      exclude_modules: null,
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: true,
      layer_replication: null,
      layers_pattern: null,
      layers_to_transform: null,
      loftq_config: {},
      lora_alpha: 8,
      lora_bias: false,
      lora_dropout: 0.05,
      megatron_config: null,
      megatron_core: "megatron.core",
      modules_to_save: null,
      peft_type: "LORA",
      qalora_group_size: 16,
      r: 4,
      rank_pattern: {},
      revision: null,
      target_modules: [...LLM_LAYERS].sort(),
      target_parameters: null,
      task_type: "CAUSAL_LM",
      trainable_token_indices: null,
      use_dora: false,
      use_qalora: false,
      use_rslora: false,
    });
    const fresh1 = loadTinyLlava(QWEN);
    const info = loadAdapter(fresh1, dir);
    fresh1.eval();
    assert.equal(info.layout, "tinyllava-factory");
    assert.deepEqual(new Set(info.layers), new Set(LLM_LAYERS));
    assert.deepEqual(logits(fresh1, s), logits(model, s));
    // inference: nothing trainable; trainable: the adapters only
    assert.equal(fresh1.numParameters(true), 0);
    const fresh2 = loadTinyLlava(QWEN);
    loadAdapter(fresh2, dir, { trainable: true });
    assert.deepEqual(
      [...fresh2.namedParameters()]
        .filter(([, p]) => p.requiresGrad)
        .map(([k]) => k)
        .sort(),
      QWEN_LLM_KEYS.map((k) => k.slice("base_model.model.".length)),
    );
    const a = (fresh2.getSubmodule("language_model.model.layers.0.self_attn.q_proj") as Linear).lora as LoraAdapter;
    assert.equal(a.dropout, 0.05);
    assert.equal(a.scaling, 2);
    for (const m of [model, fresh1, fresh2]) m.dispose();
  });

  test("keys with the adapter name (.lora_A.default.weight) load the same", () => {
    const { dir, model } = trainedQwenAdapter();
    const named = fresh("named");
    cpSync(dir, named, { recursive: true });
    const sd = loadSafetensors(join(dir, ADAPTER_WEIGHTS));
    saveSafetensors(
      join(named, ADAPTER_WEIGHTS),
      new Map([...sd].map(([k, v]) => [k.replace(/\.(lora_[AB])\.weight$/, ".$1.default.weight"), v])),
    );
    assert.ok(keysOf(join(named, ADAPTER_WEIGHTS)).every((k) => k.endsWith(".default.weight")));
    const m = loadTinyLlava(QWEN);
    loadAdapter(m, named);
    m.eval();
    const s = sample(QWEN);
    assert.deepEqual(logits(m, s), logits(model, s));
    model.dispose();
    m.dispose();
  });

  test("LoRA weights of SigLIP's pooling head (never run) are reported as ignored, not applied", () => {
    const { dir, model } = trainedQwenAdapter();
    const d = fresh("head");
    cpSync(dir, d, { recursive: true });
    const sd = loadSafetensors(join(dir, ADAPTER_WEIGHTS));
    const head = "base_model.model.vision_tower._vision_tower.vision_model.head.mlp.fc1";
    sd.set(`${head}.lora_A.weight`, tensor(new Array(4 * 48).fill(0.1), { shape: [4, 48] }));
    sd.set(`${head}.lora_B.weight`, tensor(new Array(96 * 4).fill(0.1), { shape: [96, 4] }));
    saveSafetensors(join(d, ADAPTER_WEIGHTS), sd);
    const m = loadTinyLlava(QWEN);
    const info = loadAdapter(m, d);
    m.eval();
    assert.deepEqual(info.ignored.sort(), [`${head}.lora_A.weight`, `${head}.lora_B.weight`]);
    assert.equal(info.layers.length, 14);
    const s = sample(QWEN);
    assert.deepEqual(logits(m, s), logits(model, s));
    model.dispose();
    m.dispose();
  });

  test("phi with LoRA on vision tower + connector + LLM: Factory's module names, no lm_head; modules_to_save", () => {
    const p = loadTinyLlava(PHI);
    const s = sample(PHI);
    const params = applyLora(p, {
      r: 2,
      alpha: 4,
      targets: factoryLoraTargets({ llm: true, visionTower: true }),
      seed: 5,
    });
    train(p, params, s, 2);
    // the connector trained in full beside the adapters (Factory's tune_type_connector full), saved as PEFT's
    // modules_to_save
    noGrad(() => {
      for (const t of p.connector.parameters()) t.add_(0.01);
    });
    p.eval();
    const dir = fresh("phi");
    saveAdapter(p, dir, { modulesToSave: ["connector"] });
    const keys = keysOf(join(dir, ADAPTER_WEIGHTS));
    assert.ok(!keys.some((k) => k.includes("lm_head")));
    for (const k of [
      "base_model.model.vision_tower._vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight",
      "base_model.model.vision_tower._vision_tower.vision_model.encoder.layers.2.mlp.fc2.lora_B.weight",
      "base_model.model.language_model.model.layers.1.self_attn.dense.lora_A.weight",
      "base_model.model.language_model.model.layers.0.mlp.fc1.lora_B.weight",
      "base_model.model.connector._connector.0.weight",
      "base_model.model.connector._connector.2.bias",
    ])
      assert.ok(keys.includes(k), `${k} missing`);
    assert.equal(keys.length, 2 * (2 * 6 + 3 * 6) + 4);
    const cfg = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG), "utf8"));
    assert.deepEqual(cfg.modules_to_save, ["connector"]);
    assert.ok(!cfg.target_modules.some((t: string) => t.includes("lm_head") || t.startsWith("connector")));
    assert.ok(cfg.target_modules.includes("vision_tower._vision_tower.vision_model.encoder.layers.1.mlp.fc1"));
    const q = loadTinyLlava(PHI);
    const info = loadAdapter(q, dir);
    q.eval();
    assert.deepEqual([...info.copied].sort(), [
      "connector._connector.0.bias",
      "connector._connector.0.weight",
      "connector._connector.2.bias",
      "connector._connector.2.weight",
    ]);
    assert.deepEqual(logits(q, s), logits(p, s));
    p.dispose();
    q.dispose();
  });

  test("different ranks per layer go to rank_pattern, and load back", () => {
    const m = loadTinyLlava(QWEN);
    applyLora(m, {
      r: 4,
      alpha: 8,
      targets: factoryLoraTargets({ llm: true }),
      rankFor: (p) => (p.endsWith("q_proj") ? 2 : undefined),
      init: false,
      seed: 4,
    });
    m.eval();
    const dir = fresh("ranks");
    saveAdapter(m, dir);
    const cfg = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG), "utf8"));
    assert.deepEqual(cfg.rank_pattern, {
      "language_model\\.model\\.layers\\.0\\.self_attn\\.q_proj": 2,
      "language_model\\.model\\.layers\\.1\\.self_attn\\.q_proj": 2,
    });
    const r = loadTinyLlava(QWEN);
    loadAdapter(r, dir);
    r.eval();
    const s = sample(QWEN);
    assert.deepEqual(logits(r, s), logits(m, s));
    m.dispose();
    r.dispose();
  });

  test("bad adapter folders fail with errors naming the file, the field or key and the value; the model is untouched", () => {
    const { dir, model } = trainedQwenAdapter();
    model.dispose();
    const variant = (edit: (d: string) => void) => {
      const d = fresh("bad");
      cpSync(dir, d, { recursive: true });
      edit(d);
      return d;
    };
    const editConfig = (d: string, f: (c: Record<string, unknown>) => void) => {
      const c = JSON.parse(readFileSync(join(d, ADAPTER_CONFIG), "utf8"));
      f(c);
      writeFileSync(join(d, ADAPTER_CONFIG), JSON.stringify(c));
    };
    const editWeights = (d: string, f: (sd: Map<string, Tensor>) => void) => {
      const sd = loadSafetensors(join(dir, ADAPTER_WEIGHTS));
      f(sd);
      saveSafetensors(join(d, ADAPTER_WEIGHTS), sd);
    };
    const cases: [string, string, typeof CheckpointError | typeof ConfigError, RegExp][] = [
      [
        "no config",
        variant((d) => rmSync(join(d, ADAPTER_CONFIG))),
        CheckpointError,
        /: no adapter_config.json \(not a PEFT adapter folder\)/,
      ],
      [
        "config not JSON",
        variant((d) => writeFileSync(join(d, ADAPTER_CONFIG), "{r: 4")),
        ConfigError,
        /adapter_config.json: not valid JSON/,
      ],
      [
        "wrong peft_type",
        variant((d) => editConfig(d, (c) => (c.peft_type = "PREFIX_TUNING"))),
        ConfigError,
        /adapter_config.json: field "peft_type" is "PREFIX_TUNING"; only "LORA" adapters are supported/,
      ],
      [
        "no peft_type",
        variant((d) => editConfig(d, (c) => delete c.peft_type)),
        ConfigError,
        /adapter_config.json: field "peft_type" is missing/,
      ],
      [
        "r mismatch",
        variant((d) => editConfig(d, (c) => (c.r = 8))),
        CheckpointError,
        /adapter_model.safetensors: r mismatch for "language_model.model.layers.0.mlp.down_proj": .*adapter_config.json says r = 8 but lora_A.weight is \[4, 128\] and lora_B.weight is \[64, 4\]/,
      ],
      [
        "bad r",
        variant((d) => editConfig(d, (c) => (c.r = "four"))),
        ConfigError,
        /adapter_config.json: field "r" is "four"; expected an integer ≥ 1/,
      ],
      [
        "DoRA",
        variant((d) => editConfig(d, (c) => (c.use_dora = true))),
        ConfigError,
        /field "use_dora" is true: DoRA .* is not supported/,
      ],
      [
        "PiSSA",
        variant((d) => editConfig(d, (c) => (c.init_lora_weights = "pissa"))),
        ConfigError,
        /field "init_lora_weights" is "pissa"/,
      ],
      [
        "a lora_B missing",
        variant((d) => editWeights(d, (sd) => sd.delete(QWEN_LLM_KEYS[3]!))),
        CheckpointError,
        /missing keys: "base_model.model.language_model.model.layers.0.mlp.gate_proj.lora_B.weight"/,
      ],
      [
        "a targeted layer missing",
        variant((d) =>
          editWeights(d, (sd) => {
            sd.delete(QWEN_LLM_KEYS[2]!);
            sd.delete(QWEN_LLM_KEYS[3]!);
          }),
        ),
        CheckpointError,
        /missing keys for 1 layer\(s\) that .*adapter_config.json targets: "base_model.model.language_model.model.layers.0.mlp.gate_proj.lora_A.weight"/,
      ],
      [
        "an untargeted layer",
        variant((d) => editConfig(d, (c) => (c.target_modules = LLM_LAYERS.filter((l) => !l.endsWith("down_proj"))))),
        CheckpointError,
        /LoRA weights for layer\(s\) that target_modules in .* does not select: "language_model.model.layers.0.mlp.down_proj"/,
      ],
      [
        "short target names (PEFT's suffix match) also select the vision tower's projections",
        variant((d) =>
          editConfig(
            d,
            (c) => (c.target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
          ),
        ),
        CheckpointError,
        /missing keys for 9 layer\(s\) that .*targets: "base_model.model.vision_tower._vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"/,
      ],
      [
        "a stray tensor",
        variant((d) =>
          editWeights(d, (sd) => sd.set("base_model.model.language_model.model.norm.weight", tensor([1]))),
        ),
        CheckpointError,
        /unexpected tensors .*: base_model.model.language_model.model.norm.weight/,
      ],
      [
        "a wrong shape",
        variant((d) =>
          editWeights(d, (sd) => {
            sd.set(QWEN_LLM_KEYS[0]!, tensor(new Array(4 * 100).fill(0), { shape: [4, 100] }));
          }),
        ),
        CheckpointError,
        /shape mismatch for "base_model.model.language_model.model.layers.0.mlp.down_proj.lora_A.weight": checkpoint has \[4, 100\], model expects \[4, 128\]/,
      ],
      [
        "a layer the model lacks",
        variant((d) =>
          editWeights(d, (sd) => {
            sd.set("base_model.model.language_model.model.layers.7.mlp.up_proj.lora_A.weight", tensor([[1]]));
          }),
        ),
        CheckpointError,
        /"language_model.model.layers.7.mlp.up_proj", which is not a Linear layer of this model/,
      ],
      [
        "lm_head of a tied model",
        variant((d) =>
          editWeights(d, (sd) => {
            sd.set("base_model.model.language_model.lm_head.lora_A.weight", tensor([[1]]));
          }),
        ),
        CheckpointError,
        /"language_model.lm_head", which is not a Linear layer of this model \(its lm_head is tied to the input embeddings\)/,
      ],
      [
        "pickled weights",
        variant((d) => {
          rmSync(join(d, ADAPTER_WEIGHTS));
          writeFileSync(join(d, "adapter_model.bin"), "PK");
        }),
        CheckpointError,
        /only adapter_model.bin \(a PyTorch pickle\) found/,
      ],
    ];
    for (const [what, d, cls, re] of cases) {
      const m = loadTinyLlava(QWEN);
      assert.throws(
        () => loadAdapter(m, d),
        (e: Error) => e instanceof cls && re.test(e.message),
        `${what}: expected ${cls.name} matching ${re}`,
      );
      assert.equal(loraLayers(m).length, 0, `${what}: the model was changed`);
      m.dispose();
    }
  });
});

describe("key layouts", () => {
  test("layoutKey inverts canonicalKey for every key of every fixture checkpoint", () => {
    let checked = 0;
    for (const name of [
      "tinyllava-siglip-qwen2",
      "tinyllava-siglip-phi",
      "siglip-qwen2",
      "clip-llama",
      "siglip-gemma",
      "siglip-phi",
    ]) {
      const ck = SafetensorsCheckpoint.open(join(MODELS, name));
      try {
        const layout = detectLayout(ck.keys());
        for (const k of ck.keys()) {
          const c = canonicalKey(k);
          if (c === null) continue;
          assert.equal(layoutKey(c, layout), k, `${name} (${layout})`);
          checked++;
        }
      } finally {
        ck.close();
      }
    }
    assert.ok(checked > 400, `${checked} keys`);
  });
});

describe("tinyllava merge-lora", () => {
  test("CLI end to end (float64): the merged folder loads with loadTinyLlava and gives the adapter model's logits", () => {
    const { dir } = trainedQwenAdapter();
    const out = fresh("merged");
    const r = spawnSync(
      process.execPath,
      [
        "--import",
        "tsx",
        join(ROOT, "src", "cli", "main.ts"),
        "merge-lora",
        "--model",
        QWEN,
        "--adapter",
        dir,
        "--out",
        out,
        "--dtype",
        "float64",
      ],
      { encoding: "utf8" },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^merged 14 LoRA layer\(s\) into .* \(float64, tinyllava-factory key layout/);
    const s = sample(QWEN);
    const adapted = loadTinyLlava(QWEN, { dtype: "float64" });
    loadAdapter(adapted, dir);
    adapted.eval();
    const merged = loadTinyLlava(out, { dtype: "float64" });
    merged.eval();
    const d = diff(logits(merged, s), logits(adapted, s));
    assert.ok(d.maxAbs <= 1e-12, JSON.stringify(d));
    const q = "language_model.model.layers.0.self_attn.q_proj";
    const base = loadTinyLlava(QWEN, { dtype: "float64" });
    assert.notDeepEqual(
      (merged.getSubmodule(q) as Linear).weight.toArray(),
      (base.getSubmodule(q) as Linear).weight.toArray(),
    );
    base.dispose();
    // the base folder's keys exactly (Factory layout, SigLIP's unused head kept), in float64; its side files
    assert.deepEqual(keysOf(join(out, "model.safetensors")), keysOf(join(QWEN, "model.safetensors")));
    const f = new SafetensorsFile(join(out, "model.safetensors"));
    assert.ok([...f.tensors.values()].every((t) => t.dtype === "float64"));
    f.close();
    const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    assert.equal(cfg.torch_dtype, "float64");
    assert.equal(cfg.connector_type, "mlp2x_gelu");
    for (const x of ["tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "generation_config.json"])
      assert.equal(readFileSync(join(out, x), "utf8"), readFileSync(join(QWEN, x), "utf8"), x);
    adapted.dispose();
    merged.dispose();
  });

  test("CLI errors: a bad --dtype (usage, exit 2), a folder without adapter_config.json (exit 1)", () => {
    const run = (args: string[]) =>
      spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src", "cli", "main.ts"), "merge-lora", ...args], {
        encoding: "utf8",
      });
    const bad = run(["-m", QWEN, "-a", QWEN, "-o", fresh("x"), "--dtype", "int8"]);
    assert.equal(bad.status, 2);
    assert.match(
      bad.stderr,
      /^tinyllava: UsageError: --dtype "int8": expected one of float32, bfloat16, float16, float64/,
    );
    const none = run(["-m", QWEN, "-a", QWEN, "-o", fresh("x")]);
    assert.equal(none.status, 1);
    assert.match(none.stderr, /CheckpointError: .*tinyllava-siglip-qwen2: no adapter_config.json/);
  });

  test("a llava (transformers-5 layout) base: the merged folder keeps that layout", () => {
    const base = join(MODELS, "siglip-qwen2");
    const m = loadTinyLlava(base);
    const params = applyLora(m, {
      r: 2,
      alpha: 4,
      targets: factoryLoraTargets({ llm: true, connector: true }),
      seed: 9,
    });
    train(m, params, sample(QWEN), 1); // any sample of this vocabulary trains it
    m.eval();
    const dir = fresh("llava-adapter");
    saveAdapter(m, dir, { layout: "transformers-5" });
    assert.ok(
      keysOf(join(dir, ADAPTER_WEIGHTS)).includes("base_model.model.multi_modal_projector.linear_1.lora_A.weight"),
    );
    const out = fresh("llava-merged");
    const r = mergeLoraFolders(base, dir, out);
    assert.equal(r.layout, "transformers-5");
    assert.deepEqual(keysOf(join(out, "model.safetensors")), keysOf(join(base, "model.safetensors")));
    const merged = loadTinyLlava(out);
    const s = sample(QWEN);
    const d = diff(logits(merged, s), logits(m, s));
    assert.ok(d.maxAbs < 1e-4, JSON.stringify(d));
    m.dispose();
    merged.dispose();
  });

  test("Factory's LoRA output folder: its connector/ (and other component folders) are loaded before the adapter", () => {
    const { dir, model } = trainedQwenAdapter();
    // Factory saves the fully trained connector beside the adapter (connector/, names relative to the connector) and
    // the language model's non-LoRA weights with PEFT's ".base_layer" names
    noGrad(() => {
      for (const t of model.connector.parameters()) t.mul_(1.5);
    });
    const folder = fresh("factory-lora");
    cpSync(dir, folder, { recursive: true });
    mkdirSync(join(folder, "connector"));
    mkdirSync(join(folder, "language_model"));
    saveSafetensors(join(folder, "connector", "model.safetensors"), new Map([...model.connector.stateDict()]));
    const lm = new Map(
      [...model.languageModel.stateDict()]
        .filter(([k]) => !k.includes(".lora_"))
        .map(([k, v]) => [
          LLM_LAYERS.some((l) => k.startsWith(`${l.slice("language_model.".length)}.`))
            ? k.replace(/\.(weight|bias)$/, ".base_layer.$1")
            : k,
          v,
        ]),
    );
    assert.ok([...lm.keys()].includes("model.layers.0.self_attn.q_proj.base_layer.weight"));
    saveSafetensors(join(folder, "language_model", "model.safetensors"), lm);
    const out = fresh("factory-merged");
    const r = mergeLoraFolders(QWEN, folder, out);
    assert.deepEqual(r.components, ["language_model", "connector"]);
    const merged = loadTinyLlava(out);
    const s = sample(QWEN);
    const d = diff(logits(merged, s), logits(model, s));
    assert.ok(d.maxAbs < 1e-4, JSON.stringify(d));
    // a pickled component is an error, not silently skipped
    const pickled = fresh("factory-pickle");
    cpSync(dir, pickled, { recursive: true });
    mkdirSync(join(pickled, "connector"));
    writeFileSync(join(pickled, "connector", "pytorch_model.bin"), "PK");
    const m2 = loadTinyLlava(QWEN);
    assert.throws(
      () => loadLoraComponents(m2, pickled),
      (e: Error) =>
        e instanceof CheckpointError && /connector: only pytorch_model.bin \(a PyTorch pickle\) found/.test(e.message),
    );
    assert.throws(() => mergeLoraFolders(QWEN, pickled, fresh("never")), /only pytorch_model.bin/);
    for (const x of [model, merged, m2]) x.dispose();
  });
});
