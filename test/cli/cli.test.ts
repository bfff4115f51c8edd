// The `tinyllava` command: help, version (with libtorch's), info, predict on a fixture model, and clear errors.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { REFERENCE, ROOT } from "../helpers.js";

function run(...args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src", "cli", "main.ts"), ...args], {
    encoding: "utf8",
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test("--help, --version and info", () => {
  const h = run("--help");
  assert.equal(h.code, 0);
  for (const c of ["info", "demo", "predict"]) assert.match(h.out, new RegExp(`\\b${c}\\b`));
  const v = run("--version");
  assert.equal(v.code, 0);
  assert.match(v.out, /^tinyllava \d+\.\d+\.\d+ \(libtorch \d+\.\d+\.\d+\)/);
  const i = run("info");
  assert.equal(i.code, 0);
  const info = JSON.parse(i.out);
  assert.ok(info.threads >= 1);
  assert.match(info.blas, /OpenBLAS/);
  assert.match(info.cosSin, /MKL/);
  assert.match(info.kernels, /^libtorch /);
});

test("predict answers with a model folder; bad input gets a clear error", () => {
  const model = join(REFERENCE, "models", "tinyllava-siglip-phi");
  const image = join(REFERENCE, "images", "shapes_64x64.png");
  const p = run("predict", "-m", model, "-i", image, "-p", "What color is the circle?", "--max-new-tokens", "4");
  assert.equal(p.code, 0, p.err);
  assert.match(p.err, /\(\d+ tokens in [\d.]+ s\)/);
  const bad = run("predict", "-m", model, "-i", join(REFERENCE, "images", "nope.png"), "-p", "q");
  assert.equal(bad.code, 1);
  assert.match(bad.err, /^tinyllava: ImageError: .*nope.png: file not found/);
  const noModel = run("predict", "-m", "/nonexistent", "-p", "q");
  assert.equal(noModel.code, 1);
  assert.match(noModel.err, /ConfigError: \/nonexistent\/config.json: file not found/);
});
