// Validated readers for the benchmark files (JSON, JSON Lines, text) and atomic writers. Every error is an EvaluationError
// that names the file, the line (JSONL) and the field, e.g.
//   EvaluationError: answers.jsonl:7: field "text" is 3; expected a string
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { EvaluationError } from "./errors.js";

export type JsonObject = Record<string, unknown>;

const decoder = new TextDecoder("utf-8", { fatal: true });

/** The file as UTF-8 text (invalid UTF-8 is an error, as for Python's open()). */
export function readText(path: string): string {
  if (!existsSync(path)) throw new EvaluationError(`${path}: file not found`);
  if (statSync(path).isDirectory()) throw new EvaluationError(`${path}: is a directory, expected a file`);
  try {
    return decoder.decode(readFileSync(path));
  } catch {
    throw new EvaluationError(`${path}: not valid UTF-8 text`);
  }
}

export function readJson(path: string): unknown {
  const text = readText(path);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new EvaluationError(`${path}: invalid JSON (${(e as Error).message})`);
  }
}

/** Splits text into lines as Python's text-mode iteration does (\n, \r\n and \r end a line). */
export function pyLines(text: string): string[] {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

export interface JsonLine {
  /** 1-based line number in the file. */
  line: number;
  value: unknown;
  where: string;
}

/**
 * One JSON value per line (`json.loads(line)` for each line). Empty lines at the end of the file are ignored; an
 * empty or malformed line anywhere else is an error naming the line.
 */
export function readJsonLines(path: string): JsonLine[] {
  const lines = pyLines(readText(path));
  while (lines.length > 0 && (lines[lines.length - 1] as string).trim() === "") lines.pop();
  return lines.map((text, i) => {
    const where = `${path}:${i + 1}`;
    if (text.trim() === "") throw new EvaluationError(`${where}: empty line; expected one JSON object per line`);
    try {
      return { line: i + 1, value: JSON.parse(text), where };
    } catch (e) {
      throw new EvaluationError(`${where}: invalid JSON (${(e as Error).message})`);
    }
  });
}

function describe(v: unknown): string {
  if (v === undefined) return "missing";
  const s = JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** A JSON object read with validation; `where` ("file:line" or "file: path") prefixes every message. */
export class Rec {
  readonly obj: JsonObject;
  constructor(
    value: unknown,
    readonly where: string,
  ) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new EvaluationError(`${where}: expected a JSON object, got ${describe(value)}`);
    }
    this.obj = value as JsonObject;
  }
  static line(l: JsonLine): Rec {
    return new Rec(l.value, l.where);
  }
  has(k: string): boolean {
    return this.obj[k] !== undefined;
  }
  fail(k: string, expected: string): never {
    const v = this.obj[k];
    throw new EvaluationError(
      `${this.where}: field "${k}" ${v === undefined ? "is missing" : `is ${describe(v)}`}; expected ${expected}`,
    );
  }
  /** The raw value; the field must be present. */
  get(k: string): unknown {
    if (!(k in this.obj)) this.fail(k, "a value");
    return this.obj[k];
  }
  str(k: string): string {
    const v = this.obj[k];
    if (typeof v !== "string") this.fail(k, "a string");
    return v;
  }
  int(k: string): number {
    const v = this.obj[k];
    if (typeof v !== "number" || !Number.isInteger(v)) this.fail(k, "an integer");
    return v;
  }
  bool(k: string): boolean {
    const v = this.obj[k];
    if (typeof v !== "boolean") this.fail(k, "true or false");
    return v;
  }
  /** A question/image id: a string or an integer. */
  id(k: string): string | number {
    const v = this.obj[k];
    if (typeof v !== "string" && !(typeof v === "number" && Number.isInteger(v))) {
      this.fail(k, "a string or integer id");
    }
    return v;
  }
  arr(k: string): unknown[] {
    const v = this.obj[k];
    if (!Array.isArray(v)) this.fail(k, "a JSON array");
    return v;
  }
  strArr(k: string): string[] {
    const v = this.arr(k);
    v.forEach((x, i) => {
      if (typeof x !== "string") this.fail(k, `an array of strings (item ${i} is ${describe(x)})`);
    });
    return v as string[];
  }
  rec(k: string): Rec {
    const v = this.obj[k];
    if (v === null || typeof v !== "object" || Array.isArray(v)) this.fail(k, "a JSON object");
    return new Rec(v, `${this.where} ${k}`);
  }
}

/** A top-level JSON array, each item an object. */
export function readJsonArray(path: string, what: string): Rec[] {
  const v = readJson(path);
  if (!Array.isArray(v)) throw new EvaluationError(`${path}: expected a JSON array of ${what}, got ${describe(v)}`);
  return v.map((x, i) => new Rec(x, `${path}: [${i}]`));
}

/**
 * The keys of a top-level JSON object in file order (first occurrence), as Python's dict keeps them; JavaScript
 * objects would move integer-like keys ("201307251") to the front in numeric order.
 */
export function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  const seen = new Set<string>();
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) {
        const k = JSON.parse(text.slice(i, j + 1)) as string;
        if (!seen.has(k)) keys.push(k);
        seen.add(k);
        expectKey = false;
      }
      i = j;
    } else if (c === "{" || c === "[") {
      depth++;
      expectKey = depth === 1 && c === "{";
    } else if (c === "}" || c === "]") depth--;
    else if (c === "," && depth === 1) expectKey = true;
  }
  return keys;
}

/** A top-level JSON object of objects (id → record), in file order. */
export function readJsonDict(path: string, what: string): Array<[string, Rec]> {
  const entries = readJsonDictRaw(path, what);
  return entries.map(([k, x]) => [k, new Rec(x, `${path}: "${k}"`)]);
}

/** A top-level JSON object (id → any value), in file order. */
export function readJsonDictRaw(path: string, what: string): Array<[string, unknown]> {
  const text = readText(path);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new EvaluationError(`${path}: invalid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new EvaluationError(`${path}: expected a JSON object of ${what}, got ${describe(v)}`);
  }
  const obj = v as JsonObject;
  return topLevelKeys(text).map((k) => [k, obj[k]]);
}

/** Writes a file atomically (temp file + rename), creating parent folders. */
export function writeFileAtomic(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, content);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
