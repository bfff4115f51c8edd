// LoRA on Linear layers (src/nn/lora.ts) against PEFT's definition: y = W·x + b + B·A·dropout(x)·scaling, A ~
// kaiming_uniform(a=√5) = U(±1/√in), B = 0, scaling alpha/r (alpha/√r with rsLoRA); names lora_A.weight /
// lora_B.weight under the layer; gradients into A and B only; merge W += B·A·scaling; state round trips.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CheckpointError, ConfigError } from "../../src/errors.js";
import { LayerNorm, Linear, Module } from "../../src/nn/index.js";
import {
  applyLora,
  type LoraAdapter,
  linearLayers,
  loadLoraState,
  loraLayers,
  loraParameters,
  loraState,
  mergeLora,
  unloadLora,
} from "../../src/nn/lora.js";
import * as torch from "../../src/torch/index.js";
import { AdamW, F, noGrad, randn, type Tensor, tidy } from "../../src/torch/index.js";
import { diff } from "../helpers.js";

type DT = "float32" | "float64" | "bfloat16";

class Net extends Module {
  readonly up: Linear;
  readonly norm: LayerNorm;
  readonly down: Linear;
  constructor(dtype: DT = "float32") {
    super();
    this.up = this.registerModule("up", new Linear(12, 20, { dtype }));
    this.norm = this.registerModule("norm", new LayerNorm(20, 1e-5, { dtype }));
    this.down = this.registerModule("down", new Linear(20, 6, { dtype, bias: false }));
  }
  forward(x: Tensor): Tensor {
    return this.down.forward(this.norm.forward(this.up.forward(x)).relu());
  }
}

function net(dtype: DT = "float32", seed = 0): Net {
  torch.manualSeed(seed);
  return new Net(dtype);
}

function input(rows: number, dtype: DT, seed = 1): Tensor {
  torch.manualSeed(seed);
  return randn([rows, 12], { dtype: "float64" }).to(dtype);
}

const out = (n: Net, x: Tensor) => noGrad(() => n.forward(x).to("float64").toArray());

describe("applyLora", () => {
  test("adapters under PEFT's names, A ~ U(±1/√in), B = 0, everything else frozen, the adapters returned", () => {
    const n = net();
    const params = applyLora(n, { r: 4, alpha: 8, targets: (p) => p === "up" || p === "down", seed: 7 });
    assert.deepEqual(
      [...n.stateDict().keys()],
      [
        "up.weight",
        "up.bias",
        "up.lora_A.weight",
        "up.lora_B.weight",
        "norm.weight",
        "norm.bias",
        "down.weight",
        "down.lora_A.weight",
        "down.lora_B.weight",
      ],
    );
    const up = n.up.lora as LoraAdapter;
    assert.deepEqual(up.A.shape, [4, 12]);
    assert.deepEqual(up.B.shape, [20, 4]);
    assert.deepEqual((n.down.lora as LoraAdapter).A.shape, [4, 20]);
    assert.equal(up.scaling, 2);
    const a = up.A.toArray();
    const bound = 1 / Math.sqrt(12);
    assert.ok(a.every((v) => Math.abs(v) <= bound) && a.some((v) => v !== 0));
    // uniform on ±bound: the sample variance is near bound²/3 (48 draws)
    const variance = a.reduce((s, v) => s + v * v, 0) / a.length;
    assert.ok(Math.abs(variance - bound ** 2 / 3) < 0.5 * (bound ** 2 / 3), `variance ${variance}`);
    assert.ok(up.B.toArray().every((v) => v === 0));
    assert.deepEqual(params, [up.A, up.B, (n.down.lora as LoraAdapter).A, (n.down.lora as LoraAdapter).B]);
    assert.deepEqual(loraParameters(n), params);
    // PEFT's _mark_only_adapters_as_trainable: only the adapters train
    const trainable = [...n.namedParameters()].filter(([, p]) => p.requiresGrad).map(([k]) => k);
    assert.deepEqual(trainable, ["up.lora_A.weight", "up.lora_B.weight", "down.lora_A.weight", "down.lora_B.weight"]);
    assert.equal(n.numParameters(true), 4 * 12 + 20 * 4 + 4 * 20 + 6 * 4);
    // the same seed gives the same A
    const m = net();
    applyLora(m, { r: 4, alpha: 8, targets: (p) => p === "up" || p === "down", seed: 7 });
    assert.deepEqual((m.up.lora as LoraAdapter).A.toArray(), a);
    n.dispose();
    m.dispose();
  });

  test("freeze 'layers' keeps other modules trainable; bias 'all' / 'lora_only' keep biases trainable", () => {
    const n = net();
    applyLora(n, { r: 2, alpha: 2, targets: (p) => p === "up", freeze: "layers" });
    assert.equal(n.up.weight.requiresGrad, false);
    assert.equal(n.up.bias?.requiresGrad, false);
    assert.ok(n.norm.weight?.requiresGrad && n.down.weight.requiresGrad);
    const b = net();
    applyLora(b, { r: 2, alpha: 2, targets: (p) => p === "down", bias: "all" });
    assert.deepEqual(
      [...b.namedParameters()].filter(([, p]) => p.requiresGrad).map(([k]) => k),
      ["up.bias", "norm.bias", "down.lora_A.weight", "down.lora_B.weight"],
    );
    const c = net();
    applyLora(c, { r: 2, alpha: 2, targets: (p) => p === "up", bias: "lora_only" });
    assert.deepEqual(
      [...c.namedParameters()].filter(([, p]) => p.requiresGrad).map(([k]) => k),
      ["up.bias", "up.lora_A.weight", "up.lora_B.weight"],
    );
    for (const m of [n, b, c]) m.dispose();
  });

  for (const dtype of ["float32", "float64", "bfloat16"] as const) {
    test(`${dtype}: the adapted model's output equals the base's exactly before training (B = 0), also in training mode with dropout`, () => {
      const base = net(dtype);
      for (const rows of [3, 17]) {
        // 3 rows: the small-batch Linear kernel; 17: libtorch's
        const x = input(rows, dtype);
        const expected = out(base, x);
        const n = net(dtype);
        applyLora(n, { r: 4, alpha: 16, dropout: 0.5, targets: () => true, seed: 3 });
        assert.equal((n.up.lora as LoraAdapter).dtype, dtype);
        n.eval();
        assert.deepEqual(out(n, x), expected);
        n.train();
        assert.deepEqual(out(n, x), expected);
        n.dispose();
      }
      base.dispose();
    });
  }

  test("forward = W·x + b + B·A·x·alpha/r (and alpha/√r with rsLoRA), float64", () => {
    for (const useRslora of [false, true]) {
      const n = net("float64");
      applyLora(n, { r: 3, alpha: 5, targets: (p) => p === "up", init: false, seed: 11, useRslora });
      n.eval();
      const x = input(5, "float64");
      const a = n.up.lora as LoraAdapter;
      const s = useRslora ? 5 / Math.sqrt(3) : 5 / 3;
      assert.equal(a.scaling, s);
      const got = noGrad(() => n.up.forward(x));
      const want = noGrad(() => F.linear(x, n.up.weight, n.up.bias).add(x.matmul(a.A.t()).matmul(a.B.t()).mul(s)));
      assert.ok(diff(got, want).maxAbs < 1e-14, JSON.stringify(diff(got, want)));
      // and it is not the base layer's output
      assert.ok(
        diff(
          got,
          noGrad(() => F.linear(x, n.up.weight, n.up.bias)),
        ).maxAbs > 1e-3,
      );
      n.dispose();
    }
  });

  test("dropout acts on the adapter's input in training mode only", () => {
    const n = net("float64");
    applyLora(n, { r: 4, alpha: 4, dropout: 0.5, targets: (p) => p === "up", init: false, seed: 5 });
    const x = input(8, "float64");
    n.eval();
    const e1 = out(n, x);
    assert.deepEqual(out(n, x), e1);
    n.train();
    torch.manualSeed(1);
    const t1 = out(n, x);
    torch.manualSeed(2);
    const t2 = out(n, x);
    assert.ok(diff(t1, e1).maxAbs > 1e-6 && diff(t1, t2).maxAbs > 1e-6);
    // with the adapter's term removed, training and eval agree: the base path has no dropout
    const a = n.up.lora as LoraAdapter;
    noGrad(() => a.B.zero_());
    assert.deepEqual(out(n, x), out(n.eval(), x));
    n.dispose();
  });

  test("autograd: gradients reach A and B only, and equal the analytic ones (float64)", () => {
    const n = net("float64");
    applyLora(n, { r: 3, alpha: 6, targets: (p) => p === "up", init: false, seed: 2 });
    const x = input(7, "float64");
    torch.manualSeed(9);
    const c = randn([7, 20], { dtype: "float64" });
    tidy(() => n.up.forward(x).mul(c).sum().backward());
    const a = n.up.lora as LoraAdapter;
    // y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, L = Σ y∘c:  dL/dB = s·cᵀ·(x·Aᵀ),  dL/dA = s·(c·B)ᵀ·x
    const s = a.scaling;
    const gB = noGrad(() => c.t().matmul(x.matmul(a.A.t())).mul(s));
    const gA = noGrad(() => c.matmul(a.B).t().matmul(x).mul(s));
    assert.ok(diff(a.B.grad!, gB).relToScale < 1e-13);
    assert.ok(diff(a.A.grad!, gA).relToScale < 1e-13);
    assert.equal(n.up.weight.grad, null);
    assert.equal(n.up.bias?.grad ?? null, null);
    n.dispose();
  });

  test("bfloat16: forward, backward and an AdamW step train the adapters in bfloat16", () => {
    const n = net("bfloat16");
    const params = applyLora(n, { r: 4, alpha: 8, targets: () => true, seed: 4 });
    const before = params.map((p) => p.toArray());
    const w = n.up.weight.toArray();
    const opt = new AdamW(params, { lr: 1e-2 });
    const x = input(9, "bfloat16");
    for (let i = 0; i < 2; i++)
      tidy(() => {
        n.forward(x).float().square().mean().backward();
        opt.step();
        opt.zeroGrad();
      });
    opt.dispose();
    assert.ok(params.every((p) => p.dtype === "bfloat16"));
    for (const [i, p] of params.entries())
      assert.notDeepEqual(p.toArray(), before[i], `adapter tensor ${i} did not change`);
    assert.deepEqual(n.up.weight.toArray(), w);
    n.dispose();
  });

  test("errors: no layer selected, a layer adapted twice, a bad rank", () => {
    const n = net();
    assert.throws(() => applyLora(n, { r: 2, alpha: 2, targets: () => false }), ConfigError);
    applyLora(n, { r: 2, alpha: 2, targets: (p) => p === "up" });
    assert.throws(
      () => applyLora(n, { r: 2, alpha: 2, targets: (p) => p === "up" }),
      (e: Error) => e instanceof ConfigError && /"up" already has an adapter/.test(e.message),
    );
    assert.throws(() => applyLora(n, { r: 0, alpha: 2, targets: (p) => p === "down" }), /rank r 0/);
    assert.throws(() => applyLora(n, { r: 2.5, alpha: 2, targets: (p) => p === "down" }), /rank r 2.5/);
    n.dispose();
  });
});

describe("mergeLora / unloadLora", () => {
  test("float64: the merged model's output equals the adapter model's within 1e-12; the adapters are gone", () => {
    const n = net("float64");
    applyLora(n, { r: 4, alpha: 8, targets: () => true, init: false, seed: 6 });
    n.eval();
    const x = input(11, "float64");
    const withAdapters = out(n, x);
    const a = n.up.lora as LoraAdapter;
    const expectedW = noGrad(() => n.up.weight.add(a.B.matmul(a.A).mul(a.scaling))).toArray();
    assert.deepEqual(mergeLora(n), ["up", "down"]);
    assert.deepEqual(n.up.weight.toArray(), expectedW);
    assert.ok(diff(out(n, x), withAdapters).maxAbs < 1e-12);
    assert.deepEqual([...n.stateDict().keys()], ["up.weight", "up.bias", "norm.weight", "norm.bias", "down.weight"]);
    assert.equal(loraLayers(n).length, 0);
    assert.equal(n.up.lora, null);
    n.dispose();
  });

  test("bfloat16: the delta is computed in float32 and rounded once (PEFT's get_delta_weight on CPU)", () => {
    const n = net("bfloat16");
    applyLora(n, { r: 4, alpha: 8, targets: (p) => p === "up", init: false, seed: 8 });
    const a = n.up.lora as LoraAdapter;
    const want = noGrad(() => n.up.weight.add(a.B.float().matmul(a.A.float()).mul(a.scaling).to("bfloat16"))).toArray();
    mergeLora(n);
    assert.deepEqual(n.up.weight.toArray(), want);
    assert.equal(n.up.weight.dtype, "bfloat16");
    n.dispose();
  });

  test("unload removes the adapters without merging: the base output exactly", () => {
    const base = net();
    const x = input(5, "float32");
    const expected = out(base, x);
    const n = net();
    applyLora(n, { r: 4, alpha: 8, targets: () => true, init: false });
    assert.notDeepEqual(out(n.eval(), x), expected);
    assert.deepEqual(unloadLora(n), ["up", "down"]);
    assert.deepEqual(out(n, x), expected);
    base.dispose();
    n.dispose();
  });

  test("int8-quantised layers: a float32 adapter adds its term to the int8 output, but cannot be merged", () => {
    const n = net();
    n.up.quantizeInt8();
    const x = input(10, "float32");
    const base = noGrad(() => n.up.forward(x));
    const params = applyLora(n, { r: 2, alpha: 2, targets: (p) => p === "up", init: false, seed: 3 });
    assert.equal(params[0]?.dtype, "float32");
    const a = n.up.lora as LoraAdapter;
    const want = noGrad(() => base.add(x.matmul(a.A.t()).matmul(a.B.t()).mul(a.scaling)));
    assert.ok(
      diff(
        noGrad(() => n.up.forward(x)),
        want,
      ).maxAbs < 1e-5,
    );
    assert.throws(
      () => mergeLora(n),
      (e: Error) => e instanceof ConfigError && /"up".*int8/.test(e.message),
    );
    n.dispose();
  });
});

describe("loraState / loadLoraState", () => {
  test("a round trip gives identical outputs; to(dtype) casts the adapters with the model", () => {
    const a = net();
    applyLora(a, { r: 3, alpha: 6, targets: () => true, init: false, seed: 1 });
    const b = net();
    applyLora(b, { r: 3, alpha: 6, targets: () => true, seed: 99 });
    const x = input(6, "float32");
    assert.notDeepEqual(out(b.eval(), x), out(a.eval(), x));
    assert.deepEqual(
      [...loraState(a).keys()],
      ["up.lora_A.weight", "up.lora_B.weight", "down.lora_A.weight", "down.lora_B.weight"],
    );
    loadLoraState(b, loraState(a));
    assert.deepEqual(out(b, x), out(a, x));
    const A = (a.up.lora as LoraAdapter).A;
    a.to("float64");
    assert.equal(A.dtype, "float64");
    assert.equal((a.up.lora as LoraAdapter).A, A);
    a.dispose();
    b.dispose();
  });

  test("missing, unexpected and mis-shaped tensors are errors naming them", () => {
    const n = net();
    applyLora(n, { r: 3, alpha: 6, targets: () => true });
    const sd = new Map(loraState(n));
    sd.delete("down.lora_B.weight");
    sd.set("norm.lora_A.weight", torch.zeros([3, 20]));
    assert.throws(
      () => loadLoraState(n, sd, { source: "a.safetensors" }),
      (e: Error) =>
        e instanceof CheckpointError &&
        /^a.safetensors: /.test(e.message) &&
        /missing keys \(1\): down.lora_B.weight/.test(e.message) &&
        /unexpected keys \(1\): norm.lora_A.weight/.test(e.message),
    );
    assert.throws(
      () => loadLoraState(n, new Map([["up.lora_A.weight", torch.zeros([4, 12])]]), { strict: false }),
      /shape mismatch for "up.lora_A.weight": checkpoint has \[4, 12\], model expects \[3, 12\]/,
    );
    const plain = net();
    assert.throws(() => loadLoraState(plain, loraState(n)), /no LoRA adapters/);
    assert.equal(linearLayers(plain).length, 2);
    n.dispose();
    plain.dispose();
  });
});
