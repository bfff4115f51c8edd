// Module bookkeeping: names, state dicts (strict errors listing keys, shape errors naming both shapes), remapping,
// freezing, train/eval, dtype casts; layers against their definitions.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CheckpointError } from "../../src/errors.js";
import {
  Conv2d,
  Embedding,
  getActivation,
  LayerNorm,
  Linear,
  Module,
  ModuleList,
  RMSNorm,
} from "../../src/nn/index.js";
import * as torch from "../../src/torch/index.js";
import { tensor, tidy } from "../../src/torch/index.js";
import { assertClose } from "../helpers.js";

class Block extends Module {
  proj = this.registerModule("proj", new Linear(4, 3));
  norm = this.registerModule("norm", new LayerNorm(3));
  constructor() {
    super();
    this.registerBuffer("steps", torch.zeros([1], { dtype: "int64" }));
    this.registerBuffer("cache", torch.zeros([2]), false);
  }
}
class Net extends Module {
  emb = this.registerModule("embed_tokens", new Embedding(10, 4));
  layers = this.registerModule("layers", new ModuleList([new Block(), new Block()]));
}

describe("Module", () => {
  test("named parameters and state dict keys follow PyTorch's dotted names", () => {
    const n = new Net();
    assert.deepEqual(
      [...n.stateDict().keys()],
      [
        "embed_tokens.weight",
        "layers.0.proj.weight",
        "layers.0.proj.bias",
        "layers.0.norm.weight",
        "layers.0.norm.bias",
        "layers.1.proj.weight",
        "layers.1.proj.bias",
        "layers.1.norm.weight",
        "layers.1.norm.bias",
        "layers.0.steps",
        "layers.1.steps",
      ],
    );
    assert.equal(n.numParameters(), 40 + 2 * (12 + 3 + 3 + 3));
    assert.ok(n.parameters().every((p) => p.requiresGrad));
    n.dispose();
  });

  test("loadStateDict copies values; strict mode lists missing and unexpected keys; shapes are checked", () => {
    const a = new Net();
    const b = new Net();
    b.loadStateDict(a.stateDict());
    assert.deepEqual(b.layers.at(1).proj.weight.toArray(), a.layers.at(1).proj.weight.toArray());
    const partial = new Map(a.stateDict());
    partial.delete("layers.0.proj.bias");
    partial.set("extra.weight", torch.zeros([1]));
    assert.throws(
      () => b.loadStateDict(partial, { source: "ckpt.safetensors" }),
      (e: Error) =>
        e instanceof CheckpointError &&
        /^ckpt.safetensors: /.test(e.message) &&
        /missing keys \(1\): layers.0.proj.bias/.test(e.message) &&
        /unexpected keys \(1\): extra.weight/.test(e.message),
    );
    const r = b.loadStateDict(partial, { strict: false });
    assert.deepEqual(r.missingKeys, ["layers.0.proj.bias"]);
    assert.deepEqual(r.unexpectedKeys, ["extra.weight"]);
    const bad = new Map(a.stateDict());
    bad.set("layers.1.proj.weight", torch.zeros([4, 3]));
    assert.throws(
      () => b.loadStateDict(bad),
      /shape mismatch for "layers.1.proj.weight": checkpoint has \[4, 3\], model expects \[3, 4\]/,
    );
    a.dispose();
    b.dispose();
  });

  test("key remapping hooks", () => {
    const n = new Net();
    n.addStateDictRemap((k) => (k.startsWith("model.") ? k.slice(6) : k));
    n.layers.at(0).addStateDictRemap((k) => k.replace("dense", "proj"));
    const sd = new Map<string, torch.Tensor>();
    for (const [k, v] of n.stateDict()) sd.set(`model.${k.replace("0.proj", "0.dense")}`, v.detach().add(1));
    const before = n.layers.at(0).proj.weight.toArray();
    n.loadStateDict(sd);
    assertClose(
      n.layers.at(0).proj.weight,
      before.map((v) => v + 1),
      { rtol: 1e-6 },
    );
    n.dispose();
  });

  test("freezing, train/eval, dtype casts keep parameter identity", () => {
    const n = new Net();
    n.layers.at(0).requiresGrad_(false);
    assert.equal(n.numParameters(true), n.numParameters() - 21);
    n.eval();
    assert.ok([...n.namedModules()].every(([, m]) => !m.training));
    n.train();
    const w = n.layers.at(1).proj.weight;
    n.to("float64");
    assert.equal(w.dtype, "float64");
    assert.equal(n.layers.at(1).proj.weight, w);
    assert.ok(w.requiresGrad);
    assert.equal(n.layers.at(0).proj.weight.requiresGrad, false);
    assert.equal(n.stateDict().get("layers.0.steps")?.dtype, "int64");
    n.dispose();
  });

  test("to(dtype) after an optimiser was created: the optimiser still updates the (cast) parameters", () => {
    const build = () => {
      torch.manualSeed(11);
      return new Block();
    };
    const step = (m: Block, opt: torch.AdamW) => {
      tidy(() => {
        const x = torch.randn([5, 4], { dtype: "float64", generator: new torch.Generator(3) });
        m.norm.forward(m.proj.forward(x)).square().sum().backward();
      });
      opt.step();
      opt.zeroGrad();
    };
    // AdamW created on the float32 parameters, then the module is cast to float64
    const a = build();
    const optA = new torch.AdamW(a.parameters(), { lr: 0.1, weightDecay: 0.01 });
    const handles = a.parameters().map((p) => p.handle);
    a.to("float64");
    assert.deepEqual(
      a.parameters().map((p) => p.handle),
      handles,
      "the same libtorch tensors (no new handles)",
    );
    const before = a.parameters().map((p) => p.toArray());
    step(a, optA);
    const after = a.parameters().map((p) => p.toArray());
    after.forEach((v, i) => {
      assert.notDeepEqual(v, before[i], `parameter ${i} changed`);
    });
    // the same as a fresh optimiser created after the cast
    const b = build();
    b.to("float64");
    const optB = new torch.AdamW(b.parameters(), { lr: 0.1, weightDecay: 0.01 });
    step(b, optB);
    b.parameters().forEach((p, i) => {
      assert.equal(p.dtype, "float64");
      assert.deepEqual(p.toArray(), after[i], `parameter ${i}: same step as a fresh optimiser's`);
    });
    // an accumulated gradient is cast along
    tidy(() =>
      a.proj
        .forward(torch.ones([1, 4], { dtype: "float64" }))
        .sum()
        .backward(),
    );
    a.to("float32");
    assert.equal(a.proj.weight.grad?.dtype, "float32");
    optA.dispose();
    optB.dispose();
    a.dispose();
    b.dispose();
  });
});

describe("layers", () => {
  test("Linear, Embedding, LayerNorm, RMSNorm, Conv2d, activations", () => {
    tidy(() => {
      const lin = new Linear(3, 2, { dtype: "float64" });
      torch.noGrad(() => {
        lin.weight.copy_(
          tensor(
            [
              [1, 0, 0],
              [0, 1, 1],
            ],
            { dtype: "float64" },
          ),
        );
        lin.bias?.copy_(tensor([0.5, -1], { dtype: "float64" }));
      });
      assert.deepEqual(lin.forward(tensor([[1, 2, 3]], { dtype: "float64" })).toArray(), [1.5, 4]);
      const bound = 1 / Math.sqrt(3);
      const fresh = new Linear(3, 100);
      assert.ok(fresh.weight.toArray().every((v) => Math.abs(v) <= bound));
      assert.equal(new Linear(3, 2, { bias: false }).bias, null);
      const emb = new Embedding(5, 2);
      assert.deepEqual(emb.forward(tensor([1], { dtype: "int64" })).toArray(), emb.weight.select(0, 1).toArray());
      const ln = new LayerNorm(2, 1e-5, { dtype: "float64" });
      assertClose(
        ln.forward(tensor([[1, 3]], { dtype: "float64" })),
        [-1 / Math.sqrt(1 + 1e-5), 1 / Math.sqrt(1 + 1e-5)],
        { rtol: 1e-12 },
      );
      const rms = new RMSNorm(2, 0, { dtype: "float64" });
      assertClose(rms.forward(tensor([[3, 4]], { dtype: "float64" })), [3 / Math.sqrt(12.5), 4 / Math.sqrt(12.5)], {
        rtol: 1e-12,
      });
      const gemma = new RMSNorm(2, 0, { dtype: "float64", unitOffset: true });
      assert.deepEqual(gemma.weight.toArray(), [0, 0]);
      const conv = new Conv2d(3, 4, 2, { stride: 2 });
      assert.deepEqual(conv.forward(torch.zeros([1, 3, 4, 4])).shape, [1, 4, 2, 2]);
      const x = tensor([-1, 0.5], { dtype: "float64" });
      assertClose(getActivation("quick_gelu")(x), [-1 / (1 + Math.exp(1.702)), 0.5 / (1 + Math.exp(-0.851))], {
        rtol: 1e-12,
      });
      // the tanh approximation in closed form, float64 in JS: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
      const xs = [-3, -1, -0.5, 0, 0.5, 1, 2.5];
      const tanhGelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
      assertClose(getActivation("gelu_pytorch_tanh")(tensor(xs, { dtype: "float64" })), xs.map(tanhGelu), {
        rtol: 1e-14,
        atol: 1e-16,
      });
      // and it is not the exact (erf) GELU, which differs by ~1e-4 here
      const erfGelu = getActivation("gelu")(tensor([1], { dtype: "float64" })).item();
      assert.ok(Math.abs(erfGelu - tanhGelu(1)) > 1e-5, "gelu_pytorch_tanh must differ from the erf GELU");
      assert.throws(
        () => getActivation("mish", "text_config.hidden_act"),
        /text_config.hidden_act: unknown activation "mish"/,
      );
    });
  });
});
