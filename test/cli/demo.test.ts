// `tinyllava demo`, the README's main job: the short CI run learns (held-out accuracy well above chance), its last
// line is JSON, it leaves a model folder that `generate` answers from, it exits 1 below its target, and its options
// are validated.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { COLOR_NAMES, POSITION_NAMES, SHAPE_NAMES } from "../../src/training/demo/index.js";
import { ROOT } from "../helpers.js";

function run(args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src", "cli", "main.ts"), ...args], {
    encoding: "utf8",
    maxBuffer: 64 * 2 ** 20,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function lastJson(out: string): Record<string, unknown> {
  const lines = out.trim().split("\n");
  return JSON.parse(lines[lines.length - 1] as string);
}

/** Chance level of the held-out questions: colour 1/6, shape 1/3, count 1/3 (1–3 shapes), position 1/5. */
const CHANCE = (1 / 6 + 1 / 3 + 1 / 3 + 1 / 5) / 4;

const tmp = mkdtempSync(join(tmpdir(), "tinyllava-demo-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe("tinyllava demo", () => {
  const out = join(tmp, "quick");
  test("--quick learns: held-out accuracy well above chance, JSON last line, a model folder generate loads", () => {
    const r = run(["demo", "--quick", "--out", out]);
    assert.equal(r.code, 0, `${r.out}\n${r.err}`);
    const j = lastJson(r.out);
    assert.equal(j.passed, true);
    assert.equal(j.target, 0.4);
    const acc = j.accuracy as number;
    assert.ok(acc >= 0.4 && acc >= CHANCE + 0.15, `accuracy ${acc} (chance ${CHANCE.toFixed(3)})`);
    const per = j.per_type as Record<string, number>;
    assert.deepEqual(Object.keys(per).sort(), ["color", "count", "position", "shape"]);
    // one question type at least is learnt well beyond its chance (≤ 1/3); in the short run most rounds are about
    // places (questionWeights), so that is where-questions or counts rather than always counts
    const best = Math.max(...Object.values(per));
    assert.ok(best >= 0.55, `best question type ${best}: ${JSON.stringify(per)}`);
    assert.ok((j.wall_time_s as number) > 0 && (j.train_time_s as number) <= (j.wall_time_s as number));
    assert.equal(j.model_dir, join(out, "model"));
    for (const f of ["config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"])
      assert.ok(existsSync(join(out, "model", f)), `${f} missing from the model folder`);
    // shows a few answers
    assert.match(r.out, /Q: .* A: ".*"/);

    // the folder is a model `generate` loads: a held-out question gets a reply in the demo's form, ending with one of
    // its answer words
    const q = JSON.parse(readFileSync(join(out, "data", "eval_answers.json"), "utf8"))[0] as {
      image: string;
      question: string;
      type: string;
    };
    const g = run([
      "generate",
      "-m",
      join(out, "model"),
      "-i",
      join(out, "data", "images", q.image),
      "-p",
      q.question,
      "--max-new-tokens",
      "16",
      "--json",
    ]);
    assert.equal(g.code, 0, g.err);
    const text = (JSON.parse(g.out) as { text: string }).text.trim();
    const words = new Set<string>([...COLOR_NAMES, ...SHAPE_NAMES, ...POSITION_NAMES, "shape", "shapes"]);
    const m = text.match(/^(?:The [a-z ]+ is|There (?:is|are) [1-3]) (?:[a-z]+ )*([a-z]+)\.$/);
    assert.ok(m && words.has(m[1]!), `generate answered ${JSON.stringify(text)} to ${JSON.stringify(q.question)}`);
  });

  test("an existing demo model is kept unless --force", () => {
    const r = run(["demo", "--quick", "--out", out]);
    assert.equal(r.code, 2);
    assert.match(r.err, /already holds a demo model; pass --force/);
    assert.ok(existsSync(join(out, "model", "model.safetensors")));
  });

  test("below its target it says so and exits 1", () => {
    const dir = join(tmp, "short");
    const r = run([
      "demo",
      "--out",
      dir,
      "--train-images",
      "20",
      "--pretrain-steps",
      "1",
      "--finetune-steps",
      "1",
      "--target",
      "1",
    ]);
    assert.equal(r.code, 1, `${r.out}\n${r.err}`);
    const j = lastJson(r.out);
    assert.equal(j.passed, false);
    assert.ok((j.accuracy as number) < 1);
  });

  test("numeric options are validated with a one-line error (exit 2)", () => {
    for (const [flag, value, msg] of [
      ["--pretrain-steps", "abc", /--pretrain-steps/],
      ["--finetune-steps", "0", /--finetune-steps/],
      ["--train-images", "1.5", /--train-images/],
      ["--seed", "-1", /--seed/],
      ["--target", "2", /--target/],
    ] as const) {
      const r = run(["demo", "--out", join(tmp, "bad"), flag, value]);
      assert.equal(r.code, 2, `${flag} ${value}: ${r.err}`);
      assert.match(r.err, msg);
      assert.equal(r.err.trim().split("\n").length, 1, r.err);
      assert.ok(!existsSync(join(tmp, "bad")), "nothing is written before the options are checked");
    }
  });
});
