// Logits processors against closed forms (HF's definitions).
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  applyRepetitionPenalty,
  chooseTokens,
  resolveSampling,
  topKFilter,
  topPFilter,
} from "../../src/generation/logits.js";
import { Generator, tensor, tidy } from "../../src/torch/index.js";

const NEG = Number.NEGATIVE_INFINITY;

test("repetition penalty: seen positive logits divided, negative multiplied, others untouched", () => {
  tidy(() => {
    const x = tensor(
      [
        [2, -1, 0.5, -3],
        [1, 1, 1, 1],
      ],
      { dtype: "float32" },
    );
    const y = applyRepetitionPenalty(x, [[0, 1, 1], []], 2).toArray();
    assert.deepEqual(y, [1, -2, 0.5, -3, 1, 1, 1, 1]);
  });
});

test("top-k keeps the k largest of each row", () => {
  tidy(() => {
    const x = tensor(
      [
        [1, 5, 3, 4],
        [0, -1, 2, 1],
      ],
      { dtype: "float32" },
    );
    assert.deepEqual(topKFilter(x, 2).toArray(), [NEG, 5, NEG, 4, NEG, NEG, 2, 1]);
    assert.deepEqual(topKFilter(x, 0).toArray(), x.toArray());
  });
});

test("top-p keeps the smallest set reaching p (HF: drop cumulative ≤ 1 − p from the least likely up)", () => {
  tidy(() => {
    // probabilities 0.5, 0.25, 0.125, 0.125 (logits are their logs)
    const p = [0.5, 0.25, 0.125, 0.125];
    const x = tensor([p.map(Math.log)], { dtype: "float32" });
    // p = 0.7: drop tokens while the ascending cumulative sum ≤ 0.3: 0.125, 0.25 (the two 0.125s) → keep 0.5, 0.25
    assert.deepEqual(
      topPFilter(x, 0.7)
        .toArray()
        .map((v) => Number.isFinite(v)),
      [true, true, false, false],
    );
    // p tiny: the most likely token always stays
    assert.deepEqual(
      topPFilter(x, 0.01)
        .toArray()
        .map((v) => Number.isFinite(v)),
      [true, false, false, false],
    );
  });
});

test("temperature 0 is greedy; a seed fixes the draw", () => {
  assert.equal(resolveSampling({ temperature: 0 }).doSample, false);
  assert.equal(resolveSampling({ temperature: 0.5 }).doSample, true);
  tidy(() => {
    const s = resolveSampling({ temperature: 1 });
    const x = tensor([[0, 0, 0, 0, 0, 0, 0, 0]], { dtype: "float32" });
    const draw = (seed: number) => Array.from({ length: 20 }, () => chooseTokens(x, s, genFor(seed))[0]);
    const gens = new Map<number, Generator>();
    const genFor = (seed: number) => {
      if (!gens.has(seed)) gens.set(seed, new Generator(seed));
      return gens.get(seed) as Generator;
    };
    const a = draw(7);
    gens.clear();
    const b = draw(7);
    assert.deepEqual(a, b);
    assert.ok(new Set(a).size > 2, "a uniform draw visits several tokens");
  });
});
