// `tinyllava generate` and `tinyllava chat` as a user runs them: the golden greedy tokens of every reference model
// through the CLI, streamed text, the chat REPL's commands, and one-line errors with exit codes.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, test } from "node:test";
import { IMAGES_DIR, loadCase, MODELS_DIR, modelNames } from "../generation/cases.js";
import { ROOT } from "../helpers.js";

const CLI = join(ROOT, "src", "cli", "main.ts");
function run(args: string[], input?: string) {
  return spawnSync(process.execPath, ["--import", "tsx", CLI, ...args], { encoding: "utf8", input, cwd: ROOT });
}

describe("tinyllava generate --template raw --dtype float64 --json returns the golden tokens", () => {
  let checked = 0;
  for (const name of modelNames()) {
    test(name, () => {
      const c = loadCase(name);
      const g = c.golden;
      c.close();
      const r = run([
        "generate",
        "-m",
        join(MODELS_DIR, name),
        "-i",
        join(IMAGES_DIR, g.image),
        "-p",
        `${g.prompt_before}<image>${g.prompt_after}`,
        "--template",
        "raw",
        "--dtype",
        "float64",
        "--image-aspect",
        g.image_aspect === "pad" ? "pad" : "square",
        "--max-new-tokens",
        String(g.greedy_ids.length),
        "--json",
      ]);
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.deepEqual(out.tokens, g.greedy_ids);
      assert.equal(out.finish_reason, "length");
      assert.equal(typeof out.text, "string");
      for (const k of ["load_ms", "vision_encode_ms", "prefill_ms", "decode_tokens_per_s", "peak_rss_mb"])
        assert.ok(typeof out.timings[k] === "number" && out.timings[k] >= 0, `timings.${k}`);
      assert.ok(out.timings.peak_rss_mb > 10);
      checked++;
    });
  }
  test("every reference model was checked", () => assert.equal(checked, modelNames().length));
});

test("plain output streams the stripped answer, equal to --json's text", () => {
  const dir = join(MODELS_DIR, "siglip-phi");
  const base = [
    "generate",
    "-m",
    dir,
    "-i",
    join(IMAGES_DIR, "shapes_64x64.png"),
    "-p",
    "What color is the circle?",
    "--max-new-tokens",
    "12",
  ];
  const j = JSON.parse(run([...base, "--json"]).stdout);
  const plain = run(base);
  assert.equal(plain.status, 0, plain.stderr);
  assert.equal(plain.stdout, `${j.text}\n`);
  assert.equal(j.template, "phi");
});

test("sampling flags: the same seed gives the same text", () => {
  const dir = join(MODELS_DIR, "siglip-qwen2");
  const args = [
    "generate",
    "-m",
    dir,
    "-p",
    "Hello",
    "--temperature",
    "1.5",
    "--top-p",
    "0.9",
    "--seed",
    "7",
    "--max-new-tokens",
    "10",
    "--json",
  ];
  const a = JSON.parse(run(args).stdout);
  const b = JSON.parse(run(args).stdout);
  assert.deepEqual(a.tokens, b.tokens);
});

test("errors are one clear line and a non-zero exit, the stack only with --debug", () => {
  const dir = join(MODELS_DIR, "siglip-qwen2");
  const cases: [string[], RegExp, number][] = [
    [["generate", "-m", "/nonexistent", "-p", "x"], /\/nonexistent: model folder not found/, 1],
    [["generate", "-m", dir, "-p", "x", "-i", "/nonexistent.png"], /--image \/nonexistent.png: file not found/, 2],
    [
      ["generate", "-m", dir, "-p", "x", "--max-new-tokens", "abc"],
      /--max-new-tokens "abc": expected an integer ≥ 1/,
      2,
    ],
    [["generate", "-m", dir, "-p", "x", "--temperature", "-1"], /--temperature "-1": expected a number ≥ 0/, 2],
    [["generate", "-m", dir, "-p", "x", "--top-p", "2"], /--top-p "2": expected a number > 0 and ≤ 1/, 2],
    [["generate", "-m", dir, "-p", "x", "--dtype", "int4"], /--dtype "int4": expected one of float32/, 2],
    [["generate", "-m", dir, "-p", "x", "--quantize", "int4"], /--quantize "int4": expected one of int8/, 2],
    [["generate", "-m", dir, "-p", "x", "--template", "nope"], /--template "nope": expected one of/, 2],
    [["generate", "-m", dir, "-p", "x", "-i", join(ROOT, "package.json")], /package\.json/, 1],
    [["generate", "-m", dir, "-p", "x".repeat(3000)], /positions .*context is/, 1],
  ];
  for (const [args, re, code] of cases) {
    const r = run(args);
    assert.equal(r.status, code, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
  const dbg = run(["--debug", "generate", "-m", "/nonexistent", "-p", "x"]);
  assert.match(dbg.stderr, /\n\s+at /, "--debug prints the stack");
});

test("--quantize int8 runs and reports the same kind of output", () => {
  const dir = join(MODELS_DIR, "siglip-qwen2");
  const out = JSON.parse(
    execFileSync(
      process.execPath,
      [
        "--import",
        "tsx",
        CLI,
        "generate",
        "-m",
        dir,
        "-p",
        "Hi",
        "--quantize",
        "int8",
        "--max-new-tokens",
        "4",
        "--json",
      ],
      {
        encoding: "utf8",
      },
    ),
  );
  assert.equal(out.tokens.length, 4);
});

test("chat: multi-turn history as the template formats it, /image, /reset, /exit", () => {
  const dir = join(MODELS_DIR, "siglip-phi");
  const img = join(IMAGES_DIR, "shapes_64x64.png");
  const input = [
    "What is this?",
    "And the colour?",
    "/reset",
    "/image /nonexistent.png",
    `/image ${img}`,
    "/bogus",
    "Describe it.",
    "/exit",
    "never read",
  ].join("\n");
  const r = run(["chat", "-m", dir, "-i", img, "--max-new-tokens", "5"], `${input}\n`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /tinyllava chat \(phi template, image /);
  assert.match(r.stdout, /\(conversation cleared\)/);
  assert.match(r.stdout, /error: \/nonexistent\.png: file not found/);
  assert.match(r.stdout, /\(new conversation about .*shapes_64x64\.png\)/);
  assert.match(r.stdout, /unknown command \/bogus/);
  // three answers were generated (one line each after the prompt)
  const answers = r.stdout.split("\n").filter((l) => l.startsWith("> ") && !l.startsWith("> (") && l.length > 2);
  assert.ok(answers.length >= 3, r.stdout);
});
