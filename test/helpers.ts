// Shared test helpers: fixture paths and numeric comparison with informative failures.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Tensor } from "../src/torch/index.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const FIXTURES = join(ROOT, "test", "fixtures");
/** The reference fixtures: the repo copy, or the folder named by TINYLLAVA_REFERENCE_FIXTURES. */
export const REFERENCE = process.env.TINYLLAVA_REFERENCE_FIXTURES || join(FIXTURES, "reference");

export function values(x: Tensor | ArrayLike<number>): number[] {
  if ((x as Tensor).handle !== undefined) return (x as Tensor).toArray();
  return Array.from(x as ArrayLike<number>);
}

export interface Diff {
  maxAbs: number;
  maxRel: number;
  /** max |a-b| / max(|b|) — relative to the reference's scale */
  relToScale: number;
}

export function diff(a: Tensor | ArrayLike<number>, b: Tensor | ArrayLike<number>): Diff {
  const x = values(a);
  const y = values(b);
  assert.equal(x.length, y.length, `length ${x.length} vs ${y.length}`);
  let maxAbs = 0;
  let maxRel = 0;
  let scale = 0;
  for (let i = 0; i < x.length; i++) {
    const d = Math.abs((x[i] as number) - (y[i] as number));
    if (Number.isNaN(d)) return { maxAbs: Number.NaN, maxRel: Number.NaN, relToScale: Number.NaN };
    maxAbs = Math.max(maxAbs, d);
    maxRel = Math.max(maxRel, d / Math.max(Math.abs(y[i] as number), 1e-300));
    scale = Math.max(scale, Math.abs(y[i] as number));
  }
  return { maxAbs, maxRel, relToScale: scale === 0 ? maxAbs : maxAbs / scale };
}

/** Elementwise |a-b| <= atol + rtol*|b| (numpy.isclose). */
export function assertClose(
  a: Tensor | ArrayLike<number>,
  b: Tensor | ArrayLike<number>,
  opts: { rtol?: number; atol?: number; what?: string } = {},
): void {
  const x = values(a);
  const y = values(b);
  const rtol = opts.rtol ?? 1e-6;
  const atol = opts.atol ?? 0;
  assert.equal(x.length, y.length, `${opts.what ?? "values"}: length ${x.length} vs ${y.length}`);
  for (let i = 0; i < x.length; i++) {
    const xi = x[i] as number;
    const yi = y[i] as number;
    if (!(Math.abs(xi - yi) <= atol + rtol * Math.abs(yi)) && !(Number.isNaN(xi) && Number.isNaN(yi)) && xi !== yi) {
      assert.fail(
        `${opts.what ?? "values"}[${i}]: got ${xi}, expected ${yi} (rtol ${rtol}, atol ${atol}); ${JSON.stringify(diff(x, y))}`,
      );
    }
  }
}
