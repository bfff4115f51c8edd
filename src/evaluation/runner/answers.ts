// The answers file of a run, in TinyLLaVA's format: one `json.dumps({"question_id", "prompt", "text", "answer_id",
// "model_id", "metadata": {}})` per line (Python's separators and ASCII escapes), in question order. It is appended
// line by line and synced after every batch, so a crash loses at most the batch in flight and leaves at most one
// incomplete last line; a rerun drops that line and continues after the last complete answer.
//
// Resuming is by position: the file must be a prefix of the chunk's questions (same question_id, line by line).
// Question ids are not unique in every benchmark (TextVQA's are image ids, MME's name the image of two questions),
// so "skip the ids already answered" would skip unanswered questions there.
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import { EvaluationError } from "../errors.js";
import { type JsonLine, pyLines, Rec } from "../jsonio.js";
import { pyJsonDumps, pyKey, pyStr } from "../python.js";

/** shortuuid's alphabet (no 0, 1, I, O, l). */
const SHORTUUID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/** shortuuid.encode of a 128-bit number: 22 characters, most significant first (int_to_string, padded). */
export function shortuuidEncode(value: bigint): string {
  const base = BigInt(SHORTUUID_ALPHABET.length);
  let out = "";
  let n = value;
  while (n > 0n) {
    out = SHORTUUID_ALPHABET[Number(n % base)] + out;
    n /= base;
  }
  return out.padStart(22, SHORTUUID_ALPHABET[0]);
}

/**
 * The answer_id: shortuuid's format (22 characters of its alphabet), but derived from the answer instead of a random
 * uuid4, so a rerun or a resumed run writes byte-identical files. Nothing downstream reads answer ids.
 */
export function answerId(parts: readonly unknown[]): string {
  const digest = createHash("sha256").update(JSON.stringify(parts)).digest();
  return shortuuidEncode(BigInt(`0x${digest.subarray(0, 16).toString("hex")}`));
}

export interface AnswerRecord {
  question_id: string | number;
  prompt: string;
  text: string;
  answer_id: string;
  model_id: string | null;
  metadata: Record<string, never>;
}

/** One line as Factory's `json.dumps(...) + "\n"` writes it. */
export function answerLine(a: AnswerRecord): string {
  return `${pyJsonDumps({
    question_id: a.question_id,
    prompt: a.prompt,
    text: a.text,
    answer_id: a.answer_id,
    model_id: a.model_id,
    metadata: a.metadata,
  })}\n`;
}

export interface ExistingAnswers {
  /** complete answer lines, validated (question_id, prompt, text) */
  lines: Array<{ line: JsonLine; rec: Rec; questionId: string | number; prompt: unknown }>;
  /** bytes of the complete lines (where appending continues) */
  validBytes: number;
  /** bytes of an incomplete last line (a crash mid-write), to be dropped */
  partialBytes: number;
}

const NEWLINE = 0x0a;
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Reads an answers file that a run is writing (or wrote): complete lines validated, an incomplete tail measured. */
export function readExistingAnswers(path: string): ExistingAnswers {
  if (!existsSync(path)) return { lines: [], validBytes: 0, partialBytes: 0 };
  if (statSync(path).isDirectory()) throw new EvaluationError(`${path}: is a directory, expected an answers file`);
  const bytes = readFileSync(path);
  const validBytes = bytes.lastIndexOf(NEWLINE) + 1;
  let text: string;
  try {
    text = decoder.decode(bytes.subarray(0, validBytes));
  } catch {
    throw new EvaluationError(`${path}: not valid UTF-8 text`);
  }
  const lines = pyLines(text).map((raw, i) => {
    const where = `${path}:${i + 1}`;
    if (raw.trim() === "")
      throw new EvaluationError(`${where}: empty line; expected one answer (JSON object) per line`);
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      throw new EvaluationError(
        `${where}: invalid JSON (${(e as Error).message}); only an incomplete last line is dropped on resume — move the file away to start over`,
      );
    }
    const line: JsonLine = { line: i + 1, value, where };
    const rec = Rec.line(line);
    const questionId = rec.id("question_id");
    rec.str("text");
    return { line, rec, questionId, prompt: rec.get("prompt") };
  });
  return { lines, validBytes, partialBytes: bytes.length - validBytes };
}

/** question_id equality as Python's == on JSON scalars (1 == 1.0, "1" != 1). */
export function sameId(a: unknown, b: unknown): boolean {
  return pyKey(a) === pyKey(b);
}

export function idText(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : pyStr(v);
}

/** Appends lines to an answers file, synced to disk after each batch. */
export class AnswersWriter {
  private fd: number;

  /** Opens `path` for appending after its first `keepBytes` bytes (an incomplete tail beyond them is cut off). */
  constructor(
    readonly path: string,
    keepBytes: number,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    if (existsSync(path) && statSync(path).size > keepBytes) truncateSync(path, keepBytes);
    this.fd = openSync(path, "a");
  }

  write(lines: readonly string[]): void {
    for (const l of lines) {
      const buf = Buffer.from(l, "utf8");
      let off = 0;
      while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
    }
    if (lines.length) fdatasyncSync(this.fd);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** `<answers>.lock`: one writer per answers file (a second run on the same chunk would interleave lines). */
export class AnswersLock {
  readonly lockPath: string;
  private held = false;

  constructor(readonly path: string) {
    this.lockPath = `${path}.lock`;
  }

  acquire(): void {
    mkdirSync(dirname(this.lockPath), { recursive: true });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(this.lockPath, `${process.pid}\n`, { flag: "wx" });
        this.held = true;
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
      const pid = Number.parseInt(readFileSync(this.lockPath, "utf8"), 10);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid))
        throw new EvaluationError(
          `${this.path}: another run (pid ${pid}) is writing this answers file (${this.lockPath}); wait for it or stop it`,
        );
      rmSync(this.lockPath, { force: true }); // left by a run that died
    }
    throw new EvaluationError(`${this.lockPath}: cannot take the lock`);
  }

  release(): void {
    if (this.held) rmSync(this.lockPath, { force: true });
    this.held = false;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
