// Loads the libtorch Node-API addon (native/) and describes its surface. Everything here is one call into C++.
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

type H = number; // tensor handle: generation · 2^32 + table (JS thread) id · 2^24 + slot in the addon's per-thread table
type Dt = number | null | undefined;
type Dev = string | null | undefined;
type G = number | null | undefined;

export interface OptimGroup {
  params: H[];
  lr?: number;
  weightDecay?: number;
}

export interface NativeAddon {
  freeTensor(h: H): boolean;
  freeMany(hs: H[]): void;
  isAlive(h: H): boolean;
  replaceData(dst: H, src: H): void;
  empty(shape: number[], dtype: Dt, device: Dev): H;
  zeros(shape: number[], dtype: Dt, device: Dev): H;
  ones(shape: number[], dtype: Dt, device: Dev): H;
  full(shape: number[], value: number, dtype: Dt, device: Dev): H;
  arange(start: number, end: number, step: number, dtype: Dt, device: Dev): H;
  eye(n: number, dtype: Dt, device: Dev): H;
  randn(shape: number[], dtype: Dt, device: Dev, gen: G): H;
  rand(shape: number[], dtype: Dt, device: Dev, gen: G): H;
  randint(low: number, high: number, shape: number[], dtype: Dt, device: Dev, gen: G): H;
  uniform_(h: H, a: number, b: number, gen: G): void;
  normal_(h: H, mean: number, std: number, gen: G): void;
  generatorCreate(seed: number): number;
  generatorSeed(g: number, seed: number): void;
  manualSeed(seed: number): void;
  fromBuffer(data: ArrayBufferView | ArrayBuffer, dtype: number, shape: number[], device: Dev): H;
  toBuffer(h: H): Buffer;
  copyInto(h: H, dst: ArrayBufferView): void;
  item(h: H): number;
  shape(h: H): number[];
  strides(h: H): number[];
  dtype(h: H): number;
  device(h: H): string;
  numel(h: H): number;
  dim(h: H): number;
  isContiguous(h: H): boolean;
  sameStorage(a: H, b: H): boolean;
  requiresGrad(h: H): boolean;
  setRequiresGrad(h: H, v: boolean): void;
  isLeaf(h: H): boolean;
  grad(h: H): H | null;
  setGrad(h: H, g: H | null): void;
  retainGrad(h: H): void;
  backward(h: H, grad: H | null, retainGraph: boolean): void;
  setGradEnabled(v: boolean): boolean;
  isGradEnabled(): boolean;
  gradFn(h: H): string;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  blasInfo(): { openblas: boolean; threads: number; config: string };
  setNumInteropThreads(n: number): void;
  version(): string;
  cudaAvailable(): boolean;
  parallelInfo(): string;
  buildConfig(): string;
  cosSin(h: H): [H, H];
  /** kernels.cpp: y = x·wᵀ·scale + bias for ≤ 8 rows of x; undefined when this CPU/shape is not covered */
  linearSmall(x: H, w: H, scale: H | null, bias: H | null): H | undefined;
  quantizeInt8(w: H): [H, H];
  linearSmallGroup(x: H, specs: [H, H | null, H | null][], act: number): H[] | undefined;
  attendDecode(q: H, k: H, v: H, mask: H | null, scale: number, past: number): H | undefined;
  setDecodeThreads(n: number): void;
  rmsNormFused(x: H, w: H | null, eps: number, unitOffset: boolean): H | undefined;
  ropeFused(x: H, cos: H, sin: H): H | undefined;
  layerNormFused(x: H, w: H | null, b: H | null, eps: number): H | undefined;
  vmlInfo(): { available: boolean; info: string };
  kernelAlignment(): string;
  memStats(): {
    allocatedBytes: number;
    cachedBytes: number;
    peakBytes: number;
    allocations: number;
    liveTensors: number;
    liveTensorBytes: number;
  };
  emptyCache(): void;

  unary(code: number, h: H): H;
  binary(code: number, a: H, b: H): H;
  binaryScalar(code: number, a: H, s: number): H;
  inplace(code: number, a: H, b: H): void;
  inplaceScalar(code: number, a: H, s: number): void;
  reduce(code: number, h: H, dims: number[], keepdim: boolean): H;
  norm(h: H, p: number, dims: number[] | null, keepdim: boolean): H;
  maxDim(h: H, dim: number, keepdim: boolean, isMin: boolean): [H, H];
  argmax(h: H, dim: number, keepdim: boolean, isMin: boolean): H;
  topk(h: H, k: number, dim: number, largest: boolean, sorted: boolean): [H, H];
  sort(h: H, dim: number, descending: boolean, stable: boolean): [H, H];
  cumsum(h: H, dim: number): H;
  softmax(h: H, dim: number, dtype: Dt): H;
  logSoftmax(h: H, dim: number, dtype: Dt): H;
  clamp(h: H, min: number | null, max: number | null): H;
  view(h: H, shape: number[]): H;
  reshape(h: H, shape: number[]): H;
  permute(h: H, dims: number[]): H;
  transpose(h: H, a: number, b: number): H;
  expand(h: H, shape: number[]): H;
  repeat(h: H, reps: number[]): H;
  repeatInterleave(h: H, repeats: number, dim: number): H;
  flatten(h: H, start: number, end: number): H;
  unsqueeze(h: H, dim: number): H;
  squeeze(h: H, dim: number | null): H;
  narrow(h: H, dim: number, start: number, length: number): H;
  select(h: H, dim: number, index: number): H;
  slice(h: H, dim: number, start: number, end: number, step: number): H;
  split(h: H, sizes: number | number[], dim: number): H[];
  chunk(h: H, n: number, dim: number): H[];
  cat(hs: H[], dim: number): H;
  stack(hs: H[], dim: number): H;
  indexSelect(h: H, dim: number, index: H): H;
  gather(h: H, dim: number, index: H): H;
  scatter(h: H, dim: number, index: H, src: H, add: boolean): H;
  indexTensor(h: H, index: H): H;
  indexPut(h: H, indices: H[], values: H, accumulate: boolean): H;
  maskedFill(h: H, mask: H, value: number): H;
  maskedScatter(h: H, mask: H, src: H): H;
  where(cond: H, a: H, b: H): H;
  triu(h: H, k: number): H;
  tril(h: H, k: number): H;
  pad(h: H, pads: number[], value: number): H;
  flip(h: H, dims: number[]): H;
  to(h: H, dtype: Dt, device: Dev, copy: boolean): H;
  linear(x: H, w: H, b: H | null): H;
  conv2d(x: H, w: H, b: H | null, stride: number[], padding: number[], dilation: number[], groups: number): H;
  layerNorm(x: H, shape: number[], w: H | null, b: H | null, eps: number): H;
  embedding(w: H, idx: H, paddingIdx: number | null): H;
  dropout(x: H, p: number, train: boolean): H;
  crossEntropy(logits: H, target: H, ignoreIndex: number, reduction: number, labelSmoothing: number): H;
  sdpa(q: H, k: H, v: H, mask: H | null, dropoutP: number, isCausal: boolean, scale: number | null): H;
  /** sdpa without the fused kernel (what sdpa runs on libtorch < 2.1) */
  sdpaMath(q: H, k: H, v: H, mask: H | null, dropoutP: number, isCausal: boolean, scale: number | null): H;
  multinomial(probs: H, n: number, replacement: boolean, gen: G): H;
  allclose(a: H, b: H, rtol: number, atol: number): boolean;

  adamw(
    groups: OptimGroup[],
    opts: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; amsgrad: boolean },
  ): number;
  sgd(
    groups: OptimGroup[],
    opts: { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean },
  ): number;
  optStep(id: number): void;
  optZeroGrad(id: number): void;
  optSetLr(id: number, group: number, lr: number): void;
  optGetLr(id: number, group: number): number;
  optFree(id: number): void;
  adamwGetState(id: number): ([number, H, H] | null)[];
  adamwSetState(id: number, state: ([number, H, H] | null)[]): void;
  clipGradNorm(params: H[], maxNorm: number, normType: number): number;
}

function addonPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // src/torch (tsx) and dist/src/torch (compiled) both sit below the package root.
  for (const up of [join(here, "..", ".."), join(here, "..", "..", "..")]) {
    const p = join(up, "native", "build", "Release", "tinyllava_native.node");
    if (existsSync(p)) return p;
  }
  throw new Error(
    "tinyllava: the native addon is not built (native/build/Release/tinyllava_native.node). Run `npm run build:native` or `bash scripts/setup.sh`.",
  );
}

/** ATen picks AVX2 kernels by default in libtorch 1.13 even on AVX-512 machines, where PyTorch 2.x uses AVX-512:
 * their vectorised transcendental functions round differently in the last bit, so we follow PyTorch 2.x (faster
 * too) unless ATEN_CPU_CAPABILITY is set. Checked against the CPU's flags: forcing it on a CPU without AVX-512
 * would crash. Must happen before the addon's first op. */
function chooseCpuCapability(): void {
  if (process.env.ATEN_CPU_CAPABILITY || process.platform !== "linux") return;
  try {
    const flags = new Set(
      (/^flags\s*:(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "").trim().split(/\s+/),
    );
    if (["avx512f", "avx512bw", "avx512vl", "avx512dq"].every((f) => flags.has(f)))
      process.env.ATEN_CPU_CAPABILITY = "avx512";
  } catch {
    // no /proc/cpuinfo: keep ATen's default
  }
}

/** libtorch's intra-op threads (OpenMP) and OpenBLAS's own pthreads share the cores. With OpenMP's default active
 * wait, the threads left spinning after each parallel region take the cores from OpenBLAS's threads in the next
 * matrix product (and the other way round): on the 2-core machine a [1520, 128] × [128, 512] linear took 2.9 ms
 * instead of 1.2 ms, and the demo's training steps ran 3× slower, most of it in sched_yield. Passive waiting (threads
 * sleep at once) removes that; set OMP_WAIT_POLICY yourself to override. Must happen before libgomp is loaded. */
function chooseOmpWaitPolicy(): void {
  if (process.env.OMP_WAIT_POLICY === undefined && process.env.GOMP_SPINCOUNT === undefined)
    process.env.OMP_WAIT_POLICY = "PASSIVE";
}

chooseCpuCapability();
chooseOmpWaitPolicy();
export const native: NativeAddon = createRequire(import.meta.url)(addonPath()) as NativeAddon;

/** Thread count from TINYLLAVA_NUM_THREADS, else every available core. */
export function defaultNumThreads(): number {
  const env = process.env.TINYLLAVA_NUM_THREADS;
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) {
      throw new RangeError(`TINYLLAVA_NUM_THREADS=${env}: expected a positive integer`);
    }
    return n;
  }
  return availableParallelism();
}

// libtorch starts with 1 intra-op thread on these machines: set the count as soon as the engine is loaded, whatever
// module a program imports first (every JS thread that loads the engine runs this).
native.setNumThreads(defaultNumThreads());

/** Op codes: must match the switches in native/src/ops.cpp. */
export const U = {
  neg: 0,
  abs: 1,
  exp: 2,
  log: 3,
  sqrt: 4,
  rsqrt: 5,
  tanh: 6,
  sigmoid: 7,
  erf: 8,
  cos: 9,
  sin: 10,
  relu: 11,
  silu: 12,
  gelu: 13,
  geluTanh: 14,
  contiguous: 15,
  clone: 16,
  detach: 17,
  logicalNot: 18,
  isnan: 19,
  floor: 20,
  ceil: 21,
  round: 22,
  sign: 23,
  reciprocal: 24,
  square: 25,
  log1p: 26,
  expm1: 27,
  t: 28,
  isinf: 29,
  sumAll: 30,
  meanAll: 31,
  maxAll: 32,
  minAll: 33,
  argmaxAll: 34,
  all: 35,
  any: 36,
  zerosLike: 37,
  onesLike: 38,
  softplus: 39,
  trunc: 40,
  logSigmoid: 41,
  isfinite: 42,
  nonzero: 43,
} as const;
export const Bin = {
  add: 0,
  sub: 1,
  mul: 2,
  div: 3,
  pow: 4,
  eq: 5,
  ne: 6,
  lt: 7,
  le: 8,
  gt: 9,
  ge: 10,
  maximum: 11,
  minimum: 12,
  logicalAnd: 13,
  logicalOr: 14,
  matmul: 15,
  bmm: 16,
  remainder: 17,
  floorDivide: 18,
  logicalXor: 19,
  outer: 20,
  mm: 21,
} as const;
/** Codes only `binaryScalar` knows (tensor ∘ scalar); they share numbers with unrelated binary ops. */
export const Sc = {
  clampMin: 11,
  clampMax: 12,
  rsub: 20,
  rdiv: 21,
  rpow: 22,
} as const;
export const Red = {
  sum: 0,
  mean: 1,
  amax: 2,
  amin: 3,
  logsumexp: 4,
  varUnbiased: 5,
  varBiased: 6,
  stdUnbiased: 7,
  stdBiased: 8,
  prod: 9,
  all: 10,
  any: 11,
} as const;
