// Shared helpers for the evaluation tests: fixture paths and a deep comparison that treats numbers as equal
// within 1e-12 (relative to the expected magnitude, at least 1) and everything else exactly, naming the path.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES, ROOT } from "../helpers.js";

export { ROOT };
export const EVAL_FIXTURES = join(FIXTURES, "eval");
export const JUDGE_FIXTURES = join(FIXTURES, "eval-judge");

/** The expected.json of a benchmark fixture; fails (never skips) when the fixture is missing. */
export function expectedOf(benchmark: string): Record<string, unknown> {
  const p = join(EVAL_FIXTURES, benchmark, "expected.json");
  assert.ok(existsSync(p), `fixture missing: ${p}`);
  return JSON.parse(readFileSync(p, "utf8")) as Record<string, unknown>;
}

/** Deep equality; numbers within `tol` relative to max(1, |expected|). Returns the number of leaves compared. */
export function assertClose(actual: unknown, expected: unknown, path = "$", tol = 1e-12): number {
  if (typeof expected === "number") {
    assert.equal(typeof actual, "number", `${path}: expected a number ${expected}, got ${JSON.stringify(actual)}`);
    const a = actual as number;
    if (Number.isNaN(expected)) assert.ok(Number.isNaN(a), `${path}: expected NaN, got ${a}`);
    else assert.ok(Math.abs(a - expected) <= tol * Math.max(1, Math.abs(expected)), `${path}: ${a} != ${expected}`);
    return 1;
  }
  if (expected === null || typeof expected !== "object") {
    assert.deepEqual(actual, expected, `${path}: ${JSON.stringify(actual)} != ${JSON.stringify(expected)}`);
    return 1;
  }
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${path}: expected an array, got ${JSON.stringify(actual)?.slice(0, 200)}`);
    assert.equal((actual as unknown[]).length, expected.length, `${path}: length`);
    let n = 0;
    expected.forEach((e, i) => {
      n += assertClose((actual as unknown[])[i], e, `${path}[${i}]`, tol);
    });
    return n;
  }
  assert.ok(actual !== null && typeof actual === "object" && !Array.isArray(actual), `${path}: expected an object`);
  const ak = Object.keys(actual as object).sort();
  const ek = Object.keys(expected).sort();
  assert.deepEqual(ak, ek, `${path}: keys differ`);
  let n = 0;
  for (const k of ek) {
    n += assertClose(
      (actual as Record<string, unknown>)[k],
      (expected as Record<string, unknown>)[k],
      `${path}.${k}`,
      tol,
    );
  }
  return n;
}
