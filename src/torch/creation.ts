// Tensor creation, joining and random generators.
import { type Device, type DType, dtypeCode, ELEMENT_SIZE } from "./dtype.js";
import { native as N } from "./native.js";
import { type Shape, Tensor } from "./tensor.js";

export interface CreateOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

function dt(o: CreateOptions | undefined, fallback: DType = "float32"): number {
  return dtypeCode(o?.dtype ?? fallback);
}

function finish(t: Tensor, o: CreateOptions | undefined): Tensor {
  if (o?.requiresGrad) t.requiresGrad = true;
  return t;
}

/** A seedable random generator (libtorch's CPU Philox/MT generator). */
export class Generator {
  readonly id: number;
  constructor(seed = 0) {
    this.id = N.generatorCreate(seed);
  }
  manualSeed(seed: number): this {
    N.generatorSeed(this.id, seed);
    return this;
  }
}

/** Seeds libtorch's default generator. */
export function manualSeed(seed: number): void {
  N.manualSeed(seed);
}

export function zeros(shape: Shape, o?: CreateOptions): Tensor {
  return finish(new Tensor(N.zeros([...shape], dt(o), o?.device)), o);
}
export function ones(shape: Shape, o?: CreateOptions): Tensor {
  return finish(new Tensor(N.ones([...shape], dt(o), o?.device)), o);
}
export function empty(shape: Shape, o?: CreateOptions): Tensor {
  return finish(new Tensor(N.empty([...shape], dt(o), o?.device)), o);
}
export function full(shape: Shape, value: number, o?: CreateOptions): Tensor {
  return finish(new Tensor(N.full([...shape], value, dt(o), o?.device)), o);
}
export function eye(n: number, o?: CreateOptions): Tensor {
  return finish(new Tensor(N.eye(n, dt(o), o?.device)), o);
}
/** arange(end) or arange(start, end, step); int64 unless a dtype is given. */
export function arange(start: number, end?: number, step = 1, o?: CreateOptions): Tensor {
  const [s, e] = end === undefined ? [0, start] : [start, end];
  return finish(new Tensor(N.arange(s, e, step, dt(o, "int64"), o?.device)), o);
}
export function randn(shape: Shape, o?: CreateOptions & { generator?: Generator }): Tensor {
  return finish(new Tensor(N.randn([...shape], dt(o), o?.device, o?.generator?.id)), o);
}
export function rand(shape: Shape, o?: CreateOptions & { generator?: Generator }): Tensor {
  return finish(new Tensor(N.rand([...shape], dt(o), o?.device, o?.generator?.id)), o);
}
export function randint(
  low: number,
  high: number,
  shape: Shape,
  o?: CreateOptions & { generator?: Generator },
): Tensor {
  return new Tensor(N.randint(low, high, [...shape], dt(o, "int64"), o?.device, o?.generator?.id));
}

type NumericArray =
  | Float64Array
  | Float32Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | BigInt64Array
  | Uint16Array;

function inferShape(data: unknown): number[] {
  const shape: number[] = [];
  let cur: unknown = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  return shape;
}

/** Builds a tensor from (nested) arrays, a typed array or a number. Numbers default to float32 (booleans to
 * bool); typed arrays keep their element type unless `dtype` says otherwise. */
export function tensor(
  data: number | boolean | readonly unknown[] | NumericArray,
  o?: CreateOptions & { shape?: Shape },
): Tensor {
  if (ArrayBuffer.isView(data)) {
    const shape = o?.shape ? [...o.shape] : [data.length];
    const native: DType =
      data instanceof Float64Array
        ? "float64"
        : data instanceof Float32Array
          ? "float32"
          : data instanceof BigInt64Array
            ? "int64"
            : data instanceof Int32Array
              ? "int32"
              : data instanceof Int16Array
                ? "int16"
                : data instanceof Int8Array
                  ? "int8"
                  : data instanceof Uint8Array
                    ? "uint8"
                    : "bfloat16";
    const t = new Tensor(N.fromBuffer(data, dtypeCode(native), shape, null));
    if ((o?.dtype && o.dtype !== native) || (o?.device && o.device !== "cpu")) {
      const c = t.to({ dtype: o?.dtype, device: o?.device });
      t.dispose();
      return finish(c, o);
    }
    return finish(t, o);
  }
  const shape = o?.shape ? [...o.shape] : inferShape(data);
  const flat: unknown[] = Array.isArray(data) ? (data as unknown[]).flat(Number.POSITIVE_INFINITY) : [data];
  const n = shape.reduce((a, b) => a * b, 1);
  if (flat.length !== n)
    throw new RangeError(`tensor(): data has ${flat.length} values but shape [${shape}] needs ${n}`);
  const dtype = o?.dtype ?? (typeof flat[0] === "boolean" ? "bool" : "float32");
  let buf: NumericArray;
  switch (dtype) {
    case "float64":
      buf = Float64Array.from(flat as number[]);
      break;
    case "int64":
      buf = BigInt64Array.from(flat as number[], (x) => BigInt(Math.trunc(Number(x))));
      break;
    case "int32":
      buf = Int32Array.from(flat as number[]);
      break;
    case "bool":
      buf = Uint8Array.from(flat as number[], (x) => (x ? 1 : 0));
      break;
    case "uint8":
      buf = Uint8Array.from(flat as number[], (x) => Number(x));
      break;
    default:
      buf = Float32Array.from(flat as number[]);
  }
  const bufDtype: DType =
    dtype === "float64" || dtype === "int64" || dtype === "int32" || dtype === "bool" || dtype === "uint8"
      ? dtype
      : "float32";
  const t = new Tensor(N.fromBuffer(buf, dtypeCode(bufDtype), shape, null));
  if (bufDtype !== dtype || (o?.device && o.device !== "cpu")) {
    const c = t.to({ dtype, device: o?.device });
    t.dispose();
    return finish(c, o);
  }
  return finish(t, o);
}

/** A tensor holding a copy of raw little-endian bytes (e.g. a safetensors payload). */
export function fromBuffer(bytes: ArrayBufferView | ArrayBuffer, dtype: DType, shape: Shape, device?: Device): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const len = bytes.byteLength;
  if (n * ELEMENT_SIZE[dtype] !== len) {
    throw new RangeError(`fromBuffer: shape [${shape}] of ${dtype} needs ${n * ELEMENT_SIZE[dtype]} bytes, got ${len}`);
  }
  const view = ArrayBuffer.isView(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes;
  return new Tensor(N.fromBuffer(view, dtypeCode(dtype), [...shape], device ?? null));
}

export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  return new Tensor(
    N.cat(
      tensors.map((t) => t.handle),
      dim,
    ),
  );
}
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  return new Tensor(
    N.stack(
      tensors.map((t) => t.handle),
      dim,
    ),
  );
}
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  return new Tensor(N.where(cond.handle, a.handle, b.handle));
}
export function allclose(a: Tensor, b: Tensor, rtol = 1e-5, atol = 1e-8): boolean {
  return N.allclose(a.handle, b.handle, rtol, atol);
}
