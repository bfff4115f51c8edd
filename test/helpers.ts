// Shared test helpers: fixture paths and numeric comparison with informative failures.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
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

/** The 8-bit RGB image (interleaved, row-major) behind normalised pixel values [3, H, W] (or [1, 3, H, W]): the
 * reference's uint8 image before its rescale/normalise. Each value must sit on an 8-bit level (asserted). */
export function uint8FromPixelValues(
  pixels: Tensor | ArrayLike<number>,
  mean: readonly number[],
  std: readonly number[],
  height: number,
  width: number,
): Uint8Array {
  const v = values(pixels);
  const n = height * width;
  assert.equal(v.length, 3 * n, `pixel values: ${v.length} values for 3×${height}×${width}`);
  const out = new Uint8Array(3 * n);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < n; i++) {
      const x = ((v[c * n + i] as number) * (std[c] as number) + (mean[c] as number)) * 255;
      const u = Math.round(x);
      assert.ok(Math.abs(x - u) < 1e-3 && u >= 0 && u <= 255, `pixel value ${c}/${i} is not an 8-bit level (${x})`);
      out[i * 3 + c] = u;
    }
  }
  return out;
}

/** How many bytes differ, and the largest difference. */
export function byteDiff(a: Uint8Array, b: Uint8Array): { differ: number; max: number } {
  assert.equal(a.length, b.length, `byte length ${a.length} vs ${b.length}`);
  let differ = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (d > 0) differ++;
    if (d > max) max = d;
  }
  return { differ, max };
}

// ---- what the machine has, observed independently of the engine's own reports ----

/** Shared libraries mapped into this process (Linux: /proc/self/maps; elsewhere an empty list). */
export function loadedLibraries(): string[] {
  if (!existsSync("/proc/self/maps")) return [];
  const paths = readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[5])
    .filter((p): p is string => p?.startsWith("/") === true && p.includes(".so"));
  return [...new Set(paths)];
}

/** Whether libtorch's BLAS in this process is OpenBLAS (a libopenblas* is mapped). Call after loading the engine. */
export function openblasLoaded(): boolean {
  return loadedLibraries().some((p) => /\/libopenblas[^/]*\.so/.test(p));
}

/** Where a library name is found as the dynamic loader would (TINYLLAVA_MKL_DIR, LD_LIBRARY_PATH, the ldconfig cache,
 * the default folders), or null. */
function findLibrary(name: string, dir?: string): string | null {
  if (dir) return existsSync(join(dir, name)) ? join(dir, name) : null;
  for (const d of (process.env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean))
    if (existsSync(join(d, name))) return join(d, name);
  for (const ldconfig of ["/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"]) {
    const r = spawnSync(ldconfig, ["-p"], { encoding: "utf8" });
    if (r.status !== 0) continue;
    const hit = r.stdout.split("\n").find((l) => l.trim().startsWith(`${name} `));
    if (hit) return hit.split("=>").pop()?.trim() ?? name;
    break;
  }
  for (const d of ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"])
    if (existsSync(join(d, name))) return join(d, name);
  return null;
}

/** Whether the engine must find MKL's VML: the three MKL layers or libmkl_rt are on the loader path (or in
 * TINYLLAVA_MKL_DIR), x86-64, and TINYLLAVA_VML is not 0. */
export function mklExpected(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.TINYLLAVA_VML === "0" || process.arch !== "x64") return false;
  const dir = env.TINYLLAVA_MKL_DIR || undefined;
  const layers = ["libmkl_core.so", "libmkl_sequential.so", "libmkl_intel_lp64.so"].every((n) => findLibrary(n, dir));
  return layers || ["libmkl_rt.so", "libmkl_rt.so.2", "libmkl_rt.so.1"].some((n) => findLibrary(n, dir));
}

/** The intra-op thread count the engine must start with: TINYLLAVA_NUM_THREADS, else every available core. */
export function expectedThreads(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.TINYLLAVA_NUM_THREADS;
  return v !== undefined && v !== "" ? Number(v) : availableParallelism();
}
