// PyTorch 2.x numerics on any libtorch (native/src/reference.cpp): cos/sin through MKL's VML as the official x86
// builds compute them, and sums in the AVX2 reduction order PyTorch 2.x uses on AVX-512 machines.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { arange, F, fromBuffer, kernelAlignment, tensor, tidy, vmlInfo } from "../../src/torch/index.js";
import { mklExpected, ROOT } from "../helpers.js";

interface ChildReport {
  vml: { available: boolean; info: string };
  differFromLibtorch: number;
  threads: number;
}

/** Runs test/torch/vml-child.ts with these environment changes (undefined removes a variable). */
function child(env: Record<string, string | undefined>): ChildReport {
  const e: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete e[k];
    else e[k] = v;
  }
  const r = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "test", "torch", "vml-child.ts")], {
    encoding: "utf8",
    env: e,
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").pop() ?? "");
}

const f = Math.fround;

/** float32 distance in units in the last place */
function ulps(a: number, b: number): number {
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat32(0, a);
  buf.setFloat32(4, b);
  return Math.abs(buf.getInt32(0) - buf.getInt32(4));
}

describe("cosSin", () => {
  test("uses MKL's VML exactly when MKL is on the loader path (and TINYLLAVA_VML is not 0)", () => {
    const v = vmlInfo();
    const expected = mklExpected();
    assert.equal(v.available, expected, `MKL ${expected ? "is" : "is not"} on the loader path, but vmlInfo: ${v.info}`);
    if (expected) assert.match(v.info, /^MKL VML \(.*compatible code path\)$/);
    else
      assert.match(v.info, process.env.TINYLLAVA_VML === "0" ? /^disabled by TINYLLAVA_VML=0$/ : /^MKL not found \(/);
  });

  test("without MKL (child processes): TINYLLAVA_VML=0, or an MKL folder without MKL; libtorch's cos/sin then", () => {
    const empty = mkdtempSync(join(tmpdir(), "tl-nomkl-"));
    try {
      const off = child({ TINYLLAVA_VML: "0" });
      assert.deepEqual(off.vml, { available: false, info: "disabled by TINYLLAVA_VML=0" });
      assert.equal(off.differFromLibtorch, 0, "cos/sin fall back to libtorch's kernels");
      const none = child({ TINYLLAVA_MKL_DIR: empty, TINYLLAVA_VML: undefined });
      assert.equal(none.vml.available, false);
      assert.match(none.vml.info, new RegExp(`^MKL not found \\(.*${empty}/libmkl_core\\.so`));
      assert.equal(none.differFromLibtorch, 0);
      assert.equal(mklExpected({ TINYLLAVA_MKL_DIR: empty }), false);
      if (mklExpected({})) {
        // and with MKL: VML's values, which differ from libtorch's SLEEF in the last bit on some RoPE angles
        const on = child({ TINYLLAVA_VML: undefined, TINYLLAVA_MKL_DIR: undefined });
        assert.equal(on.vml.available, true, on.vml.info);
        assert.ok(on.differFromLibtorch > 0);
      }
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  test("float32 RoPE angles: within 1 ulp of libtorch's kernels; PyTorch 2.x's values where they differ", () => {
    tidy(() => {
      // the angles of a RoPE table: positions 0..511 × 1/10000^(2i/64)
      const inv = arange(0, 64, 2, { dtype: "int64" }).to("float32").div(64).rpow(10000).rdiv(1);
      const x = arange(0, 512, 1, { dtype: "float32" }).unsqueeze(-1).mul(inv);
      const { cos, sin } = F.cosSin(x);
      assert.deepEqual(cos.shape, x.shape);
      assert.equal(cos.dtype, "float32");
      const c = cos.toArray();
      const s = sin.toArray();
      const cl = x.cos().toArray();
      const sl = x.sin().toArray();
      let differ = 0;
      for (let i = 0; i < c.length; i++) {
        assert.ok(ulps(c[i]!, cl[i]!) <= 1 && ulps(s[i]!, sl[i]!) <= 1, `element ${i}`);
        if (c[i] !== cl[i] || s[i] !== sl[i]) differ++;
      }
      if (vmlInfo().available) {
        // cos(0.005f) in PyTorch 2.11's official build (the reference models' RoPE position 5): VML gives the
        // correctly rounded 0.99998748…, SLEEF 1 ulp above
        const { cos: c5 } = F.cosSin(tensor([0.005], { dtype: "float32" }));
        assert.equal(c5.item(), 0.9999874830245972);
        assert.ok(differ > 0, "VML and libtorch's SLEEF differ on some RoPE angles");
      } else {
        assert.equal(differ, 0, "without VML, cosSin is libtorch's cos/sin");
      }
    });
  });

  test("float64, non-contiguous and empty inputs; gradients fall back to differentiable kernels", () => {
    tidy(() => {
      const x = tensor([0, 0.5, 1, 2, 3.5, -7, 100, 1e5], { dtype: "float64" });
      const { cos, sin } = F.cosSin(x);
      x.toArray().forEach((v, i) => {
        assert.ok(Math.abs(cos.toArray()[i]! - Math.cos(v)) <= 1e-15 * Math.max(1, Math.abs(Math.cos(v))));
        assert.ok(Math.abs(sin.toArray()[i]! - Math.sin(v)) <= 1e-15 * Math.max(1, Math.abs(Math.sin(v))));
      });
      const t = arange(0, 12, 1, { dtype: "float32" }).view(3, 4).t(); // non-contiguous
      assert.deepEqual(F.cosSin(t).cos.toArray(), F.cosSin(t.contiguous()).cos.toArray());
      assert.deepEqual(F.cosSin(tensor([], { dtype: "float32" })).sin.shape, [0]);
      const w = tensor([0.3, 1.2], { dtype: "float64" }).requiresGrad_(true);
      const r = F.cosSin(w);
      r.cos.add(r.sin).sum().backward();
      const g = w.grad!.toArray();
      assert.ok(Math.abs(g[0]! - (-Math.sin(0.3) + Math.cos(0.3))) < 1e-15);
      assert.ok(Math.abs(g[1]! - (-Math.sin(1.2) + Math.cos(1.2))) < 1e-15);
    });
  });
});

/** ATen's AVX2 float32 sum of a contiguous row (vectorized_inner_sum → row_sum → multi_row_sum, 8 lanes), as PyTorch
 * 2.x runs it on AVX2 and AVX-512 machines alike. For rows under 512 elements (one cascade level). */
function avx2RowSum(x: Float32Array): number {
  const L = 8;
  const nv = Math.floor(x.length / L);
  const ilp = 4;
  const rows = Math.floor(nv / ilp);
  const part = Array.from({ length: ilp }, () => new Array<number>(L).fill(0));
  for (let r = 0; r < rows; r++)
    for (let k = 0; k < ilp; k++) for (let l = 0; l < L; l++) part[k]![l] = f(part[k]![l]! + x[(r * ilp + k) * L + l]!);
  for (let v = rows * ilp; v < nv; v++) for (let l = 0; l < L; l++) part[0]![l] = f(part[0]![l]! + x[v * L + l]!);
  for (let k = 1; k < ilp; k++) for (let l = 0; l < L; l++) part[0]![l] = f(part[0]![l]! + part[k]![l]!);
  let acc = 0;
  for (let i = nv * L; i < x.length; i++) acc = f(acc + x[i]!);
  for (let l = 0; l < L; l++) acc = f(acc + part[0]![l]!);
  return acc;
}

describe("kernel alignment", () => {
  test("says what it did", () => {
    assert.match(kernelAlignment(), /^libtorch \d+\.\d+/);
  });

  test("float32 row sums round as PyTorch 2.x's AVX2 kernel (when libtorch 1.x registered AVX-512 ones)", (t) => {
    if (!/unregistered/.test(kernelAlignment())) {
      t.skip("libtorch's own registrations already match PyTorch 2.x, or this CPU has no AVX-512");
      return;
    }
    tidy(() => {
      // values spread over many binades so that the summation order shows in the rounding
      let seed = 7;
      const rnd = () => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed / 2147483648;
      };
      for (const n of [16, 64, 100, 128, 200]) {
        const rows = 50;
        const data = new Float32Array(rows * n).map(() => (rnd() - 0.5) * 10 ** Math.floor(rnd() * 6 - 3));
        const sums = fromBuffer(data, "float32", [rows, n]).sum(-1).toArray();
        let same = 0;
        for (let r = 0; r < rows; r++) {
          const expect = avx2RowSum(data.subarray(r * n, (r + 1) * n));
          assert.equal(sums[r], expect, `n=${n} row ${r}`);
          if (sums[r] === expect) same++;
        }
        assert.equal(same, rows);
      }
    });
  });
});

/** PyTorch 2.x's float32 softmax backward for one row: Σ g·y in W lanes, lanes combined by ATen's shuffle tree, then
 * (g − sum)·y, each product and sum rounded on its own (no FMA). */
function softmaxBackwardRow(g: number[], y: number[], W: number): number[] {
  const n = g.length;
  let sum: number;
  if (n < W) {
    sum = f(g[0]! * y[0]!);
    for (let i = 1; i < n; i++) sum = f(sum + f(g[i]! * y[i]!));
  } else {
    let acc = Array.from({ length: W }, (_, l) => f(g[l]! * y[l]!));
    let d = W;
    for (; d < n - (n % W); d += W) for (let l = 0; l < W; l++) acc[l] = f(acc[l]! + f(g[d + l]! * y[d + l]!));
    for (let l = 0; l < n - d; l++) acc[l] = f(acc[l]! + f(g[d + l]! * y[d + l]!));
    for (let step = W / 2; step >= 1; step /= 2) acc = acc.map((v, l) => f(v + acc[l ^ step]!));
    sum = acc[0]!;
  }
  return g.map((gi, i) => f(f(gi - sum) * y[i]!));
}

/** Σ row in float32 as ATen's vec::reduce_all with 16 lanes (AVX-512): lanes, tail into the first lanes, shuffle
 * tree; rows shorter than 16 are summed in order. */
function laneSum16(row: number[]): number {
  const n = row.length;
  if (n < 16) return row.reduce((a, b) => f(a + b));
  let acc = row.slice(0, 16);
  let d = 16;
  for (; d < n - (n % 16); d += 16) for (let l = 0; l < 16; l++) acc[l] = f(acc[l]! + row[d + l]!);
  for (let l = 0; l < n - d; l++) acc[l] = f(acc[l]! + row[d + l]!);
  for (let step = 8; step >= 1; step /= 2) acc = acc.map((v, l) => f(v + acc[l ^ step]!));
  return acc[0]!;
}

describe("softmax backward", () => {
  test("float32 gradients round as PyTorch 2.x's kernel (when libtorch 1.x's was replaced)", (t) => {
    if (!/softmax backward/.test(kernelAlignment())) {
      t.skip("libtorch's own softmax backward (PyTorch 2.x or another build)");
      return;
    }
    const W = 16; // the reference machine's lanes (AVX-512), emulated on AVX2 CPUs
    tidy(() => {
      for (const n of [5, 16, 37, 100]) {
        const x = tensor(
          Array.from({ length: 3 * n }, (_, i) => Math.sin(i * 1.7) * 4),
          { dtype: "float32", shape: [3, n] },
        ).requiresGrad_(true);
        const y = x.softmax(-1);
        const g = tensor(
          Array.from({ length: 3 * n }, (_, i) => Math.cos(i * 0.37) * 2),
          { dtype: "float32", shape: [3, n] },
        );
        y.mul(g).sum().backward();
        const yv = y.detach().toArray();
        const gv = g.toArray();
        const got = x.grad!.toArray();
        for (let r = 0; r < 3; r++) {
          const want = softmaxBackwardRow(gv.slice(r * n, (r + 1) * n), yv.slice(r * n, (r + 1) * n), W);
          assert.deepEqual(got.slice(r * n, (r + 1) * n), want, `n=${n} row ${r}`);
        }
      }
    });
  });

  test("float32 softmax forward sums in the reference's 16 lanes (AVX2 CPUs: our kernel)", (t) => {
    if (!/softmax in AVX-512 lane order/.test(kernelAlignment())) {
      t.skip("ATen's AVX-512 kernel is in use (this CPU has AVX-512), or libtorch's own kernel");
      return;
    }
    tidy(() => {
      for (const n of [5, 16, 17, 37, 100]) {
        const x = tensor(
          Array.from({ length: 2 * n }, (_, i) => Math.sin(i * 1.3) * 5),
          { dtype: "float32", shape: [2, n] },
        );
        const got = x.softmax(-1).toArray();
        // exp(x − max) elementwise is libtorch's own (SLEEF's) exp; the row sum order is what is under test
        const e = x.sub(x.amax(-1, true)).exp().toArray();
        for (let r = 0; r < 2; r++) {
          const row = e.slice(r * n, (r + 1) * n);
          const sum = laneSum16(row);
          const inv = f(1 / sum);
          assert.deepEqual(
            got.slice(r * n, (r + 1) * n),
            row.map((v) => f(v * inv)),
            `n=${n} row ${r}`,
          );
        }
      }
    });
  });

  test("float32 log_softmax forward (cross entropy's) sums in the reference's 16 lanes on AVX2 CPUs", (t) => {
    if (!/softmax and log_softmax in AVX-512 lane order/.test(kernelAlignment())) {
      t.skip("ATen's AVX-512 kernel is in use (this CPU has AVX-512), or libtorch's own kernel");
      return;
    }
    tidy(() => {
      for (const n of [7, 16, 17, 100, 380]) {
        const x = tensor(
          Array.from({ length: 2 * n }, (_, i) => Math.cos(i * 0.77) * 6),
          { dtype: "float32", shape: [2, n] },
        );
        const got = x.logSoftmax(-1).toArray();
        const mx = x.amax(-1, true);
        const shifted = x.sub(mx).toArray();
        const e = x.sub(mx).exp().toArray();
        for (let r = 0; r < 2; r++) {
          const row = e.slice(r * n, (r + 1) * n);
          const sum = laneSum16(row);
          const lse = tensor([sum], { dtype: "float32" }).log().item();
          const want = shifted.slice(r * n, (r + 1) * n).map((v) => f(v - lse));
          assert.deepEqual(got.slice(r * n, (r + 1) * n), want, `n=${n} row ${r}`);
        }
      }
    });
  });

  test("other dtypes keep libtorch's kernel; float64 matches the closed form", () => {
    tidy(() => {
      const xb = tensor([0.5, -1, 2, 0.25], { dtype: "bfloat16" }).requiresGrad_(true);
      xb.softmax(-1).select(0, 2).backward();
      assert.ok(xb.grad!.toArray().every(Number.isFinite));
      const v = [0.5, -1, 2, 0.25];
      const x = tensor(v, { dtype: "float64" }).requiresGrad_(true);
      const y = x.softmax(-1);
      y.select(0, 2).backward();
      const yv = y.detach().toArray();
      x.grad!.toArray().forEach((gi, i) => {
        const want = yv[2]! * ((i === 2 ? 1 : 0) - yv[i]!);
        assert.ok(Math.abs(gi - want) < 1e-16, `${gi} vs ${want}`);
      });
    });
  });
});
