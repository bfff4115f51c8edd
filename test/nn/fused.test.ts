// The fused inference kernels (native/src/kernels.cpp, fused.cpp) against the eager ops they replace: decode
// attention over a KV cache (grouped heads, padding masks, several new positions), RMSNorm (Llama's and Gemma's),
// rotary embeddings (full and partial) — in float32, bfloat16 and float16 — and that each steps aside (returns null /
// falls back) where libtorch must run: float64 and autograd.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { causalMask, softmaxFreeing } from "../../src/models/llm/base.js";
import { getActivation } from "../../src/nn/activations.js";
import { Linear, linearGroup } from "../../src/nn/layers.js";
import * as lowp from "../../src/nn/lowp.js";
import { RotaryEmbedding } from "../../src/nn/rope.js";
import { noGrad } from "../../src/torch/autograd.js";
import { arange, manualSeed, randn, tensor } from "../../src/torch/creation.js";
import type { DType } from "../../src/torch/dtype.js";
import * as F from "../../src/torch/functional.js";
import { tidy } from "../../src/torch/memory.js";
import { native } from "../../src/torch/native.js";
import type { Tensor } from "../../src/torch/tensor.js";
import { diff } from "../helpers.js";

/** Eager attention as Attention.forward computes it without the kernel: float32 softmax of q·kᵀ·scale + mask. */
function eagerAttention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | null): Tensor {
  const [B, H, L, D] = q.shape as [number, number, number, number];
  const KV = k.size(1);
  const S = k.size(2);
  const G = H / KV;
  const qg = G === 1 ? q : q.reshape(B, KV, G * L, D);
  const scores = lowp.matmul(qg, k.transpose(-2, -1)).mul_(1 / Math.sqrt(D));
  if (mask) (G === 1 ? scores : scores.view(B, KV, G, L, S)).add_(G === 1 ? mask : mask.unsqueeze(1));
  const probs = softmaxFreeing(scores, q.dtype);
  return lowp.matmul(probs.view(B, KV, G * L, S), v).view(B, H, L, D);
}

const TOL: Record<string, number> = { float32: 2e-6, bfloat16: 2e-2, float16: 4e-3 };

describe("decode attention kernel", () => {
  for (const dtype of ["float32", "bfloat16", "float16"] as const) {
    test(`${dtype}: equals eager attention (GQA, MHA; 1–3 new positions; with and without padding)`, () =>
      noGrad(() =>
        tidy(() => {
          manualSeed(1);
          for (const [B, H, KV, D, S, L] of [
            [1, 14, 2, 64, 37, 1],
            [2, 4, 4, 16, 9, 1],
            [2, 6, 3, 24, 21, 3],
            [1, 8, 1, 80, 130, 2],
          ] as const) {
            // keys/values as a cache holds them: a prefix of a longer buffer
            const kBuf = randn([B, KV, S + 7, D]).to(dtype);
            const vBuf = randn([B, KV, S + 7, D]).to(dtype);
            const k = kBuf.narrow(2, 0, S);
            const v = vBuf.narrow(2, 0, S);
            const q = randn([B, L, H, D]).to(dtype).transpose(1, 2); // the projection's layout
            const past = S - L;
            // row 1 (if any) is left-padded by 4 positions
            const padded = B > 1 ? [Array(S).fill(1), [...Array(4).fill(0), ...Array(S - 4).fill(1)]] : null;
            for (const m of [null, padded]) {
              if (L === 1 && m === null && B > 1) continue;
              const attn = m ? tensor(m.slice(0, B), { dtype: "int64" }) : null;
              const mask = L === 1 && !attn ? null : causalMask(attn, B, L, dtype, past);
              const want = eagerAttention(q, k, v, mask).to("float32");
              const got = lowp.attendDecode(q, k, v, mask, 1 / Math.sqrt(D), past);
              assert.ok(got, "the kernel runs here");
              assert.deepEqual(got.shape, [B, H, L, D]);
              const d = diff(got.to("float32"), want);
              assert.ok(d.maxAbs < (TOL[dtype] as number), `${dtype} B${B} H${H} KV${KV} L${L}: ${JSON.stringify(d)}`);
            }
          }
        }),
      ));
  }

  test("steps aside for float64, autograd, and more than 8 new positions", () =>
    tidy(() => {
      const q = randn([1, 2, 1, 8]);
      const k = randn([1, 2, 5, 8]);
      assert.equal(lowp.attendDecode(q.to("float64"), k.to("float64"), k.to("float64"), null, 1, 4), null);
      assert.equal(lowp.attendDecode(randn([1, 2, 9, 8]), randn([1, 2, 9, 8]), randn([1, 2, 9, 8]), null, 1, 0), null);
      const qg = randn([1, 2, 1, 8]).requiresGrad_(true);
      assert.equal(lowp.attendDecode(qg, k, k, null, 1, 4), null);
    }));
});

describe("fused RMSNorm", () => {
  for (const dtype of ["float32", "bfloat16", "float16"] as const) {
    for (const unitOffset of [false, true]) {
      test(`${dtype}${unitOffset ? " (Gemma's 1 + w)" : ""}: equals the eager ops`, () =>
        tidy(() => {
          manualSeed(2);
          const x = randn([3, 5, 96]).mul(3).to(dtype);
          const w = randn([96]).to(dtype);
          const got = F.rmsNorm(x, w, 1e-6, { addUnitOffset: unitOffset, float32Compute: true });
          const h = native.rmsNormFused(x.handle, w.handle, 1e-6, unitOffset);
          assert.ok(h !== undefined, "the fused kernel runs here");
          // the eager reference: the same function with autograd on (the kernel steps aside then)
          const xg = x.clone().requiresGrad_(true);
          const want = F.rmsNorm(xg, w, 1e-6, { addUnitOffset: unitOffset, float32Compute: true }).detach();
          assert.equal(got.dtype, want.dtype);
          const d = diff(got.to("float32"), want.to("float32"));
          // only the order of the sum of squares differs: float32 to a few ulp, low precision to one rounding step
          const tol = dtype === "float32" ? 1e-5 : dtype === "bfloat16" ? 0.05 : 0.01;
          assert.ok(d.maxAbs < tol, `${dtype}: ${JSON.stringify(d)}`);
        }));
    }
  }
});

describe("fused LayerNorm", () => {
  for (const dtype of ["bfloat16", "float16"] as const) {
    test(`${dtype}: equals libtorch's LayerNorm (statistics in float32, one rounding)`, () =>
      tidy(() => {
        manualSeed(5);
        const x = randn([4, 7, 72]).mul(2).add(0.5).to(dtype);
        const w = randn([72]).to(dtype);
        const b = randn([72]).to(dtype);
        const h = native.layerNormFused(x.handle, w.handle, b.handle, 1e-6);
        assert.ok(h !== undefined, "the fused kernel runs here");
        const got = F.layerNorm(x, [72], w, b, 1e-6);
        // libtorch's LayerNorm in float32 on the exact inputs, rounded once (libtorch 1.x has no float16 CPU kernel)
        const want = F.layerNorm(x.to("float32"), [72], w.to("float32"), b.to("float32"), 1e-6).to(dtype);
        const d = diff(got.to("float32"), want.to("float32"));
        if (dtype === "bfloat16") {
          const eager = F.layerNorm(x.clone().requiresGrad_(true), [72], w, b, 1e-6).detach(); // autograd: libtorch
          const de = diff(got.to("float32"), eager.to("float32"));
          assert.ok(de.relToScale < 0.01, `vs libtorch bfloat16: ${JSON.stringify(de)}`);
        }
        assert.ok(d.relToScale < (dtype === "bfloat16" ? 0.01 : 0.002), `${dtype}: ${JSON.stringify(d)}`);
      }));
  }
});

describe("fused rotary embeddings", () => {
  for (const dtype of ["float32", "bfloat16", "float16"] as const) {
    for (const partial of [1, 0.5]) {
      test(`${dtype}, rotary fraction ${partial}: identical to the eager ops`, () =>
        tidy(() => {
          manualSeed(3);
          const rope = new RotaryEmbedding({ headDim: 32, theta: 10000, partialRotaryFactor: partial });
          const pos = arange(5, 12).unsqueeze(0).expand(2, 7);
          const { cos, sin } = rope.cosSin(pos, dtype as DType);
          const x = randn([2, 7, 4, 32]).to(dtype).transpose(1, 2); // [B, H, L, D] as projections are
          const got = rope.apply(x, cos, sin);
          assert.deepEqual(got.stride(), x.stride(), "the output keeps the projection's layout");
          const xg = x.clone().requiresGrad_(true); // autograd on: the eager path
          const want = rope.apply(xg, cos, sin).detach();
          assert.deepEqual(got.shape, want.shape);
          assert.equal(diff(got.to("float32"), want.to("float32")).maxAbs, 0);
        }));
    }
  }
});

describe("grouped decode products", () => {
  for (const dtype of ["float32", "bfloat16"] as const) {
    test(`${dtype}: q/k/v in one pass equal the layers one by one; gated products equal act(gate)·up`, () =>
      noGrad(() =>
        tidy(() => {
          manualSeed(4);
          const x = randn([2, 1, 40]).to(dtype);
          const layers = [
            new Linear(40, 24, { dtype }),
            new Linear(40, 8, { dtype, bias: false }),
            new Linear(40, 8, { dtype }),
          ];
          const together = linearGroup(layers, x);
          layers.forEach((l, i) => {
            assert.equal(diff(together[i] as Tensor, l.forward(x)).maxAbs, 0, `layer ${i}`);
          });
          for (const name of ["silu", "gelu_pytorch_tanh", "gelu"]) {
            const act = getActivation(name);
            const [g, u] = [new Linear(40, 33, { dtype }), new Linear(40, 33, { dtype })];
            const fused = linearGroup([g, u], x, act);
            const eager = act(g.forward(x)).mul(u.forward(x));
            const d = diff(fused.to("float32"), eager.to("float32"));
            assert.ok(d.relToScale <= (dtype === "float32" ? 1e-6 : 0.02), `${name}: ${JSON.stringify(d)}`);
          }
          // int8 weights with their scales
          const q8 = new Linear(40, 16, { dtype });
          q8.quantizeInt8();
          assert.equal(diff(linearGroup([q8], x)[0] as Tensor, q8.forward(x)).maxAbs, 0);
        }),
      ));
  }
});
