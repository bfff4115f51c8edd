// Validation of command-line values: every numeric or enumerated option is checked with an error that names the
// flag, the value and what was expected (never NaN silently turning into "run 0 steps").
import { readFileSync } from "node:fs";
import { SingleBar } from "cli-progress";
import { TinyllavaError } from "../errors.js";
import type { LoadProgress } from "../models/load.js";
import type { DType } from "../torch/dtype.js";

/** A bad command line: printed as one line, exit code 2. */
export class UsageError extends TinyllavaError {}

export function int(flag: string, v: string | number | undefined, o: { min?: number; max?: number } = {}): number {
  const n = typeof v === "number" ? v : v === undefined || v.trim() === "" ? Number.NaN : Number(v);
  if (!Number.isInteger(n) || (o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) {
    const range = [o.min !== undefined ? `≥ ${o.min}` : "", o.max !== undefined ? `≤ ${o.max}` : ""].filter(Boolean);
    throw new UsageError(
      `${flag} ${JSON.stringify(v ?? "")}: expected an integer${range.length ? ` ${range.join(" and ")}` : ""}`,
    );
  }
  return n;
}

export function num(
  flag: string,
  v: string | number | undefined,
  o: { min?: number; max?: number; above?: number } = {},
): number {
  const n = typeof v === "number" ? v : v === undefined || v.trim() === "" ? Number.NaN : Number(v);
  const bad =
    !Number.isFinite(n) ||
    (o.min !== undefined && n < o.min) ||
    (o.max !== undefined && n > o.max) ||
    (o.above !== undefined && n <= o.above);
  if (bad) {
    const range = [
      o.above !== undefined ? `> ${o.above}` : "",
      o.min !== undefined ? `≥ ${o.min}` : "",
      o.max !== undefined ? `≤ ${o.max}` : "",
    ].filter(Boolean);
    throw new UsageError(
      `${flag} ${JSON.stringify(v ?? "")}: expected a number${range.length ? ` ${range.join(" and ")}` : ""}`,
    );
  }
  return n;
}

export function choice<T extends string>(flag: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v))
    throw new UsageError(`${flag} ${JSON.stringify(v)}: expected one of ${allowed.join(", ")}`);
  return v as T;
}

export const DTYPES = ["float32", "bfloat16", "float16", "float64"] as const;
export function dtype(v: string): DType {
  return choice("--dtype", v, DTYPES);
}

/** Peak resident set size of this process in MB (Linux VmHWM; else the current RSS). */
export function peakRssMb(): number {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return process.memoryUsage().rss / 2 ** 20;
}

/** A progress bar on stderr while a checkpoint loads (only on a terminal, and only for large ones). */
export function loadProgressBar(label = "loading"): { onProgress: (p: LoadProgress) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { onProgress: () => {}, stop: () => {} };
  let bar: SingleBar | null = null;
  return {
    onProgress: (p) => {
      if (!bar) {
        if (p.totalBytes < 64 * 2 ** 20) return;
        bar = new SingleBar(
          {
            format: `${label} [{bar}] {percentage}% | {value}/{total} MB | {eta_formatted}`,
            stream: process.stderr,
            hideCursor: true,
            clearOnComplete: true,
          },
          undefined,
        );
        bar.start(Math.round(p.totalBytes / 2 ** 20), 0);
      }
      bar.update(Math.round(p.loadedBytes / 2 ** 20));
    },
    stop: () => bar?.stop(),
  };
}
