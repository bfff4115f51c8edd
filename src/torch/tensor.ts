// The Tensor: a handle to a libtorch tensor. Method names follow PyTorch in camelCase; every op returns a new
// Tensor that is tracked by the current `tidy()` scope (or a finalizer backstop outside scopes).
import { type Device, type DType, dtypeCode, dtypeFromCode } from "./dtype.js";
import { track } from "./memory.js";
import { Bin, native, Red, Sc, U } from "./native.js";

export type Shape = readonly number[];
export type Scalar = number | boolean;
export type TensorOrScalar = Tensor | Scalar;

const N = native;

function dims(d: number | readonly number[] | undefined, nd: number): number[] {
  if (d === undefined) return Array.from({ length: nd }, (_, i) => i);
  return typeof d === "number" ? [d] : (d as number[]);
}

function shapeArgs(args: (number | Shape)[]): number[] {
  return args.length === 1 && Array.isArray(args[0]) ? [...(args[0] as number[])] : (args as number[]);
}

export class Tensor {
  handle: number;
  kept = false;

  constructor(handle: number) {
    this.handle = handle;
    track(this);
  }

  static wrap(h: number): Tensor {
    return new Tensor(h);
  }

  // ---- lifetime ----
  /** Frees the libtorch tensor now. Idempotent. */
  dispose(): void {
    if (this.handle >= 0) {
      N.freeTensor(this.handle);
      this.handle = -1;
    }
  }
  /** Gives this tensor `other`'s data (dtype, shape, values) in place, as PyTorch's `param.data = other`; `other` is
   * spent (disposed). The libtorch tensor keeps its identity — this object, its handle, and every native holder of it
   * (an optimiser's parameter list, autograd's leaf) see the new data; requiresGrad stays. Used by dtype casts. */
  _replaceWith(other: Tensor): this {
    if (other === this) return this;
    N.replaceData(this.handle, other.handle);
    other.dispose();
    return this;
  }
  get isDisposed(): boolean {
    return this.handle < 0 || !N.isAlive(this.handle);
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  // ---- metadata ----
  get shape(): number[] {
    return N.shape(this.handle);
  }
  size(dim?: number): number {
    const s = N.shape(this.handle);
    if (dim === undefined) return s.reduce((a, b) => a * b, 1);
    const d = dim < 0 ? s.length + dim : dim;
    const v = s[d];
    if (v === undefined) throw new RangeError(`size(${dim}): tensor has ${s.length} dimensions`);
    return v;
  }
  get dtype(): DType {
    return dtypeFromCode(N.dtype(this.handle));
  }
  get device(): Device {
    return N.device(this.handle);
  }
  get ndim(): number {
    return N.dim(this.handle);
  }
  dim(): number {
    return N.dim(this.handle);
  }
  numel(): number {
    return N.numel(this.handle);
  }
  stride(): number[] {
    return N.strides(this.handle);
  }
  isContiguous(): boolean {
    return N.isContiguous(this.handle);
  }

  // ---- data out ----
  item(): number {
    return N.item(this.handle);
  }
  /** The data as a typed array (a copy): Float64Array, Float32Array (also for bfloat16/float16), BigInt64Array,
   * Int32Array, Int16Array, Int8Array or Uint8Array (also bool). */
  dataSync(): Float64Array | Float32Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array {
    const dt = this.dtype;
    if (dt === "bfloat16" || dt === "float16") {
      const f = new Tensor(N.to(this.handle, dtypeCode("float32"), null, false));
      try {
        return f.dataSync();
      } finally {
        f.dispose();
      }
    }
    const buf = N.toBuffer(this.handle);
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    switch (dt) {
      case "float64":
        return new Float64Array(ab);
      case "float32":
        return new Float32Array(ab);
      case "int64":
        return new BigInt64Array(ab);
      case "int32":
        return new Int32Array(ab);
      case "int16":
        return new Int16Array(ab);
      case "int8":
        return new Int8Array(ab);
      default:
        return new Uint8Array(ab);
    }
  }
  /** Flat array of numbers (int64 converted to Number). */
  toArray(): number[] {
    const d = this.dataSync();
    if (d instanceof BigInt64Array) return Array.from(d, (x) => Number(x));
    return Array.from(d as ArrayLike<number>);
  }
  /** Nested arrays, like PyTorch's tolist(). */
  tolist(): unknown {
    const flat = this.toArray();
    const shape = this.shape;
    if (shape.length === 0) return flat[0];
    const build = (dim: number, offset: number): unknown => {
      const n = shape[dim] as number;
      if (dim === shape.length - 1) return flat.slice(offset, offset + n);
      const stride = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      return Array.from({ length: n }, (_, i) => build(dim + 1, offset + i * stride));
    };
    return build(0, 0);
  }
  /** Raw bytes (contiguous, CPU) as a Buffer copy. */
  toBuffer(): Buffer {
    return N.toBuffer(this.handle);
  }
  toString(): string {
    if (this.handle < 0) return "Tensor(disposed)";
    const n = this.numel();
    const head = n <= 16 ? JSON.stringify(this.tolist()) : `[${this.toArray().slice(0, 8).join(", ")}, …]`;
    return `Tensor(${head}, shape=[${this.shape.join(", ")}], dtype=${this.dtype})`;
  }

  // ---- elementwise ----
  private bin(code: number, o: TensorOrScalar): Tensor {
    if (typeof o === "number" || typeof o === "boolean") return new Tensor(N.binaryScalar(code, this.handle, +o));
    return new Tensor(N.binary(code, this.handle, o.handle));
  }
  private un(code: number): Tensor {
    return new Tensor(N.unary(code, this.handle));
  }
  add(o: TensorOrScalar, alpha?: number): Tensor {
    if (alpha !== undefined && alpha !== 1) {
      if (typeof o !== "object") return this.bin(Bin.add, +o * alpha);
      const scaled = o.mul(alpha);
      try {
        return this.bin(Bin.add, scaled);
      } finally {
        scaled.dispose();
      }
    }
    return this.bin(Bin.add, o);
  }
  sub(o: TensorOrScalar): Tensor {
    return this.bin(Bin.sub, o);
  }
  mul(o: TensorOrScalar): Tensor {
    return this.bin(Bin.mul, o);
  }
  div(o: TensorOrScalar): Tensor {
    return this.bin(Bin.div, o);
  }
  pow(o: TensorOrScalar): Tensor {
    return this.bin(Bin.pow, o);
  }
  /** scalar - this */
  rsub(s: number): Tensor {
    return new Tensor(N.binaryScalar(Sc.rsub, this.handle, s));
  }
  /** scalar / this */
  rdiv(s: number): Tensor {
    return new Tensor(N.binaryScalar(Sc.rdiv, this.handle, s));
  }
  /** scalar ** this */
  rpow(s: number): Tensor {
    return new Tensor(N.binaryScalar(Sc.rpow, this.handle, s));
  }
  remainder(o: TensorOrScalar): Tensor {
    return this.bin(Bin.remainder, o);
  }
  floorDivide(o: TensorOrScalar): Tensor {
    return this.bin(Bin.floorDivide, o);
  }
  maximum(o: Tensor): Tensor {
    return this.bin(Bin.maximum, o);
  }
  minimum(o: Tensor): Tensor {
    return this.bin(Bin.minimum, o);
  }
  eq(o: TensorOrScalar): Tensor {
    return this.bin(Bin.eq, o);
  }
  ne(o: TensorOrScalar): Tensor {
    return this.bin(Bin.ne, o);
  }
  lt(o: TensorOrScalar): Tensor {
    return this.bin(Bin.lt, o);
  }
  le(o: TensorOrScalar): Tensor {
    return this.bin(Bin.le, o);
  }
  gt(o: TensorOrScalar): Tensor {
    return this.bin(Bin.gt, o);
  }
  ge(o: TensorOrScalar): Tensor {
    return this.bin(Bin.ge, o);
  }
  logicalAnd(o: Tensor): Tensor {
    return this.bin(Bin.logicalAnd, o);
  }
  logicalOr(o: Tensor): Tensor {
    return this.bin(Bin.logicalOr, o);
  }
  logicalXor(o: Tensor): Tensor {
    return this.bin(Bin.logicalXor, o);
  }
  logicalNot(): Tensor {
    return this.un(U.logicalNot);
  }
  neg(): Tensor {
    return this.un(U.neg);
  }
  abs(): Tensor {
    return this.un(U.abs);
  }
  exp(): Tensor {
    return this.un(U.exp);
  }
  log(): Tensor {
    return this.un(U.log);
  }
  log1p(): Tensor {
    return this.un(U.log1p);
  }
  expm1(): Tensor {
    return this.un(U.expm1);
  }
  sqrt(): Tensor {
    return this.un(U.sqrt);
  }
  rsqrt(): Tensor {
    return this.un(U.rsqrt);
  }
  tanh(): Tensor {
    return this.un(U.tanh);
  }
  sigmoid(): Tensor {
    return this.un(U.sigmoid);
  }
  logSigmoid(): Tensor {
    return this.un(U.logSigmoid);
  }
  softplus(): Tensor {
    return this.un(U.softplus);
  }
  erf(): Tensor {
    return this.un(U.erf);
  }
  cos(): Tensor {
    return this.un(U.cos);
  }
  sin(): Tensor {
    return this.un(U.sin);
  }
  relu(): Tensor {
    return this.un(U.relu);
  }
  silu(): Tensor {
    return this.un(U.silu);
  }
  /** GELU: exact (erf) by default, or the tanh approximation. */
  gelu(approximate: "none" | "tanh" = "none"): Tensor {
    return this.un(approximate === "tanh" ? U.geluTanh : U.gelu);
  }
  square(): Tensor {
    return this.un(U.square);
  }
  reciprocal(): Tensor {
    return this.un(U.reciprocal);
  }
  floor(): Tensor {
    return this.un(U.floor);
  }
  ceil(): Tensor {
    return this.un(U.ceil);
  }
  round(): Tensor {
    return this.un(U.round);
  }
  trunc(): Tensor {
    return this.un(U.trunc);
  }
  sign(): Tensor {
    return this.un(U.sign);
  }
  isnan(): Tensor {
    return this.un(U.isnan);
  }
  isinf(): Tensor {
    return this.un(U.isinf);
  }
  isfinite(): Tensor {
    return this.un(U.isfinite);
  }
  nonzero(): Tensor {
    return this.un(U.nonzero);
  }
  clamp(min: number | null, max: number | null = null): Tensor {
    return new Tensor(N.clamp(this.handle, min, max));
  }
  clampMin(min: number): Tensor {
    return new Tensor(N.binaryScalar(Sc.clampMin, this.handle, min));
  }
  clampMax(max: number): Tensor {
    return new Tensor(N.binaryScalar(Sc.clampMax, this.handle, max));
  }
  zerosLike(): Tensor {
    return this.un(U.zerosLike);
  }
  onesLike(): Tensor {
    return this.un(U.onesLike);
  }

  // ---- linear algebra ----
  matmul(o: Tensor): Tensor {
    return this.bin(Bin.matmul, o);
  }
  mm(o: Tensor): Tensor {
    return this.bin(Bin.mm, o);
  }
  bmm(o: Tensor): Tensor {
    return this.bin(Bin.bmm, o);
  }
  outer(o: Tensor): Tensor {
    return this.bin(Bin.outer, o);
  }

  // ---- reductions ----
  private red(code: number, d: number | readonly number[] | undefined, keepdim: boolean): Tensor {
    return new Tensor(N.reduce(code, this.handle, dims(d, this.ndim), keepdim));
  }
  sum(dim?: number | readonly number[], keepdim = false): Tensor {
    return dim === undefined && !keepdim ? this.un(U.sumAll) : this.red(Red.sum, dim, keepdim);
  }
  mean(dim?: number | readonly number[], keepdim = false): Tensor {
    return dim === undefined && !keepdim ? this.un(U.meanAll) : this.red(Red.mean, dim, keepdim);
  }
  amax(dim?: number | readonly number[], keepdim = false): Tensor {
    return this.red(Red.amax, dim, keepdim);
  }
  amin(dim?: number | readonly number[], keepdim = false): Tensor {
    return this.red(Red.amin, dim, keepdim);
  }
  prod(dim: number, keepdim = false): Tensor {
    return this.red(Red.prod, dim, keepdim);
  }
  logsumexp(dim: number | readonly number[], keepdim = false): Tensor {
    return this.red(Red.logsumexp, dim, keepdim);
  }
  var(dim?: number | readonly number[], opts: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
    return this.red(opts.unbiased === false ? Red.varBiased : Red.varUnbiased, dim, opts.keepdim ?? false);
  }
  std(dim?: number | readonly number[], opts: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
    return this.red(opts.unbiased === false ? Red.stdBiased : Red.stdUnbiased, dim, opts.keepdim ?? false);
  }
  norm(p = 2, dim?: number | readonly number[], keepdim = false): Tensor {
    return new Tensor(N.norm(this.handle, p, dim === undefined ? null : dims(dim, 0), keepdim));
  }
  all(dim?: number, keepdim = false): Tensor {
    return dim === undefined ? this.un(U.all) : this.red(Red.all, dim, keepdim);
  }
  any(dim?: number, keepdim = false): Tensor {
    return dim === undefined ? this.un(U.any) : this.red(Red.any, dim, keepdim);
  }
  /** max over everything, or {values, indices} along `dim`. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  max(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return this.un(U.maxAll);
    const [v, i] = N.maxDim(this.handle, dim, keepdim, false);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  min(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return this.un(U.minAll);
    const [v, i] = N.maxDim(this.handle, dim, keepdim, true);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return dim === undefined ? this.un(U.argmaxAll) : new Tensor(N.argmax(this.handle, dim, keepdim, false));
  }
  argmin(dim: number, keepdim = false): Tensor {
    return new Tensor(N.argmax(this.handle, dim, keepdim, true));
  }
  topk(k: number, dim = -1, largest = true, sorted = true): { values: Tensor; indices: Tensor } {
    const [v, i] = N.topk(this.handle, k, dim, largest, sorted);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  sort(dim = -1, descending = false, stable = false): { values: Tensor; indices: Tensor } {
    const [v, i] = N.sort(this.handle, dim, descending, stable);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  cumsum(dim: number): Tensor {
    return new Tensor(N.cumsum(this.handle, dim));
  }
  softmax(dim: number, dtype?: DType): Tensor {
    return new Tensor(N.softmax(this.handle, dim, dtype === undefined ? null : dtypeCode(dtype)));
  }
  logSoftmax(dim: number, dtype?: DType): Tensor {
    return new Tensor(N.logSoftmax(this.handle, dim, dtype === undefined ? null : dtypeCode(dtype)));
  }

  // ---- shape ----
  view(...shape: (number | Shape)[]): Tensor {
    return new Tensor(N.view(this.handle, shapeArgs(shape)));
  }
  reshape(...shape: (number | Shape)[]): Tensor {
    return new Tensor(N.reshape(this.handle, shapeArgs(shape)));
  }
  permute(...order: (number | Shape)[]): Tensor {
    return new Tensor(N.permute(this.handle, shapeArgs(order)));
  }
  transpose(d0: number, d1: number): Tensor {
    return new Tensor(N.transpose(this.handle, d0, d1));
  }
  t(): Tensor {
    return this.un(U.t);
  }
  expand(...shape: (number | Shape)[]): Tensor {
    return new Tensor(N.expand(this.handle, shapeArgs(shape)));
  }
  repeat(...reps: (number | Shape)[]): Tensor {
    return new Tensor(N.repeat(this.handle, shapeArgs(reps)));
  }
  repeatInterleave(repeats: number, dim: number): Tensor {
    return new Tensor(N.repeatInterleave(this.handle, repeats, dim));
  }
  flatten(start = 0, end = -1): Tensor {
    return new Tensor(N.flatten(this.handle, start, end));
  }
  unsqueeze(dim: number): Tensor {
    return new Tensor(N.unsqueeze(this.handle, dim));
  }
  squeeze(dim?: number): Tensor {
    return new Tensor(N.squeeze(this.handle, dim ?? null));
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return new Tensor(N.narrow(this.handle, dim, start, length));
  }
  select(dim: number, index: number): Tensor {
    return new Tensor(N.select(this.handle, dim, index));
  }
  /** Python's x[..., start:end:step] along `dim` (end may be negative or omitted). */
  slice(dim: number, start = 0, end?: number, step = 1): Tensor {
    return new Tensor(N.slice(this.handle, dim, start, end ?? Number.MAX_SAFE_INTEGER, step));
  }
  split(sizes: number | readonly number[], dim = 0): Tensor[] {
    return N.split(this.handle, typeof sizes === "number" ? sizes : [...sizes], dim).map(Tensor.wrap);
  }
  chunk(n: number, dim = 0): Tensor[] {
    return N.chunk(this.handle, n, dim).map(Tensor.wrap);
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return new Tensor(N.indexSelect(this.handle, dim, index.handle));
  }
  gather(dim: number, index: Tensor): Tensor {
    return new Tensor(N.gather(this.handle, dim, index.handle));
  }
  scatter(dim: number, index: Tensor, src: Tensor): Tensor {
    return new Tensor(N.scatter(this.handle, dim, index.handle, src.handle, false));
  }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return new Tensor(N.scatter(this.handle, dim, index.handle, src.handle, true));
  }
  /** x[index] with a long (positions) or bool (mask) tensor along the first dimension(s). */
  index(index: Tensor): Tensor {
    return new Tensor(N.indexTensor(this.handle, index.handle));
  }
  /** Out-of-place x[indices] = values (or += with accumulate). */
  indexPut(indices: Tensor[], values: Tensor, accumulate = false): Tensor {
    return new Tensor(
      N.indexPut(
        this.handle,
        indices.map((t) => t.handle),
        values.handle,
        accumulate,
      ),
    );
  }
  maskedFill(mask: Tensor, value: number): Tensor {
    return new Tensor(N.maskedFill(this.handle, mask.handle, value));
  }
  maskedScatter(mask: Tensor, src: Tensor): Tensor {
    return new Tensor(N.maskedScatter(this.handle, mask.handle, src.handle));
  }
  triu(k = 0): Tensor {
    return new Tensor(N.triu(this.handle, k));
  }
  tril(k = 0): Tensor {
    return new Tensor(N.tril(this.handle, k));
  }
  /** Constant padding, torch.nn.functional.pad order: [lastDimLeft, lastDimRight, prevLeft, prevRight, …]. */
  pad(pads: readonly number[], value = 0): Tensor {
    return new Tensor(N.pad(this.handle, [...pads], value));
  }
  flip(dims: readonly number[]): Tensor {
    return new Tensor(N.flip(this.handle, [...dims]));
  }
  contiguous(): Tensor {
    return this.un(U.contiguous);
  }
  clone(): Tensor {
    return this.un(U.clone);
  }
  detach(): Tensor {
    return this.un(U.detach);
  }

  // ---- conversion ----
  to(target: DType | Device | { dtype?: DType; device?: Device; copy?: boolean }): Tensor {
    let dtype: DType | undefined;
    let device: Device | undefined;
    let copy = false;
    if (typeof target === "string") {
      if (target === "cpu" || target.startsWith("cuda")) device = target;
      else dtype = target as DType;
    } else {
      dtype = target.dtype;
      device = target.device;
      copy = target.copy ?? false;
    }
    return new Tensor(N.to(this.handle, dtype === undefined ? null : dtypeCode(dtype), device ?? null, copy));
  }
  float(): Tensor {
    return this.to("float32");
  }
  double(): Tensor {
    return this.to("float64");
  }
  long(): Tensor {
    return this.to("int64");
  }
  bool(): Tensor {
    return this.to("bool");
  }
  cpu(): Tensor {
    return this.to("cpu");
  }

  // ---- in place ----
  add_(o: TensorOrScalar): this {
    if (typeof o === "object") N.inplace(0, this.handle, o.handle);
    else N.inplaceScalar(0, this.handle, +o);
    return this;
  }
  sub_(o: TensorOrScalar): this {
    if (typeof o === "object") N.inplace(1, this.handle, o.handle);
    else N.inplaceScalar(1, this.handle, +o);
    return this;
  }
  mul_(o: TensorOrScalar): this {
    if (typeof o === "object") N.inplace(2, this.handle, o.handle);
    else N.inplaceScalar(2, this.handle, +o);
    return this;
  }
  div_(o: TensorOrScalar): this {
    if (typeof o === "object") N.inplace(3, this.handle, o.handle);
    else N.inplaceScalar(3, this.handle, +o);
    return this;
  }
  copy_(src: Tensor): this {
    N.inplace(4, this.handle, src.handle);
    return this;
  }
  fill_(v: number): this {
    N.inplaceScalar(5, this.handle, v);
    return this;
  }
  zero_(): this {
    N.inplaceScalar(6, this.handle, 0);
    return this;
  }
  uniform_(a = 0, b = 1, generator?: { id: number }): this {
    N.uniform_(this.handle, a, b, generator?.id ?? null);
    return this;
  }
  normal_(mean = 0, std = 1, generator?: { id: number }): this {
    N.normal_(this.handle, mean, std, generator?.id ?? null);
    return this;
  }

  // ---- autograd ----
  get requiresGrad(): boolean {
    return N.requiresGrad(this.handle);
  }
  set requiresGrad(v: boolean) {
    N.setRequiresGrad(this.handle, v);
  }
  requiresGrad_(v = true): this {
    N.setRequiresGrad(this.handle, v);
    return this;
  }
  /** The accumulated gradient as a new Tensor (sharing storage with libtorch's .grad), or null. */
  get grad(): Tensor | null {
    const g = N.grad(this.handle);
    return g === null ? null : new Tensor(g);
  }
  set grad(g: Tensor | null) {
    N.setGrad(this.handle, g === null ? null : g.handle);
  }
  /** Drops the accumulated gradient (PyTorch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    N.setGrad(this.handle, null);
  }
  get isLeaf(): boolean {
    return N.isLeaf(this.handle);
  }
  get gradFn(): string {
    return N.gradFn(this.handle);
  }
  retainGrad(): void {
    N.retainGrad(this.handle);
  }
  backward(gradient?: Tensor, opts: { retainGraph?: boolean } = {}): void {
    N.backward(this.handle, gradient?.handle ?? null, opts.retainGraph ?? false);
  }
}
