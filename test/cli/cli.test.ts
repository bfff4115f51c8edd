// The `tinyllava` command: help, version (with libtorch's), info, generate on a fixture model, and clear errors.
// (The `demo` command is being replaced; its tests come with its replacement.)
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { TinyTokenizer } from "../../src/processing/tokenizer.js";
import { blasInfo, vmlInfo } from "../../src/torch/index.js";
import { expectedThreads, mklExpected, openblasLoaded, REFERENCE, ROOT } from "../helpers.js";

function run(args: string[], env: Record<string, string | undefined> = {}) {
  const e: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete e[k];
    else e[k] = v;
  }
  const r = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src", "cli", "main.ts"), ...args], {
    encoding: "utf8",
    env: e,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test("--help and --version", () => {
  const h = run(["--help"]);
  assert.equal(h.code, 0);
  for (const c of ["info", "generate"]) assert.match(h.out, new RegExp(`\\b${c}\\b`));
  const v = run(["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.out, /^tinyllava \d+\.\d+\.\d+ \(libtorch \d+\.\d+\.\d+\)/);
});

test("info: threads, BLAS and cos/sin as this machine has them (MKL and OpenBLAS are optional)", () => {
  const i = run(["info"]);
  assert.equal(i.code, 0, i.err);
  const info = JSON.parse(i.out);
  assert.equal(info.threads, expectedThreads());
  assert.match(info.kernels, /^libtorch /);
  // BLAS: OpenBLAS when libtorch's BLAS is OpenBLAS (setup installs it), otherwise said plainly
  assert.equal(blasInfo().openblas, openblasLoaded());
  if (openblasLoaded()) assert.match(info.blas, new RegExp(`^OpenBLAS .* \\(${expectedThreads()} threads\\)$`));
  else assert.equal(info.blas, "not OpenBLAS (matmuls may be slow)");
  // cos/sin: MKL's VML when MKL is on the loader path, else why not
  assert.equal(vmlInfo().available, mklExpected());
  if (mklExpected()) assert.match(info.cosSin, /^MKL VML \(/);
  else assert.match(info.cosSin, /^(MKL not found \(|disabled by TINYLLAVA_VML=0)/);
  // and the no-MKL case, whatever this machine has
  const off = JSON.parse(run(["info"], { TINYLLAVA_VML: "0" }).out);
  assert.equal(off.cosSin, "disabled by TINYLLAVA_VML=0");
  const none = JSON.parse(run(["info"], { TINYLLAVA_VML: undefined, TINYLLAVA_MKL_DIR: "/nonexistent-mkl" }).out);
  assert.match(none.cosSin, /^MKL not found \(.*\/nonexistent-mkl\/libmkl_core\.so/);
  const one = JSON.parse(run(["--threads", "1", "info"]).out);
  assert.equal(one.threads, 1);
});

test("generate: the exact greedy answer of a fixture model (its golden greedy ids, decoded), streamed and --json", () => {
  const model = join(REFERENCE, "models", "clip-llama");
  const golden = JSON.parse(readFileSync(join(model, "golden.json"), "utf8"));
  const expected = TinyTokenizer.fromFolder(model).decode(golden.greedy_ids).trim();
  assert.equal(expected, golden.greedy_text.trim(), "our decoding of the golden ids is the reference's text");
  assert.ok(expected.length > 0);
  // the golden prompt verbatim (raw template), float64 as the goldens, as many tokens as the golden has (no EOS in it)
  const args = [
    "generate",
    "-m",
    model,
    "-i",
    join(REFERENCE, "images", golden.image),
    "-p",
    `${golden.prompt_before}<image>${golden.prompt_after}`,
    "--template",
    "raw",
    "--dtype",
    "float64",
    "--max-new-tokens",
    String(golden.greedy_ids.length),
  ];
  const streamed = run(args);
  assert.equal(streamed.code, 0, streamed.err);
  assert.equal(streamed.out, `${expected}\n`);
  const json = run([...args, "--json"]);
  assert.equal(json.code, 0, json.err);
  const r = JSON.parse(json.out);
  assert.equal(r.text, expected);
  assert.deepEqual(r.tokens, golden.greedy_ids);
  assert.equal(r.finish_reason, "length");
});

test("generate: bad input gets a clear error", () => {
  const model = join(REFERENCE, "models", "tinyllava-siglip-phi");
  const bad = run(["generate", "-m", model, "-i", join(REFERENCE, "images", "nope.png"), "-p", "q"]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /^tinyllava: UsageError: --image .*nope.png: file not found/);
  const noModel = run(["generate", "-m", "/nonexistent", "-p", "q"]);
  assert.notEqual(noModel.code, 0);
  assert.match(noModel.err, /\/nonexistent: model folder not found/);
});
