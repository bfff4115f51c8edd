// Op results against independently known values (hand-computed or closed-form).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import * as torch from "../../src/torch/index.js";
import { F, tensor, tidy } from "../../src/torch/index.js";
import { native } from "../../src/torch/native.js";
import { assertClose, expectedThreads, loadedLibraries, openblasLoaded, ROOT } from "../helpers.js";

const t64 = (d: unknown, shape?: number[]) => tensor(d as number[], { dtype: "float64", ...(shape ? { shape } : {}) });

describe("creation and data", () => {
  test("dtypes round-trip through typed arrays", () => {
    tidy(() => {
      for (const dtype of torch.DTYPES) {
        const x = tensor([1, 0, 2, 3], { dtype: dtype === "bool" ? "bool" : dtype });
        assert.equal(x.dtype, dtype);
        assert.deepEqual(x.shape, [4]);
        const expected = dtype === "bool" ? [1, 0, 1, 1] : [1, 0, 2, 3];
        assert.deepEqual(x.toArray(), expected, dtype);
      }
    });
  });
  test("zeros/ones/full/arange/eye", () => {
    tidy(() => {
      assert.deepEqual(torch.zeros([2, 2]).toArray(), [0, 0, 0, 0]);
      assert.deepEqual(torch.ones([3], { dtype: "int32" }).toArray(), [1, 1, 1]);
      assert.deepEqual(torch.full([2], 7.5, { dtype: "float64" }).toArray(), [7.5, 7.5]);
      assert.deepEqual(torch.arange(5).toArray(), [0, 1, 2, 3, 4]);
      assert.equal(torch.arange(5).dtype, "int64");
      assert.deepEqual(torch.arange(1, 2, 0.25, { dtype: "float64" }).toArray(), [1, 1.25, 1.5, 1.75]);
      assert.deepEqual(torch.eye(2).toArray(), [1, 0, 0, 1]);
      assert.deepEqual(
        t64([
          [1, 2],
          [3, 4],
        ]).tolist(),
        [
          [1, 2],
          [3, 4],
        ],
      );
      assert.equal(t64([5]).item(), 5);
    });
  });
  test("seeded generators reproduce", () => {
    tidy(() => {
      const a = torch.randn([5], { generator: new torch.Generator(42) }).toArray();
      const b = torch.randn([5], { generator: new torch.Generator(42) }).toArray();
      const c = torch.randn([5], { generator: new torch.Generator(43) }).toArray();
      assert.deepEqual(a, b);
      assert.notDeepEqual(a, c);
      torch.manualSeed(7);
      const d = torch.rand([4]).toArray();
      torch.manualSeed(7);
      assert.deepEqual(torch.rand([4]).toArray(), d);
      assert.ok(d.every((v) => v >= 0 && v < 1));
      const r = torch.randint(0, 3, [100], { generator: new torch.Generator(1) }).toArray();
      assert.ok(r.every((v) => v >= 0 && v < 3 && Number.isInteger(v)));
    });
  });
  test("fromBuffer copies raw bytes; bfloat16/float16 read back as float32", () => {
    tidy(() => {
      const f = new Float32Array([1.5, -2, 3.25]);
      const x = torch.fromBuffer(Buffer.from(f.buffer), "float32", [3]);
      assert.deepEqual(x.toArray(), [1.5, -2, 3.25]);
      const bf = x.to("bfloat16");
      assert.equal(bf.dtype, "bfloat16");
      assert.deepEqual(bf.toArray(), [1.5, -2, 3.25]);
      assert.equal(bf.toBuffer().length, 6);
      assert.throws(() => torch.fromBuffer(Buffer.alloc(5), "float32", [2]), /needs 8 bytes/);
    });
  });
});

describe("elementwise", () => {
  test("arithmetic with tensors and scalars, broadcasting", () => {
    tidy(() => {
      const a = t64([
        [1, 2],
        [3, 4],
      ]);
      const b = t64([10, 20]);
      assert.deepEqual(a.add(b).toArray(), [11, 22, 13, 24]);
      assert.deepEqual(a.sub(1).toArray(), [0, 1, 2, 3]);
      assert.deepEqual(a.mul(b).toArray(), [10, 40, 30, 80]);
      assert.deepEqual(a.div(2).toArray(), [0.5, 1, 1.5, 2]);
      assert.deepEqual(a.pow(2).toArray(), [1, 4, 9, 16]);
      assert.deepEqual(a.add(b, 2).toArray(), [21, 42, 23, 44]);
      assert.deepEqual(a.rsub(10).toArray(), [9, 8, 7, 6]);
      assert.deepEqual(a.neg().abs().toArray(), [1, 2, 3, 4]);
      assert.deepEqual(a.clamp(2, 3).toArray(), [2, 2, 3, 3]);
      assert.deepEqual(a.clamp(null, 2).toArray(), [1, 2, 2, 2]);
      assert.deepEqual(a.maximum(t64([2, 2])).toArray(), [2, 2, 3, 4]);
    });
  });
  test("transcendental functions match Math", () => {
    tidy(() => {
      const xs = [-2, -0.5, 0.1, 1.3];
      const x = t64(xs);
      const erf = (v: number) => {
        // Abramowitz-Stegun 7.1.26 is too coarse; use the series for a reference to 1e-15.
        let sum = 0;
        let term = v;
        for (let n = 0; n < 60; n++) {
          sum += term / (2 * n + 1);
          term *= (-v * v) / (n + 1);
        }
        return (2 / Math.sqrt(Math.PI)) * sum;
      };
      const cases: [string, torch.Tensor, (v: number) => number][] = [
        ["exp", x.exp(), Math.exp],
        ["tanh", x.tanh(), Math.tanh],
        ["sigmoid", x.sigmoid(), (v) => 1 / (1 + Math.exp(-v))],
        ["erf", x.erf(), erf],
        ["cos", x.cos(), Math.cos],
        ["sin", x.sin(), Math.sin],
        ["silu", x.silu(), (v) => v / (1 + Math.exp(-v))],
        ["gelu", x.gelu(), (v) => 0.5 * v * (1 + erf(v / Math.SQRT2))],
        [
          "gelu_tanh",
          x.gelu("tanh"),
          (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
        ],
        ["square", x.square(), (v) => v * v],
      ];
      for (const [name, got, f] of cases) assertClose(got, xs.map(f), { rtol: 1e-13, atol: 1e-15, what: name });
      const pos = t64([0.25, 4, 9]);
      assertClose(pos.sqrt(), [0.5, 2, 3], { rtol: 1e-15 });
      assertClose(pos.rsqrt(), [2, 0.5, 1 / 3], { rtol: 1e-15 });
      assertClose(pos.log(), [Math.log(0.25), Math.log(4), Math.log(9)], { rtol: 1e-15 });
    });
  });
  test("comparisons, logic, where, maskedFill", () => {
    tidy(() => {
      const a = t64([1, 2, 3]);
      assert.deepEqual(a.gt(1.5).toArray(), [0, 1, 1]);
      assert.equal(a.gt(1.5).dtype, "bool");
      assert.deepEqual(a.eq(t64([1, 0, 3])).toArray(), [1, 0, 1]);
      assert.deepEqual(a.le(2).logicalNot().toArray(), [0, 0, 1]);
      assert.deepEqual(torch.where(a.lt(2), a, a.neg()).toArray(), [1, -2, -3]);
      assert.deepEqual(a.maskedFill(a.ge(2), -1).toArray(), [1, -1, -1]);
      assert.deepEqual(a.isnan().any().item(), 0);
    });
  });
});

describe("reductions", () => {
  test("sum/mean/max/min/argmax/var/norm/logsumexp/cumsum", () => {
    tidy(() => {
      const a = t64([
        [1, 5, 3],
        [4, 2, 6],
      ]);
      assert.equal(a.sum().item(), 21);
      assert.deepEqual(a.sum(0).toArray(), [5, 7, 9]);
      assert.deepEqual(a.sum(1, true).shape, [2, 1]);
      assert.deepEqual(a.mean(1).toArray(), [3, 4]);
      assert.equal(a.max().item(), 6);
      const m = a.max(1);
      assert.deepEqual(m.values.toArray(), [5, 6]);
      assert.deepEqual(m.indices.toArray(), [1, 2]);
      assert.deepEqual(a.min(0).values.toArray(), [1, 2, 3]);
      assert.deepEqual(a.argmax(1).toArray(), [1, 2]);
      assert.equal(a.argmax().item(), 5);
      assert.deepEqual(a.amax(0).toArray(), [4, 5, 6]);
      assertClose(a.var(1), [4, 4], { rtol: 1e-15 });
      assertClose(a.var(1, { unbiased: false }), [8 / 3, 8 / 3], { rtol: 1e-15 });
      assertClose(t64([3, 4]).norm(), [5], { rtol: 1e-15 });
      assertClose(
        a.logsumexp(1),
        [Math.log(Math.exp(1) + Math.exp(5) + Math.exp(3)), Math.log(Math.exp(4) + Math.exp(2) + Math.exp(6))],
        {
          rtol: 1e-15,
        },
      );
      assert.deepEqual(a.cumsum(1).toArray(), [1, 6, 9, 4, 6, 12]);
    });
  });
  test("softmax/logSoftmax/topk/sort", () => {
    tidy(() => {
      const x = t64([1, 2, 3]);
      const z = Math.exp(1) + Math.exp(2) + Math.exp(3);
      assertClose(x.softmax(0), [Math.exp(1) / z, Math.exp(2) / z, Math.exp(3) / z], { rtol: 1e-15 });
      assertClose(x.logSoftmax(0), [1 - Math.log(z), 2 - Math.log(z), 3 - Math.log(z)], { rtol: 1e-15 });
      const tk = t64([3, 1, 4, 1, 5]).topk(2);
      assert.deepEqual(tk.values.toArray(), [5, 4]);
      assert.deepEqual(tk.indices.toArray(), [4, 2]);
      const s = t64([3, 1, 2]).sort(0, true);
      assert.deepEqual(s.values.toArray(), [3, 2, 1]);
      assert.deepEqual(s.indices.toArray(), [0, 2, 1]);
    });
  });
});

describe("shape ops", () => {
  test("view/reshape/permute/transpose/flatten/unsqueeze/squeeze/expand/repeat", () => {
    tidy(() => {
      const a = torch.arange(6, undefined, 1, { dtype: "float64" });
      const m = a.view(2, 3);
      assert.deepEqual(m.tolist(), [
        [0, 1, 2],
        [3, 4, 5],
      ]);
      assert.deepEqual(m.transpose(0, 1).contiguous().toArray(), [0, 3, 1, 4, 2, 5]);
      assert.deepEqual(m.t().isContiguous(), false);
      assert.deepEqual(a.reshape([3, 2]).permute(1, 0).contiguous().toArray(), [0, 2, 4, 1, 3, 5]);
      assert.deepEqual(m.unsqueeze(0).shape, [1, 2, 3]);
      assert.deepEqual(m.unsqueeze(0).squeeze(0).shape, [2, 3]);
      assert.deepEqual(m.unsqueeze(1).flatten(0, 1).shape, [2, 3]);
      assert.deepEqual(t64([1, 2]).unsqueeze(1).expand(2, 3).toArray(), [1, 1, 1, 2, 2, 2]);
      assert.deepEqual(t64([1, 2]).repeat(2).toArray(), [1, 2, 1, 2]);
      assert.deepEqual(t64([1, 2]).repeatInterleave(2, 0).toArray(), [1, 1, 2, 2]);
      assert.throws(() => m.view(4), /shape '\[4\]' is invalid for input of size 6/);
    });
  });
  test("cat/stack/split/chunk/narrow/select/slice", () => {
    tidy(() => {
      const a = t64([
        [1, 2],
        [3, 4],
      ]);
      assert.deepEqual(torch.cat([a, a], 0).shape, [4, 2]);
      assert.deepEqual(torch.cat([a, a], 1).toArray(), [1, 2, 1, 2, 3, 4, 3, 4]);
      assert.deepEqual(torch.stack([a, a], 0).shape, [2, 2, 2]);
      const [p, q] = t64([1, 2, 3, 4, 5]).split([2, 3]);
      assert.deepEqual(p?.toArray(), [1, 2]);
      assert.deepEqual(q?.toArray(), [3, 4, 5]);
      assert.equal(t64([1, 2, 3, 4, 5]).split(2).length, 3);
      assert.deepEqual(
        t64([1, 2, 3, 4])
          .chunk(2)
          .map((c) => c.toArray()),
        [
          [1, 2],
          [3, 4],
        ],
      );
      assert.deepEqual(t64([1, 2, 3, 4]).narrow(0, 1, 2).toArray(), [2, 3]);
      assert.deepEqual(a.select(1, 0).toArray(), [1, 3]);
      assert.deepEqual(t64([0, 1, 2, 3, 4, 5]).slice(0, 1, -1, 2).toArray(), [1, 3]);
      assert.deepEqual(t64([0, 1, 2, 3]).slice(0, 2).toArray(), [2, 3]);
    });
  });
  test("indexSelect/gather/scatter/index/indexPut/maskedScatter/triu/tril/pad/flip", () => {
    tidy(() => {
      const a = t64([
        [1, 2, 3],
        [4, 5, 6],
      ]);
      const idx = tensor([2, 0], { dtype: "int64" });
      assert.deepEqual(a.indexSelect(1, idx).toArray(), [3, 1, 6, 4]);
      assert.deepEqual(a.gather(1, tensor([[0], [2]], { dtype: "int64" })).toArray(), [1, 6]);
      assert.deepEqual(
        torch
          .zeros([2, 3], { dtype: "float64" })
          .scatter(1, tensor([[1], [2]], { dtype: "int64" }), t64([[9], [8]]))
          .toArray(),
        [0, 9, 0, 0, 0, 8],
      );
      assert.deepEqual(
        torch
          .zeros([3], { dtype: "float64" })
          .scatterAdd(0, tensor([1, 1, 2], { dtype: "int64" }), t64([1, 2, 3]))
          .toArray(),
        [0, 3, 3],
      );
      assert.deepEqual(a.index(tensor([1], { dtype: "int64" })).toArray(), [4, 5, 6]);
      assert.deepEqual(
        t64([1, 2, 3])
          .index(tensor([true, false, true]))
          .toArray(),
        [1, 3],
      );
      assert.deepEqual(
        t64([1, 2, 3])
          .indexPut([tensor([0, 2], { dtype: "int64" })], t64([7, 8]))
          .toArray(),
        [7, 2, 8],
      );
      assert.deepEqual(
        t64([1, 2, 3])
          .maskedScatter(tensor([false, true, true]), t64([9, 8]))
          .toArray(),
        [1, 9, 8],
      );
      const ones = torch.ones([3, 3], { dtype: "float64" });
      assert.deepEqual(ones.triu(1).toArray(), [0, 1, 1, 0, 0, 1, 0, 0, 0]);
      assert.deepEqual(ones.tril().toArray(), [1, 0, 0, 1, 1, 0, 1, 1, 1]);
      assert.deepEqual(t64([1, 2]).pad([1, 2], -1).toArray(), [-1, 1, 2, -1, -1]);
      assert.deepEqual(t64([1, 2, 3]).flip([0]).toArray(), [3, 2, 1]);
    });
  });
});

describe("linear algebra and nn functions", () => {
  test("matmul/bmm/linear", () => {
    tidy(() => {
      const a = t64([
        [1, 2],
        [3, 4],
      ]);
      const b = t64([
        [5, 6],
        [7, 8],
      ]);
      assert.deepEqual(a.matmul(b).toArray(), [19, 22, 43, 50]);
      assert.deepEqual(a.unsqueeze(0).bmm(b.unsqueeze(0)).toArray(), [19, 22, 43, 50]);
      // linear: x W^T + b
      assert.deepEqual(F.linear(a, b, t64([1, 1])).toArray(), [18, 24, 40, 54]);
      assert.throws(() => a.matmul(t64([1, 2, 3])), /size mismatch|cannot be multiplied|shapes/);
    });
  });
  test("conv2d equals a hand-computed correlation", () => {
    tidy(() => {
      const x = torch.arange(16, undefined, 1, { dtype: "float64" }).view(1, 1, 4, 4);
      const w = torch.ones([1, 1, 2, 2], { dtype: "float64" });
      const y = F.conv2d(x, w, t64([1]), { stride: 2 });
      // 2x2 blocks: 0+1+4+5=10, 2+3+6+7=18, 8+9+12+13=42, 10+11+14+15=50, plus bias 1
      assert.deepEqual(y.toArray(), [11, 19, 43, 51]);
    });
  });
  test("layerNorm and rmsNorm", () => {
    tidy(() => {
      const x = t64([[1, 2, 3, 4]]);
      const mean = 2.5;
      const v = 1.25;
      const expected = [1, 2, 3, 4].map((e) => (e - mean) / Math.sqrt(v + 1e-5));
      assertClose(F.layerNorm(x, [4], null, null, 1e-5), expected, { rtol: 1e-12 });
      const ms = (1 + 4 + 9 + 16) / 4;
      assertClose(
        F.rmsNorm(x, t64([1, 1, 1, 2]), 1e-6),
        [1, 2, 3, 8].map((e) => e / Math.sqrt(ms + 1e-6)),
        { rtol: 1e-12 },
      );
      assertClose(
        F.rmsNorm(x, t64([0, 0, 0, 1]), 1e-6, { addUnitOffset: true }),
        [1, 2, 3, 8].map((e) => e / Math.sqrt(ms + 1e-6)),
        {
          rtol: 1e-12,
        },
      );
    });
  });
  test("embedding, dropout, crossEntropy with ignoreIndex", () => {
    tidy(() => {
      const w = t64([
        [0, 0],
        [1, 1],
        [2, 2],
      ]);
      assert.deepEqual(F.embedding(w, tensor([2, 0], { dtype: "int64" })).toArray(), [2, 2, 0, 0]);
      const x = torch.ones([1000], { dtype: "float64" });
      assert.deepEqual(F.dropout(x, 0.5, false).toArray(), x.toArray());
      const d = F.dropout(x, 0.5, true).toArray();
      assert.ok(d.every((v) => v === 0 || v === 2));
      const logits = t64([
        [1, 2, 3],
        [1, 1, 1],
        [0, 0, 5],
      ]);
      const target = tensor([2, -100, 0], { dtype: "int64" });
      const z0 = Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3));
      const z2 = Math.log(2 + Math.exp(5));
      const expected = (z0 - 3 + (z2 - 0)) / 2;
      assertClose(F.crossEntropy(logits, target), [expected], { rtol: 1e-14 });
      assertClose(F.crossEntropy(logits, target, { reduction: "sum" }), [expected * 2], { rtol: 1e-14 });
    });
  });
  test("scaledDotProductAttention equals softmax(qk^T/sqrt(d))v, with causal and boolean masks", () => {
    tidy(() => {
      const g = new torch.Generator(0);
      const q = torch.randn([1, 2, 3, 4], { dtype: "float64", generator: g });
      const k = torch.randn([1, 2, 3, 4], { dtype: "float64", generator: g });
      const v = torch.randn([1, 2, 3, 4], { dtype: "float64", generator: g });
      const scores = q.matmul(k.transpose(-2, -1)).div(2);
      const ref = scores.softmax(-1).matmul(v);
      assertClose(F.scaledDotProductAttention(q, k, v), ref, { rtol: 1e-12, atol: 1e-14 });
      const causal = torch.ones([3, 3], { dtype: "bool" }).tril();
      const refC = scores.maskedFill(causal.logicalNot(), Number.NEGATIVE_INFINITY).softmax(-1).matmul(v);
      assertClose(F.scaledDotProductAttention(q, k, v, { isCausal: true }), refC, { rtol: 1e-12, atol: 1e-14 });
      assertClose(F.scaledDotProductAttention(q, k, v, { attnMask: causal }), refC, { rtol: 1e-12, atol: 1e-14 });
    });
  });
  test("causal attention with L ≠ S aligns top-left as PyTorch (query i sees keys 0..i), fused and fallback alike", () => {
    tidy(() => {
      const g = new torch.Generator(5);
      for (const [L, S] of [
        [2, 5],
        [5, 2],
        [1, 4],
        [3, 3],
      ] as const) {
        const q = torch.randn([2, L, 4], { dtype: "float64", generator: g });
        const k = torch.randn([2, S, 4], { dtype: "float64", generator: g });
        const v = torch.randn([2, S, 3], { dtype: "float64", generator: g });
        // PyTorch's is_causal: attn_bias from torch.ones(L, S).tril(diagonal=0)
        const rows = Array.from({ length: L }, (_, i) => Array.from({ length: S }, (_, j) => j <= i));
        const mask = tensor(rows, { dtype: "bool" });
        const scores = q.matmul(k.transpose(-2, -1)).div(2);
        const ref = scores.maskedFill(mask.logicalNot(), Number.NEGATIVE_INFINITY).softmax(-1).matmul(v);
        const fused = F.scaledDotProductAttention(q, k, v, { isCausal: true });
        assertClose(fused, ref, { rtol: 1e-12, atol: 1e-14, what: `L=${L} S=${S} causal` });
        assertClose(F.scaledDotProductAttention(q, k, v, { attnMask: mask }), ref, { rtol: 1e-12, atol: 1e-14 });
        const math = new torch.Tensor(native.sdpaMath(q.handle, k.handle, v.handle, null, 0, true, null));
        assertClose(math, ref, { rtol: 1e-12, atol: 1e-14, what: `L=${L} S=${S} fallback` });
      }
      // query 0 with S > L attends to key 0 only (bottom-right alignment would let it see keys 0..S−L)
      const q = torch.ones([1, 1, 2], { dtype: "float64" });
      const k = torch.ones([1, 3, 2], { dtype: "float64" });
      const v = tensor([[[1], [10], [100]]], { dtype: "float64" });
      assert.deepEqual(F.scaledDotProductAttention(q, k, v, { isCausal: true }).toArray(), [1]);
      // an explicit mask together with isCausal is refused (PyTorch 2.x refuses it too)
      assert.throws(
        () => F.scaledDotProductAttention(q, k, v, { isCausal: true, attnMask: torch.ones([1, 3], { dtype: "bool" }) }),
        /attn_mask cannot be combined with is_causal/,
      );
    });
  });
  test("multinomial samples only from the support, reproducibly", () => {
    tidy(() => {
      const p = t64([0, 0.5, 0, 0.5]);
      const a = F.multinomial(p, 50, true, new torch.Generator(3)).toArray();
      const b = F.multinomial(p, 50, true, new torch.Generator(3)).toArray();
      assert.deepEqual(a, b);
      assert.ok(a.every((i) => i === 1 || i === 3));
    });
  });
});

describe("errors become exceptions", () => {
  test("libtorch errors carry libtorch's message; disposed tensors are detected", () => {
    const a = t64([1, 2, 3]);
    assert.throws(() => a.view(2, 2), /invalid for input of size 3/);
    a.dispose();
    a.dispose(); // idempotent
    assert.throws(() => a.sum(), /used after dispose/);
  });
});

describe("threads", () => {
  test("all cores by default (or TINYLLAVA_NUM_THREADS), configurable", () => {
    const n = torch.getNumThreads();
    assert.equal(n, expectedThreads(), `TINYLLAVA_NUM_THREADS=${process.env.TINYLLAVA_NUM_THREADS ?? "(unset)"}`);
    torch.setNumThreads(1);
    assert.equal(torch.getNumThreads(), 1);
    torch.setNumThreads(n);
    assert.equal(torch.getNumThreads(), n);
    assert.throws(() => torch.setNumThreads(0), /positive integer/);
  });

  test("reports OpenBLAS exactly when libtorch's BLAS is OpenBLAS (optional: else the reference BLAS, slower)", () => {
    const b = torch.blasInfo();
    assert.equal(
      b.openblas,
      openblasLoaded(),
      `mapped BLAS libraries: ${loadedLibraries().filter((p) => /blas/.test(p))}`,
    );
    if (b.openblas) {
      assert.match(b.config, /^OpenBLAS /);
      assert.equal(b.threads, torch.getNumThreads(), "OpenBLAS's threads follow setNumThreads");
    } else {
      assert.deepEqual([b.threads, b.config], [-1, ""]);
    }
  });

  test("TINYLLAVA_NUM_THREADS sets the start-up thread count in a fresh process", () => {
    const r = spawnSync(
      process.execPath,
      ["--import", "tsx", "-e", 'import("./src/torch/index.ts").then((t) => console.log(t.getNumThreads()))'],
      { cwd: ROOT, encoding: "utf8", env: { ...process.env, TINYLLAVA_NUM_THREADS: "1" } },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), "1");
  });
});
