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
    const state = opt.stateDict();
    assert.equal(state[0]?.step, 1);
    assertClose(state[0]!.expAvg, [0.2], { rtol: 1e-14 });
    const c = p64([1]);
    const d = p64([1]);
    const opt2 = new AdamW([{ params: [c] }, { params: [d] }], { lr: 0.1 });
    opt2.loadStateDict(state);
    assert.equal(opt2.stateDict()[1]?.step, 1);
    opt.dispose();
    opt2.dispose();
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
