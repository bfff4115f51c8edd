// The GGUF container (ggml's docs/gguf.md, version 3), written as a stream: header (magic "GGUF", version, tensor
// count, metadata count), metadata key/values, tensor infos (name, dims in ggml order — innermost first —, ggml type,
// offset into the data section), padding to the alignment, then each tensor's bytes padded to the alignment. llama.cpp
// requires the tensors to follow one another in info order (offset = previous offset + padded size), as here.
// Everything is little-endian. The file is written to a temporary name and renamed into place (atomic); tensor bytes
// come from producers one chunk at a time, so nothing is held twice in memory.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { TinyllavaError } from "../errors.js";

/** Something about the export cannot be done (unsupported architecture, tokenizer, option). */
export class ExportError extends TinyllavaError {}

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** gguf_type: the metadata value types. */
export const GGUF_VALUE = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** ggml_type numbers of the tensor types written here. */
export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
export type GgmlType = (typeof GGML_TYPE)[keyof typeof GGML_TYPE];

/** Elements per block and bytes per block of each type (Q8_0: an fp16 scale + 32 int8). */
export const GGML_BLOCK: Record<GgmlType, { elements: number; bytes: number }> = {
  [GGML_TYPE.F32]: { elements: 1, bytes: 4 },
  [GGML_TYPE.F16]: { elements: 1, bytes: 2 },
  [GGML_TYPE.BF16]: { elements: 1, bytes: 2 },
  [GGML_TYPE.Q8_0]: { elements: 32, bytes: 34 },
};

export type GgufScalarType =
  | "u8"
  | "i8"
  | "u16"
  | "i16"
  | "u32"
  | "i32"
  | "f32"
  | "bool"
  | "str"
  | "u64"
  | "i64"
  | "f64";

export type GgufValue =
  | { type: Exclude<GgufScalarType, "str" | "bool">; value: number | bigint }
  | { type: "bool"; value: boolean }
  | { type: "str"; value: string }
  | { type: "array"; itemType: Exclude<GgufScalarType, "str" | "bool">; value: ArrayLike<number> }
  | { type: "array"; itemType: "str"; value: readonly string[] }
  | { type: "array"; itemType: "bool"; value: readonly boolean[] };

export const kv = {
  u32: (value: number): GgufValue => ({ type: "u32", value }),
  i32: (value: number): GgufValue => ({ type: "i32", value }),
  f32: (value: number): GgufValue => ({ type: "f32", value }),
  bool: (value: boolean): GgufValue => ({ type: "bool", value }),
  str: (value: string): GgufValue => ({ type: "str", value }),
  strs: (value: readonly string[]): GgufValue => ({ type: "array", itemType: "str", value }),
  i32s: (value: ArrayLike<number>): GgufValue => ({ type: "array", itemType: "i32", value }),
  f32s: (value: ArrayLike<number>): GgufValue => ({ type: "array", itemType: "f32", value }),
};

const SCALAR_CODE: Record<GgufScalarType, number> = {
  u8: GGUF_VALUE.UINT8,
  i8: GGUF_VALUE.INT8,
  u16: GGUF_VALUE.UINT16,
  i16: GGUF_VALUE.INT16,
  u32: GGUF_VALUE.UINT32,
  i32: GGUF_VALUE.INT32,
  f32: GGUF_VALUE.FLOAT32,
  bool: GGUF_VALUE.BOOL,
  str: GGUF_VALUE.STRING,
  u64: GGUF_VALUE.UINT64,
  i64: GGUF_VALUE.INT64,
  f64: GGUF_VALUE.FLOAT64,
};
const SCALAR_BYTES: Record<Exclude<GgufScalarType, "str">, number> = {
  u8: 1,
  i8: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  bool: 1,
  u64: 8,
  i64: 8,
  f64: 8,
};

/** A tensor to write: name, dims in ggml order (ne[0] = the contiguous, innermost dimension), type, and a producer
 * of its bytes in order (chunks of any size; their total must be the tensor's size). */
export interface GgufTensorSpec {
  name: string;
  ne: number[];
  type: GgmlType;
  chunks: () => Iterable<Uint8Array>;
}

export function tensorBytes(ne: readonly number[], type: GgmlType): number {
  const n = ne.reduce((a, b) => a * b, 1);
  const blk = GGML_BLOCK[type];
  if ((ne[0] ?? 1) % blk.elements !== 0)
    throw new ExportError(`a row of ${ne[0]} elements is not a multiple of the ${blk.elements}-element block`);
  return (n / blk.elements) * blk.bytes;
}

const pad = (n: number, a: number) => (a - (n % a)) % a;

/** Growable little-endian byte builder for the header. */
class Bytes {
  private buf = Buffer.alloc(1 << 16);
  length = 0;
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const b = Buffer.alloc(cap);
    this.buf.copy(b, 0, 0, this.length);
    this.buf = b;
  }
  scalar(type: Exclude<GgufScalarType, "str">, v: number | bigint | boolean): void {
    this.ensure(8);
    const b = this.buf;
    const o = this.length;
    switch (type) {
      case "u8":
        b.writeUInt8(Number(v), o);
        break;
      case "i8":
        b.writeInt8(Number(v), o);
        break;
      case "u16":
        b.writeUInt16LE(Number(v), o);
        break;
      case "i16":
        b.writeInt16LE(Number(v), o);
        break;
      case "u32":
        b.writeUInt32LE(Number(v), o);
        break;
      case "i32":
        b.writeInt32LE(Number(v), o);
        break;
      case "f32":
        b.writeFloatLE(Number(v), o);
        break;
      case "bool":
        b.writeUInt8(v ? 1 : 0, o);
        break;
      case "u64":
        b.writeBigUInt64LE(BigInt(v), o);
        break;
      case "i64":
        b.writeBigInt64LE(BigInt(v), o);
        break;
      case "f64":
        b.writeDoubleLE(Number(v), o);
        break;
    }
    this.length += SCALAR_BYTES[type];
  }
  string(s: string): void {
    const enc = Buffer.from(s, "utf8");
    this.scalar("u64", BigInt(enc.length));
    this.ensure(enc.length);
    enc.copy(this.buf, this.length);
    this.length += enc.length;
  }
  zeros(n: number): void {
    this.ensure(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeValue(b: Bytes, key: string, v: GgufValue): void {
  b.string(key);
  if (v.type === "array") {
    b.scalar("u32", GGUF_VALUE.ARRAY);
    b.scalar("u32", SCALAR_CODE[v.itemType]);
    b.scalar("u64", BigInt(v.value.length));
    if (v.itemType === "str") for (const s of v.value as readonly string[]) b.string(s);
    else {
      const t = v.itemType;
      const arr = v.value as ArrayLike<number | boolean>;
      for (let i = 0; i < arr.length; i++) b.scalar(t, arr[i] as number);
    }
    return;
  }
  b.scalar("u32", SCALAR_CODE[v.type]);
  if (v.type === "str") b.string(v.value);
  else b.scalar(v.type, v.value);
}

/** Writes everything through a large buffer (few write calls) to one file descriptor. */
class Sink {
  private buf = Buffer.allocUnsafe(8 << 20);
  private used = 0;
  written = 0;
  constructor(private readonly fd: number) {}
  write(chunk: Uint8Array): void {
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(chunk.length - off, this.buf.length - this.used);
      this.buf.set(chunk.subarray(off, off + n), this.used);
      this.used += n;
      off += n;
      if (this.used === this.buf.length) this.flush();
    }
    this.written += chunk.length;
  }
  zeros(n: number): void {
    if (n > 0) this.write(new Uint8Array(n));
  }
  flush(): void {
    let done = 0;
    while (done < this.used) done += writeSync(this.fd, this.buf, done, this.used - done);
    this.used = 0;
  }
}

export interface GgufWriteResult {
  path: string;
  bytes: number;
  tensors: number;
  dataOffset: number;
}

/** Writes a GGUF file atomically (temp file in the same folder, fsync, rename). `metadata` keys keep their order;
 * general.alignment is taken from `alignment` (added when missing). */
export function writeGgufFile(
  path: string,
  metadata: [string, GgufValue][],
  tensors: GgufTensorSpec[],
  alignment = GGUF_DEFAULT_ALIGNMENT,
): GgufWriteResult {
  if (alignment <= 0 || (alignment & (alignment - 1)) !== 0)
    throw new ExportError(`alignment ${alignment} is not a power of two`);
  const keys = new Set<string>();
  for (const [k] of metadata) {
    if (keys.has(k)) throw new ExportError(`duplicate metadata key "${k}"`);
    keys.add(k);
  }
  const kvs: [string, GgufValue][] = keys.has("general.alignment")
    ? metadata
    : [...metadata, ["general.alignment", kv.u32(alignment)]];
  const names = new Set<string>();
  const sizes: number[] = [];
  for (const t of tensors) {
    if (names.has(t.name)) throw new ExportError(`duplicate tensor name "${t.name}"`);
    if (Buffer.byteLength(t.name) >= 64) throw new ExportError(`tensor name "${t.name}" is 64 bytes or longer`);
    if (t.ne.length < 1 || t.ne.length > 4) throw new ExportError(`tensor "${t.name}" has ${t.ne.length} dimensions`);
    names.add(t.name);
    sizes.push(tensorBytes(t.ne, t.type));
  }
  const h = new Bytes();
  h.scalar("u32", GGUF_MAGIC);
  h.scalar("u32", GGUF_VERSION);
  h.scalar("u64", BigInt(tensors.length));
  h.scalar("u64", BigInt(kvs.length));
  for (const [k, v] of kvs) writeValue(h, k, v);
  let offset = 0;
  tensors.forEach((t, i) => {
    h.string(t.name);
    h.scalar("u32", t.ne.length);
    for (const d of t.ne) h.scalar("u64", BigInt(d));
    h.scalar("u32", t.type);
    h.scalar("u64", BigInt(offset));
    const n = sizes[i] as number;
    offset += n + pad(n, alignment);
  });
  h.zeros(pad(h.length, alignment));
  const dataOffset = h.length;

  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now()}`);
  const fd = openSync(tmp, "w");
  let closed = false;
  try {
    const sink = new Sink(fd);
    sink.write(h.bytes());
    tensors.forEach((t, i) => {
      const expected = sizes[i] as number;
      const start = sink.written;
      for (const c of t.chunks()) sink.write(c);
      const got = sink.written - start;
      if (got !== expected)
        throw new ExportError(`tensor "${t.name}": producer wrote ${got} bytes, expected ${expected}`);
      sink.zeros(pad(expected, alignment));
    });
    sink.flush();
    fsyncSync(fd);
    closeSync(fd);
    closed = true;
    renameSync(tmp, path);
    return { path, bytes: sink.written, tensors: tensors.length, dataOffset };
  } catch (e) {
    if (!closed) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
    rmSync(tmp, { force: true });
    throw e;
  }
}
