// safetensors read/write (https://github.com/huggingface/safetensors format): 8-byte little-endian header length,
// a JSON header {name: {dtype, shape, data_offsets}}, then the raw bytes. The header is validated before it is
// trusted; tensors are read one at a time (no whole-file buffering); writes are atomic (temp file + rename).
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { CheckpointError } from "../errors.js";
import { fromBuffer } from "./creation.js";
import { type DType, ELEMENT_SIZE } from "./dtype.js";
import type { Tensor } from "./tensor.js";

export const ST_DTYPES: Record<string, DType> = {
  F64: "float64",
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  I64: "int64",
  I32: "int32",
  I16: "int16",
  I8: "int8",
  U8: "uint8",
  BOOL: "bool",
};
const TO_ST: Record<DType, string> = Object.fromEntries(Object.entries(ST_DTYPES).map(([k, v]) => [v, k])) as Record<
  DType,
  string
>;

/** Largest header accepted (the reference implementation uses 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  dtype: DType;
  shape: number[];
  /** absolute byte range in the file */
  start: number;
  end: number;
}

function parseHeader(
  file: string,
  fd: number,
  fileSize: number,
): { infos: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const fail = (msg: string): never => {
    throw new CheckpointError(`${file}: ${msg}`);
  };
  if (fileSize < 8) fail(`file is ${fileSize} bytes, too small for a safetensors header`);
  const lenBuf = Buffer.alloc(8);
  readSync(fd, lenBuf, 0, 8, 0);
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(MAX_HEADER_BYTES))
    fail(`header declares ${headerLen} bytes, above the ${MAX_HEADER_BYTES}-byte limit`);
  const hl = Number(headerLen);
  if (8 + hl > fileSize)
    fail(`header declares ${hl} bytes but the file has only ${fileSize - 8} after the length prefix`);
  const hb = Buffer.alloc(hl);
  readSync(fd, hb, 0, hl, 8);
  let header: unknown;
  try {
    header = JSON.parse(hb.toString("utf8"));
  } catch (e) {
    return fail(`header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) fail("header is not a JSON object");
  const dataStart = 8 + hl;
  const dataLen = fileSize - dataStart;
  const infos = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (raw === null || typeof raw !== "object" || Array.isArray(raw)) fail(`"__metadata__" is not an object`);
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== "string") fail(`"__metadata__" value "${k}" is not a string`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) fail(`tensor "${name}": entry is not an object`);
    const r = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof r.dtype !== "string" || !(r.dtype in ST_DTYPES)) {
      fail(
        `tensor "${name}": unknown dtype ${JSON.stringify(r.dtype)} (expected one of ${Object.keys(ST_DTYPES).join(", ")})`,
      );
    }
    const dtype = ST_DTYPES[r.dtype as string] as DType;
    if (!Array.isArray(r.shape) || !r.shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
      fail(`tensor "${name}": shape ${JSON.stringify(r.shape)} is not a list of non-negative integers`);
    }
    const shape = r.shape as number[];
    const off = r.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`tensor "${name}": data_offsets ${JSON.stringify(off)} is not a pair of non-negative integers`);
    }
    const [b, e] = off as [number, number];
    if (e < b) fail(`tensor "${name}": data_offsets [${b}, ${e}] end before they begin`);
    if (e > dataLen)
      fail(`tensor "${name}": data_offsets [${b}, ${e}] run past the end of the data (${dataLen} bytes)`);
    const expected = shape.reduce((a, s) => a * s, 1) * ELEMENT_SIZE[dtype];
    if (e - b !== expected) {
      fail(`tensor "${name}": declares ${e - b} bytes but shape [${shape}] of ${r.dtype} needs ${expected}`);
    }
    infos.set(name, { dtype, shape, start: dataStart + b, end: dataStart + e });
  }
  // Overlap: every non-empty range against the furthest-reaching one before it (not only its neighbour: an empty
  // tensor sorted between two overlapping ones must not hide them). Empty tensors occupy no bytes.
  const sorted = [...infos.entries()]
    .filter(([, t]) => t.end > t.start)
    .sort((a, b) => a[1].start - b[1].start || a[1].end - b[1].end);
  let reach: [string, TensorInfo] | null = null;
  for (const cur of sorted) {
    const [cn, c] = cur;
    if (reach && c.start < reach[1].end) {
      const [pn, p] = reach;
      fail(
        `tensors "${pn}" and "${cn}" overlap (bytes ${p.start - dataStart}-${p.end - dataStart} and ${c.start - dataStart}-${c.end - dataStart})`,
      );
    }
    if (!reach || c.end > reach[1].end) reach = cur;
  }
  return { infos, metadata };
}

/** An open safetensors file: validated header, tensors read on demand. */
export class SafetensorsFile {
  readonly path: string;
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  private fd: number;

  constructor(path: string) {
    this.path = path;
    if (!existsSync(path)) throw new CheckpointError(`${path}: file not found`);
    this.fd = openSync(path, "r");
    try {
      const { infos, metadata } = parseHeader(path, this.fd, fstatSync(this.fd).size);
      this.tensors = infos;
      this.metadata = metadata;
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** Reads one tensor (optionally converted to `dtype`). */
  get(name: string, dtype?: DType): Tensor {
    const info = this.tensors.get(name);
    if (!info) throw new CheckpointError(`${this.path}: no tensor named "${name}"`);
    if (this.fd < 0) throw new CheckpointError(`${this.path}: file was closed`);
    const n = info.end - info.start;
    const buf = Buffer.allocUnsafe(n);
    let done = 0;
    while (done < n) {
      const r = readSync(this.fd, buf, done, n - done, info.start + done);
      if (r <= 0) throw new CheckpointError(`${this.path}: tensor "${name}" is truncated (read ${done} of ${n} bytes)`);
      done += r;
    }
    const t = fromBuffer(buf, info.dtype, info.shape);
    if (dtype === undefined || dtype === info.dtype) return t;
    const c = t.to(dtype);
    t.dispose();
    return c;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** Reads every tensor of a file into a Map (names in file order). */
export function loadSafetensors(path: string, dtype?: DType): Map<string, Tensor> {
  const f = new SafetensorsFile(path);
  try {
    const out = new Map<string, Tensor>();
    for (const k of f.keys()) out.set(k, f.get(k, dtype));
    return out;
  } finally {
    f.close();
  }
}

/** A checkpoint made of one file or of shards listed in `model.safetensors.index.json`. */
export class SafetensorsCheckpoint {
  readonly files: SafetensorsFile[];
  private owner = new Map<string, SafetensorsFile>();

  private constructor(files: SafetensorsFile[], weightMap?: Record<string, string>, indexPath?: string) {
    this.files = files;
    const byName = new Map(files.map((f) => [basename(f.path), f]));
    if (weightMap) {
      for (const [name, file] of Object.entries(weightMap)) {
        const f = byName.get(file);
        if (!f)
          throw new CheckpointError(
            `${indexPath}: weight "${name}" maps to "${file}", which is not a shard of this checkpoint`,
          );
        if (!f.has(name))
          throw new CheckpointError(
            `${indexPath}: weight "${name}" is listed in "${file}" but that file has no such tensor`,
          );
        this.owner.set(name, f);
      }
    } else {
      for (const f of files) {
        for (const k of f.keys()) {
          if (this.owner.has(k))
            throw new CheckpointError(`${f.path}: tensor "${k}" also appears in ${this.owner.get(k)?.path}`);
          this.owner.set(k, f);
        }
      }
    }
  }

  /** Opens `path`: a .safetensors file, an index .json, or a folder holding either (index preferred). */
  static open(path: string): SafetensorsCheckpoint {
    let p = path;
    if (existsSync(join(path, "model.safetensors.index.json"))) p = join(path, "model.safetensors.index.json");
    else if (existsSync(join(path, "model.safetensors"))) p = join(path, "model.safetensors");
    if (p.endsWith(".json")) {
      let index: { weight_map?: unknown };
      try {
        index = JSON.parse(readFileSync(p, "utf8"));
      } catch (e) {
        throw new CheckpointError(`${p}: not valid JSON (${(e as Error).message})`);
      }
      const wm = index.weight_map;
      if (wm === null || typeof wm !== "object" || Array.isArray(wm))
        throw new CheckpointError(`${p}: "weight_map" is missing or not an object`);
      const names = [...new Set(Object.values(wm as Record<string, unknown>))];
      for (const n of names)
        if (typeof n !== "string") throw new CheckpointError(`${p}: "weight_map" values must be file names`);
      // every shard opened so far is closed again when a later one (or the index's validation) fails
      const files: SafetensorsFile[] = [];
      try {
        for (const n of names as string[]) files.push(new SafetensorsFile(join(dirname(p), n)));
        return new SafetensorsCheckpoint(files, wm as Record<string, string>, p);
      } catch (e) {
        for (const f of files) f.close();
        throw e;
      }
    }
    if (!existsSync(p))
      throw new CheckpointError(`${path}: no model.safetensors or model.safetensors.index.json found`);
    const f = new SafetensorsFile(p);
    try {
      return new SafetensorsCheckpoint([f]);
    } catch (e) {
      f.close();
      throw e;
    }
  }

  keys(): string[] {
    return [...this.owner.keys()];
  }
  has(name: string): boolean {
    return this.owner.has(name);
  }
  info(name: string): TensorInfo | undefined {
    return this.owner.get(name)?.tensors.get(name);
  }
  get(name: string, dtype?: DType): Tensor {
    const f = this.owner.get(name);
    if (!f) throw new CheckpointError(`checkpoint has no tensor named "${name}"`);
    return f.get(name, dtype);
  }
  close(): void {
    for (const f of this.files) f.close();
  }
}

function headerFor(entries: [string, Tensor][], metadata?: Record<string, string>): { header: Buffer; total: number } {
  const h: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) h.__metadata__ = metadata;
  let off = 0;
  for (const [name, t] of entries) {
    const dt = t.dtype;
    const n = t.numel() * ELEMENT_SIZE[dt];
    h[name] = { dtype: TO_ST[dt], shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  const json = Buffer.from(JSON.stringify(h), "utf8");
  // pad with spaces so the data starts 8-byte aligned, as the reference writer does (counted in UTF-8 bytes: names
  // may be non-ASCII)
  const pad = (8 - ((json.length + 8) % 8)) % 8;
  return { header: Buffer.concat([json, Buffer.alloc(pad, 0x20)]), total: off };
}

/** Writes `write`'s output to a temporary name beside `path` (fsync'ed and closed) and returns that name; the caller
 * renames it into place. On failure nothing is left behind. */
function writeTemp(path: string, write: (fd: number) => void): string {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now()}-${tmpCounter++}`);
  const fd = openSync(tmp, "w");
  try {
    write(fd);
    fsyncSync(fd);
    closeSync(fd);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    rmSync(tmp, { force: true });
    throw e;
  }
  return tmp;
}
let tmpCounter = 0;

/** Flushes a folder's entries (renames, removals) to disk; best effort (not every platform can open a folder). */
function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // not supported here
  }
}

/** Writes a file atomically: to a temporary name in the same folder, fsync, then rename over the target. */
export function atomicWrite(path: string, write: (fd: number) => void): void {
  const tmp = writeTemp(path, write);
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  syncDir(dirname(path));
}

function writeAll(fd: number, buf: Buffer): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done);
}

function sortedEntries(tensors: Map<string, Tensor> | Record<string, Tensor>): [string, Tensor][] {
  return (tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors)).sort((a, b) =>
    a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0,
  );
}

function safetensorsWriter(entries: [string, Tensor][], metadata?: Record<string, string>): (fd: number) => void {
  const { header } = headerFor(entries, metadata);
  return (fd) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    writeAll(fd, len);
    writeAll(fd, header);
    for (const [, t] of entries) writeAll(fd, t.toBuffer());
  };
}

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";
const SHARD_NAME = /^model-\d{5}-of-\d{5}\.safetensors$/;

/** The files of a checkpoint saved in `dir` before (the single file, the index, the shards it lists, and files named
 * like shards), except those in `keep`. Index entries that are not plain .safetensors names in `dir` are ignored. */
function previousCheckpointFiles(dir: string, keep: Set<string>): string[] {
  if (!existsSync(dir)) return [];
  const out = new Set<string>();
  const idx = join(dir, INDEX_FILE);
  if (existsSync(idx)) {
    out.add(INDEX_FILE);
    try {
      const wm = (JSON.parse(readFileSync(idx, "utf8")) as { weight_map?: Record<string, unknown> }).weight_map;
      for (const f of Object.values(wm ?? {}))
        if (typeof f === "string" && basename(f) === f && f.endsWith(".safetensors")) out.add(f);
    } catch {
      // an unreadable index is removed all the same; its shards by their names below
    }
  }
  for (const n of readdirSync(dir)) if (n === SINGLE_FILE || SHARD_NAME.test(n)) out.add(n);
  return [...out].filter((n) => !keep.has(n) && existsSync(join(dir, n)));
}

/** Puts a new checkpoint's files (already written to temporary names) in place of the previous one. At every moment a
 * reader finds the old checkpoint, the new one, or (while shards named like old ones are renamed) none — never a
 * mix: a new index is renamed last (it is what loading prefers), and an old index goes first when new shards would
 * replace files it lists. Files of the previous checkpoint that are not part of the new one are removed after. */
function replaceCheckpoint(dir: string, written: [tmp: string, name: string][]): void {
  const names = new Set(written.map(([, n]) => n));
  const stale = previousCheckpointFiles(dir, names);
  const index = written.find(([, n]) => n === INDEX_FILE);
  const oldIndex = join(dir, INDEX_FILE);
  if (index && existsSync(oldIndex) && written.some(([, n]) => n !== INDEX_FILE && existsSync(join(dir, n))))
    rmSync(oldIndex, { force: true });
  for (const [tmp, n] of written) if (n !== INDEX_FILE) renameSync(tmp, join(dir, n));
  if (index) renameSync(index[0], oldIndex);
  syncDir(dir);
  for (const n of stale) rmSync(join(dir, n), { force: true });
  syncDir(dir);
}

/** Saves tensors to one safetensors file (atomic). A file named model.safetensors is a checkpoint folder's single
 * file: a sharded checkpoint saved there before (model.safetensors.index.json and its shards) is removed, or loading
 * would still prefer it. */
export function saveSafetensors(
  path: string,
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
): void {
  const write = safetensorsWriter(sortedEntries(tensors), metadata);
  if (basename(path) !== SINGLE_FILE) {
    atomicWrite(path, write);
    return;
  }
  const tmp = writeTemp(path, write);
  try {
    replaceCheckpoint(dirname(path), [[tmp, SINGLE_FILE]]);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Saves a checkpoint folder: shards of at most `maxShardBytes` plus `model.safetensors.index.json`, or a single
 * `model.safetensors` when everything fits. Every file is written to a temporary name first; then they replace the
 * previous checkpoint in the folder (single or sharded, see replaceCheckpoint), whose other files are removed.
 * Returns the files written. */
export function saveShardedSafetensors(
  dir: string,
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  maxShardBytes = 5 * 1024 ** 3,
  metadata: Record<string, string> = { format: "pt" },
): string[] {
  const entries = sortedEntries(tensors);
  const shards: [string, Tensor][][] = [[]];
  let size = 0;
  let total = 0;
  for (const e of entries) {
    const n = e[1].numel() * ELEMENT_SIZE[e[1].dtype];
    total += n;
    if (size + n > maxShardBytes && (shards[shards.length - 1] as []).length > 0) {
      shards.push([]);
      size = 0;
    }
    (shards[shards.length - 1] as [string, Tensor][]).push(e);
    size += n;
  }
  const pad = (i: number) => String(i).padStart(5, "0");
  const files: [name: string, write: (fd: number) => void][] = [];
  if (shards.length === 1) files.push([SINGLE_FILE, safetensorsWriter(entries, metadata)]);
  else {
    const weightMap: Record<string, string> = {};
    shards.forEach((s, i) => {
      const name = `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`;
      files.push([name, safetensorsWriter(s, metadata)]);
      for (const [k] of s) weightMap[k] = name;
    });
    const index = Buffer.from(
      `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`,
    );
    files.push([INDEX_FILE, (fd) => writeAll(fd, index)]);
  }
  const written: [string, string][] = [];
  try {
    for (const [name, write] of files) written.push([writeTemp(join(dir, name), write), name]);
    replaceCheckpoint(dir, written);
  } catch (e) {
    for (const [tmp] of written) rmSync(tmp, { force: true });
    throw e;
  }
  return files.map(([name]) => join(dir, name));
}
