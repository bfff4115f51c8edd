// Finite-difference gradient checks in float64 for every differentiable op the models use: libtorch's analytic
// gradient of sum(f(x) * w) (w fixed random weights) against central differences.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as torch from "../../src/torch/index.js";
import { F, noGrad, type Tensor, tensor, tidy } from "../../src/torch/index.js";

interface Input {
  shape: number[];
  /** values; default: seeded normal */
  data?: number[];
  /** if false, not differentiated (e.g. indices) */
  grad?: boolean;
  dtype?: torch.DType;
}

let seed = 1;
function randomValues(n: number): number[] {
  const g = new torch.Generator(seed++);
  return tidy(() => torch.randn([n], { dtype: "float64", generator: g }).toArray());
}

function gradcheck(
  fn: (xs: Tensor[]) => Tensor,
  inputs: Input[],
  opts: { eps?: number; atol?: number; rtol?: number } = {},
): void {
  const eps = opts.eps ?? 1e-6;
  const atol = opts.atol ?? 1e-6;
  const rtol = opts.rtol ?? 1e-5;
  const data = inputs.map((i) => i.data ?? randomValues(i.shape.reduce((a, b) => a * b, 1)));
  const make = (vals: number[][], requiresGrad: boolean) =>
    inputs.map((inp, k) => {
      const dtype = inp.dtype ?? "float64";
      const t = tensor(vals[k] as number[], { dtype, shape: inp.shape });
      if (requiresGrad && inp.grad !== false) t.requiresGrad = true;
      return t;
    });
  let weights: number[] = [];
  // analytic
  const analytic = tidy(() => {
    const xs = make(data, true);
    const out = fn(xs);
    weights = randomValues(out.numel());
    const w = tensor(weights, { dtype: "float64", shape: out.shape });
    out.mul(w).sum().backward();
    return xs.map((x, k) => (inputs[k]?.grad === false ? [] : (x.grad as Tensor).toArray()));
  });
  const lossAt = (vals: number[][]): number =>
    tidy(() =>
      noGrad(() => {
        const out = fn(make(vals, false));
        const w = tensor(weights, { dtype: "float64", shape: out.shape });
        return out.mul(w).sum().item();
      }),
    );
  inputs.forEach((inp, k) => {
    if (inp.grad === false) return;
    const base = data[k] as number[];
    for (let j = 0; j < base.length; j++) {
      const plus = data.map((d) => [...d]);
      const minus = data.map((d) => [...d]);
      (plus[k] as number[])[j] = (base[j] as number) + eps;
      (minus[k] as number[])[j] = (base[j] as number) - eps;
      const numeric = (lossAt(plus) - lossAt(minus)) / (2 * eps);
      const a = (analytic[k] as number[])[j] as number;
      assert.ok(
        Math.abs(a - numeric) <= atol + rtol * Math.abs(numeric),
        `input ${k} element ${j}: analytic ${a} vs numeric ${numeric}`,
      );
    }
  });
}

const long = (vals: number[], shape?: number[]): Input => ({
  shape: shape ?? [vals.length],
  data: vals,
  grad: false,
  dtype: "int64",
});
const positive = (shape: number[]): Input => ({
  shape,
  data: randomValues(shape.reduce((a, b) => a * b, 1)).map((v) => Math.abs(v) + 0.5),
});
const boolMask = (vals: boolean[], shape: number[]): Input => ({
  shape,
  data: vals.map((v) => (v ? 1 : 0)),
  grad: false,
  dtype: "bool",
});

const cases: Record<string, [(xs: Tensor[]) => Tensor, Input[]]> = {
  add: [([a, b]) => a!.add(b!), [{ shape: [2, 3] }, { shape: [3] }]],
  sub: [([a, b]) => a!.sub(b!), [{ shape: [2, 3] }, { shape: [2, 3] }]],
  mul: [([a, b]) => a!.mul(b!), [{ shape: [2, 3] }, { shape: [2, 1] }]],
  div: [([a, b]) => a!.div(b!), [{ shape: [2, 3] }, positive([2, 3])]],
  pow: [([a]) => a!.pow(3), [{ shape: [4] }]],
  powTensor: [([a, b]) => a!.pow(b!), [positive([4]), { shape: [4] }]],
  exp: [([a]) => a!.exp(), [{ shape: [4] }]],
  log: [([a]) => a!.log(), [positive([4])]],
  sqrt: [([a]) => a!.sqrt(), [positive([4])]],
  rsqrt: [([a]) => a!.rsqrt(), [positive([4])]],
  tanh: [([a]) => a!.tanh(), [{ shape: [4] }]],
  sigmoid: [([a]) => a!.sigmoid(), [{ shape: [4] }]],
  erf: [([a]) => a!.erf(), [{ shape: [4] }]],
  neg: [([a]) => a!.neg(), [{ shape: [4] }]],
  abs: [([a]) => a!.abs(), [{ shape: [4], data: [-1.5, -0.3, 0.7, 2] }]],
  clamp: [([a]) => a!.clamp(-0.5, 0.5), [{ shape: [4], data: [-1.5, -0.3, 0.2, 2] }]],
  cos: [([a]) => a!.cos(), [{ shape: [4] }]],
  sin: [([a]) => a!.sin(), [{ shape: [4] }]],
  square: [([a]) => a!.square(), [{ shape: [4] }]],
  silu: [([a]) => a!.silu(), [{ shape: [5] }]],
  gelu: [([a]) => a!.gelu(), [{ shape: [5] }]],
  geluTanh: [([a]) => a!.gelu("tanh"), [{ shape: [5] }]],
  relu: [([a]) => a!.relu(), [{ shape: [4], data: [-1, -0.2, 0.3, 1] }]],
  maximum: [
    ([a, b]) => a!.maximum(b!),
    [
      { shape: [3], data: [1, -2, 0.5] },
      { shape: [3], data: [0, 0, 0] },
    ],
  ],
  sum: [([a]) => a!.sum(1), [{ shape: [2, 3] }]],
  mean: [([a]) => a!.mean([0, 1]), [{ shape: [2, 3] }]],
  var: [([a]) => a!.var(1, { unbiased: false }), [{ shape: [2, 3] }]],
  norm: [([a]) => a!.norm(2, 1), [{ shape: [2, 3] }]],
  amax: [([a]) => a!.amax(1), [{ shape: [2, 3], data: [1, 5, 3, 4, 2, 6] }]],
  maxDim: [([a]) => a!.max(1).values, [{ shape: [2, 3], data: [1, 5, 3, 4, 2, 6] }]],
  logsumexp: [([a]) => a!.logsumexp(-1), [{ shape: [2, 3] }]],
  softmax: [([a]) => a!.softmax(-1), [{ shape: [2, 4] }]],
  logSoftmax: [([a]) => a!.logSoftmax(-1), [{ shape: [2, 4] }]],
  cumsum: [([a]) => a!.cumsum(1), [{ shape: [2, 3] }]],
  matmul: [([a, b]) => a!.matmul(b!), [{ shape: [2, 3, 4] }, { shape: [4, 2] }]],
  bmm: [([a, b]) => a!.bmm(b!), [{ shape: [2, 2, 3] }, { shape: [2, 3, 2] }]],
  linear: [([x, w, b]) => F.linear(x!, w!, b!), [{ shape: [2, 3] }, { shape: [4, 3] }, { shape: [4] }]],
  conv2d: [
    ([x, w, b]) => F.conv2d(x!, w!, b!, { stride: 2, padding: 1 }),
    [{ shape: [1, 2, 4, 4] }, { shape: [3, 2, 2, 2] }, { shape: [3] }],
  ],
  layerNorm: [([x, w, b]) => F.layerNorm(x!, [4], w!, b!, 1e-5), [{ shape: [2, 4] }, { shape: [4] }, { shape: [4] }]],
  rmsNorm: [([x, w]) => F.rmsNorm(x!, w!, 1e-6), [{ shape: [2, 4] }, { shape: [4] }]],
  rmsNormUnitOffset: [
    ([x, w]) => F.rmsNorm(x!, w!, 1e-6, { addUnitOffset: true }),
    [{ shape: [2, 4] }, { shape: [4] }],
  ],
  embedding: [([w, i]) => F.embedding(w!, i!), [{ shape: [5, 3] }, long([4, 0, 4])]],
  crossEntropy: [([l, t]) => F.crossEntropy(l!, t!), [{ shape: [3, 5] }, long([1, -100, 4])]],
  crossEntropySmoothing: [
    ([l, t]) => F.crossEntropy(l!, t!, { labelSmoothing: 0.1 }),
    [{ shape: [3, 5] }, long([1, 2, 4])],
  ],
  sdpa: [
    ([q, k, v]) => F.scaledDotProductAttention(q!, k!, v!, { isCausal: true }),
    [{ shape: [1, 2, 3, 4] }, { shape: [1, 2, 3, 4] }, { shape: [1, 2, 3, 4] }],
  ],
  sdpaMask: [
    ([q, k, v, m]) => F.scaledDotProductAttention(q!, k!, v!, { attnMask: m! }),
    [
      { shape: [1, 1, 2, 4] },
      { shape: [1, 1, 3, 4] },
      { shape: [1, 1, 3, 4] },
      boolMask([true, false, true, true, true, false], [2, 3]),
    ],
  ],
  cat: [([a, b]) => torch.cat([a!, b!], 1), [{ shape: [2, 2] }, { shape: [2, 3] }]],
  stack: [([a, b]) => torch.stack([a!, b!], 0), [{ shape: [2, 2] }, { shape: [2, 2] }]],
  split: [([a]) => a!.split([1, 2], 1)[1]!, [{ shape: [2, 3] }]],
  chunk: [([a]) => a!.chunk(2, 0)[0]!, [{ shape: [4, 2] }]],
  narrow: [([a]) => a!.narrow(1, 1, 2), [{ shape: [2, 4] }]],
  select: [([a]) => a!.select(0, 1), [{ shape: [3, 2] }]],
  slice: [([a]) => a!.slice(1, 1, undefined, 2), [{ shape: [2, 5] }]],
  indexSelect: [([a, i]) => a!.indexSelect(0, i!), [{ shape: [3, 2] }, long([2, 0, 2])]],
  gather: [([a, i]) => a!.gather(1, i!), [{ shape: [2, 3] }, long([2, 0, 1, 1], [2, 2])]],
  scatter: [([a, i, s]) => a!.scatter(1, i!, s!), [{ shape: [2, 3] }, long([2, 0], [2, 1]), { shape: [2, 1] }]],
  index: [([a, i]) => a!.index(i!), [{ shape: [3, 2] }, long([1, 1, 0])]],
  indexPut: [([a, i, v]) => a!.indexPut([i!], v!), [{ shape: [4] }, long([3, 1]), { shape: [2] }]],
  maskedFill: [([a, m]) => a!.maskedFill(m!, 0), [{ shape: [2, 2] }, boolMask([true, false, false, true], [2, 2])]],
  maskedScatter: [
    ([a, m, s]) => a!.maskedScatter(m!, s!),
    [{ shape: [4] }, boolMask([false, true, true, false], [4]), { shape: [2] }],
  ],
  where: [([c, a, b]) => torch.where(c!, a!, b!), [boolMask([true, false, true], [3]), { shape: [3] }, { shape: [3] }]],
  expand: [([a]) => a!.unsqueeze(0).expand(3, 2), [{ shape: [2] }]],
  repeat: [([a]) => a!.repeat(2, 2), [{ shape: [2, 1] }]],
  repeatInterleave: [([a]) => a!.repeatInterleave(2, 1), [{ shape: [2, 2] }]],
  permute: [([a]) => a!.permute(2, 0, 1), [{ shape: [2, 3, 2] }]],
  transpose: [([a]) => a!.transpose(0, 1), [{ shape: [2, 3] }]],
  reshapeView: [([a]) => a!.reshape(3, 2).view(6).flatten(0).unsqueeze(1).squeeze(1), [{ shape: [2, 3] }]],
  triuTril: [([a]) => a!.triu(0).add(a!.tril(-1).mul(2)), [{ shape: [3, 3] }]],
  pad: [([a]) => a!.pad([1, 0, 0, 2], 0), [{ shape: [2, 2] }]],
  flip: [([a]) => a!.flip([1]), [{ shape: [2, 3] }]],
  contiguousClone: [([a]) => a!.t().contiguous().clone(), [{ shape: [2, 3] }]],
};

describe("finite-difference gradient checks (float64)", () => {
  for (const [name, [fn, inputs]] of Object.entries(cases)) {
    test(name, () => gradcheck(fn, inputs));
  }
});
