// SGD, parameter groups, LR schedules and gradient clipping against hand-computed values.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as torch from "../../src/torch/index.js";
import { AdamW, clipGradNorm, LRScheduler, lrMultiplier, SGD, tensor, tidy } from "../../src/torch/index.js";
import { assertClose } from "../helpers.js";

const p64 = (v: number[]) => tensor(v, { dtype: "float64" }).requiresGrad_(true);

test("SGD with momentum and weight decay", () => {
  tidy(() => {
    const p = p64([1, -2]);
    const opt = new SGD([p], { lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
    for (let i = 0; i < 2; i++) {
      opt.zeroGrad();
      p.square().sum().backward(); // grad = 2p
      opt.step();
    }
    // by hand: g1 = 2p0 + 0.01 p0; b1 = g1; p1 = p0 - 0.1 b1; g2 = 2p1 + 0.01 p1; b2 = 0.9 b1 + g2; p2 = p1 - 0.1 b2
    const exp = [1, -2].map((p0) => {
      const g1 = 2.01 * p0;
      const p1 = p0 - 0.1 * g1;
      const b2 = 0.9 * g1 + 2.01 * p1;
      return p1 - 0.1 * b2;
    });
    assertClose(p, exp, { rtol: 1e-14 });
    opt.dispose();
  });
});

test("AdamW parameter groups with their own lr and weight decay; state export/import", () => {
  tidy(() => {
    const a = p64([1]);
    const b = p64([1]);
    const opt = new AdamW(
      [
        { params: [a], lr: 0.1, weightDecay: 0 },
        { params: [b], lr: 0.01, weightDecay: 0.5 },
      ],
      { lr: 1 },
    );
    a.grad = tensor([2], { dtype: "float64" });
    b.grad = tensor([2], { dtype: "float64" });
    opt.step();
    // step 1: update = lr * g/(|g| + eps) ≈ lr; decoupled decay multiplies by (1 - lr·wd) first
    assertClose(a, [1 - 0.1 * (2 / (2 + 1e-8))], { rtol: 1e-14 });
    assertClose(b, [1 * (1 - 0.01 * 0.5) - 0.01 * (2 / (2 + 1e-8))], { rtol: 1e-14 });
    assert.equal(opt.getLr(0), 0.1);
    assert.equal(opt.getLr(1), 0.01);
    opt.dispose();
  });
});

test("AdamW state export/import: the moments' values, and a step after reload equals a step without", () => {
  tidy(() => {
    const groups = (a: torch.Tensor, b: torch.Tensor) => [
      { params: [a], lr: 0.1, weightDecay: 0 },
      { params: [b], lr: 0.01, weightDecay: 0.5 },
    ];
    const a = p64([1, -2]);
    const b = p64([3]);
    const opt = new AdamW(groups(a, b), { lr: 1, betas: [0.9, 0.99] });
    const grads = [
      [tensor([2, -1], { dtype: "float64" }), tensor([0.5], { dtype: "float64" })],
      [tensor([-1, 4], { dtype: "float64" }), tensor([1.5], { dtype: "float64" })],
    ];
    a.grad = grads[0]![0]!;
    b.grad = grads[0]![1]!;
    opt.step();
    const state = opt.stateDict();
    // after one step: m = (1 − β1)·g, v = (1 − β2)·g², step 1 (PyTorch's AdamW)
    assert.deepEqual(
      state.map((s) => s?.step),
      [1, 1],
    );
    assertClose(state[0]!.expAvg, [0.1 * 2, 0.1 * -1], { rtol: 1e-15 });
    assertClose(state[0]!.expAvgSq, [0.01 * 4, 0.01 * 1], { rtol: 1e-15 });
    assertClose(state[1]!.expAvg, [0.1 * 0.5], { rtol: 1e-15 });
    assertClose(state[1]!.expAvgSq, [0.01 * 0.25], { rtol: 1e-15 });
    // a second optimiser over copies of the parameters, loaded with that state
    const c = a.detach().clone().requiresGrad_(true);
    const d = b.detach().clone().requiresGrad_(true);
    const opt2 = new AdamW(groups(c, d), { lr: 1, betas: [0.9, 0.99] });
    opt2.loadStateDict(state);
    const loaded = opt2.stateDict();
    loaded.forEach((s, i) => {
      assert.equal(s?.step, state[i]?.step);
      assert.deepEqual(s!.expAvg.toArray(), state[i]!.expAvg.toArray());
      assert.deepEqual(s!.expAvgSq.toArray(), state[i]!.expAvgSq.toArray());
    });
    // the same second step on both: identical parameters and moments (the loaded moments are copies: were they
    // shared, both optimisers would update them and the results would differ)
    for (const [p, g] of [
      [a, grads[1]![0]!],
      [b, grads[1]![1]!],
      [c, grads[1]![0]!],
      [d, grads[1]![1]!],
    ] as const)
      p.grad = g;
    opt.step();
    opt2.step();
    assert.deepEqual(c.toArray(), a.toArray());
    assert.deepEqual(d.toArray(), b.toArray());
    const s1 = opt.stateDict();
    const s2 = opt2.stateDict();
    s2.forEach((s, i) => {
      assert.equal(s?.step, 2);
      assert.deepEqual(s!.expAvg.toArray(), s1[i]!.expAvg.toArray());
      assert.deepEqual(s!.expAvgSq.toArray(), s1[i]!.expAvgSq.toArray());
    });
    // and a step without the reload (fresh moments) would differ: the state matters
    const e = a.detach().clone().requiresGrad_(true);
    const fresh = new AdamW([{ params: [e], lr: 0.1, weightDecay: 0 }], { lr: 1, betas: [0.9, 0.99] });
    const e0 = e.toArray();
    e.grad = grads[1]![0]!;
    fresh.step();
    const withState = tidy(() => {
      const f = a.detach().clone().requiresGrad_(true);
      const o = new AdamW([{ params: [f], lr: 0.1, weightDecay: 0 }], { lr: 1, betas: [0.9, 0.99] });
      o.loadStateDict([s1[0]!]);
      f.grad = grads[1]![0]!;
      o.step();
      o.dispose();
      return f.toArray();
    });
    assert.notDeepEqual(withState, e.toArray());
    assert.notDeepEqual(e.toArray(), e0);
    // malformed states are refused, leaving the optimiser unchanged
    assert.throws(() => opt2.loadStateDict([state[0]!]), /1 entries but the optimiser has 2 parameters/);
    assert.throws(() => opt2.loadStateDict([state[1]!, state[0]!]), /adamw state shape does not match parameter 0/);
    assert.equal(opt2.stateDict()[0]?.step, 2);
    fresh.dispose();
    opt.dispose();
    opt2.dispose();
  });
});

test("assigning a gradient checks its shape, dtype and device (as PyTorch's .grad = …)", () => {
  tidy(() => {
    const p = p64([1, 2, 3]);
    // broadcastable to [3] but not [3]: accepted before, and AdamW then applied a [1]-shaped update
    assert.throws(() => {
      p.grad = tensor([1], { dtype: "float64" });
    }, /assigned grad has shape \[1\] but the tensor has shape \[3\]/);
    assert.throws(() => {
      p.grad = tensor([[1, 2, 3]], { dtype: "float64" });
    }, /assigned grad has shape \[1, 3\] but the tensor has shape \[3\]/);
    assert.throws(() => {
      p.grad = tensor([1, 2, 3], { dtype: "float32" });
    }, /assigned grad has dtype Float but the tensor has dtype Double/);
    assert.equal(p.grad, null, "a refused gradient is not set");
    p.grad = tensor([1, 1, 1], { dtype: "float64" });
    const opt = new AdamW([p], { lr: 0.1, weightDecay: 0 });
    opt.step();
    assertClose(p, [0.9, 1.9, 2.9], { rtol: 1e-7 });
    opt.dispose();
  });
});

test("LR schedules: warm-up then cosine/linear/constant", () => {
  assert.equal(lrMultiplier("cosine", 0, 100, 10), 0);
  assert.equal(lrMultiplier("cosine", 5, 100, 10), 0.5);
  assert.equal(lrMultiplier("cosine", 10, 100, 10), 1);
  assertClose([lrMultiplier("cosine", 55, 100, 10)], [0.5], { rtol: 1e-12 });
  assertClose([lrMultiplier("cosine", 100, 100, 10)], [0], { atol: 1e-15 });
  assert.equal(lrMultiplier("linear", 55, 100, 10), 0.5);
  assert.equal(lrMultiplier("constant", 90, 100, 10), 1);
  tidy(() => {
    const opt = new AdamW([p64([1])], { lr: 2e-5 });
    const s = new LRScheduler(opt, "cosine", 100, { warmupRatio: 0.03 });
    assert.equal(s.warmupSteps, 3);
    assert.equal(opt.getLr(), 0);
    s.step();
    assertClose([opt.getLr()], [2e-5 / 3], { rtol: 1e-12 });
    s.setStep(3);
    assertClose([opt.getLr()], [2e-5], { rtol: 1e-12 });
    opt.dispose();
  });
});

test("clipGradNorm scales all gradients by max/(total+1e-6) and returns the total norm", () => {
  tidy(() => {
    const a = p64([0]);
    const b = p64([0, 0]);
    a.grad = tensor([3], { dtype: "float64" });
    b.grad = tensor([0, 4], { dtype: "float64" });
    const total = clipGradNorm([a, b], 1);
    assert.equal(total, 5);
    assertClose(a.grad!, [3 / (5 + 1e-6)], { rtol: 1e-14 });
    assertClose(b.grad!, [0, 4 / (5 + 1e-6)], { rtol: 1e-14 });
    const after = clipGradNorm([a, b], 10);
    assertClose([after], [5 / (5 + 1e-6)], { rtol: 1e-12 });
    assertClose(a.grad!, [3 / (5 + 1e-6)], { rtol: 1e-14 });
    const c = p64([1]);
    assert.equal(clipGradNorm([c], 1), 0, "no gradients: norm 0");
    torch.noGrad(() => assert.equal(torch.isGradEnabled(), false));
  });
});
