// Every benchmark fixture (test/fixtures/eval/<benchmark>/) scored by the library and by the CLI: the summary must
// equal expected.json (what the official, unmodified scoring code computed), the per-item results must equal its
// `items`, and the converted files must equal the ones the official pipeline wrote. Fails if a fixture is missing.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { SCORERS } from "../../src/evaluation/index.js";
import type { ScoreResult } from "../../src/evaluation/scorers/common.js";
import { MME_EVAL_TYPES } from "../../src/evaluation/scorers/mme.js";
import { parseMultiChoiceResponse } from "../../src/evaluation/scorers/mmmu.js";
import { assertClose, EVAL_FIXTURES, expectedOf, ROOT } from "./helpers.js";

/** expected.json keys that are provenance, not results */
const NOT_SUMMARY = new Set(["scorer", "command", "commands", "stdout", "converter_stdout", "items"]);
/**
 * MMMU's mc_parse_cases record the raw generations behind the letters in answers.jsonl: the answers file does not
 * hold them, so they are checked against parseMultiChoiceResponse below instead of the scorer's summary.
 */
const NOT_FROM_ANSWERS = new Set(["mc_parse_cases"]);

const BENCHMARKS = ["pope", "mme", "scienceqa", "textvqa", "vqav2", "vizwiz", "gqa", "mmmu"] as const;
const ITEM_COUNTS: Record<(typeof BENCHMARKS)[number], number> = {
  pope: 30,
  mme: 44,
  scienceqa: 25,
  textvqa: 20,
  vqav2: 20,
  vizwiz: 20,
  gqa: 22,
  mmmu: 22,
};

function summaryOf(expected: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(expected).filter(([k]) => !NOT_SUMMARY.has(k) && !NOT_FROM_ANSWERS.has(k)));
}

/** The converted files each fixture's expected.json records, as (path under --out/<benchmark>, expected value). */
function convertedChecks(b: string, expected: Record<string, unknown>): Array<[string, (content: string) => void]> {
  const json = (v: unknown) => (c: string) => assertClose(JSON.parse(c), v, b);
  switch (b) {
    case "vqav2":
      return [["answers_upload/llava_vqav2_mscoco_test-dev2015/answers.json", json(expected.upload)]];
    case "vizwiz":
      return [["answers_upload/answers.json", json(expected.upload)]];
    case "gqa":
      return [["testdev_balanced_predictions.json", json(expected.predictions)]];
    case "mmmu":
      return [["answers_output.json", json(expected.converted_output)]];
    case "scienceqa":
      return [
        ["answers_output.jsonl", json(expected.output_file)],
        ["answers_result.json", json(expected.output_result)],
      ];
    case "mme": {
      const tasks = expected.eval_tool_answers as Record<string, string[]>;
      return Object.values(MME_EVAL_TYPES)
        .flat()
        .map((t): [string, (c: string) => void] => [
          `eval_tool/answers/answers/${t}.txt`,
          (c) => assert.equal(c, (tasks[t] as string[]).map((l) => `${l}\n`).join(""), `mme ${t}.txt`),
        ]);
    }
    default:
      return [];
  }
}

const checked = { library: new Set<string>(), cli: new Set<string>(), items: 0, converted: 0 };

for (const b of BENCHMARKS) {
  test(`${b}: library scorer equals the official results (summary, items, converted files)`, () => {
    const expected = expectedOf(b);
    const dir = join(EVAL_FIXTURES, b);
    const r: ScoreResult = SCORERS[b](dir, join(dir, "answers.jsonl"));
    assert.equal(r.benchmark, b);
    assert.equal(r.model, "answers");
    assert.ok(assertClose(r.summary, summaryOf(expected), `${b}.summary`) > 0);
    const items = expected.items as unknown[];
    assert.equal(items.length, ITEM_COUNTS[b], `${b}: fixture item count`);
    assertClose(r.items, items, `${b}.items`);
    const conv = convertedChecks(b, expected);
    for (const [rel, check] of conv) {
      assert.ok(rel in r.converted, `${b}: converted file ${rel} missing (have ${Object.keys(r.converted)})`);
      check(r.converted[rel] as string);
    }
    assert.ok(Number.isFinite(r.headline.value));
    checked.library.add(b);
    checked.items += items.length;
    checked.converted += conv.length;
  });
}

test("converted files are written byte for byte as Python's json.dump does", () => {
  const dir = join(EVAL_FIXTURES, "vqav2");
  const upload = SCORERS.vqav2(dir, join(dir, "answers.jsonl")).converted[
    "answers_upload/llava_vqav2_mscoco_test-dev2015/answers.json"
  ] as string;
  assert.ok(upload.startsWith('[{"question_id": 262144000, "answer": "yes"}, {"question_id": 262144001,'), upload);
  const sqa = join(EVAL_FIXTURES, "scienceqa");
  const result = SCORERS.scienceqa(sqa, join(sqa, "answers.jsonl")).converted["answers_result.json"] as string;
  assert.ok(result.startsWith('{\n  "acc": 84.0,\n  "correct": 21,\n  "count": 25,\n  "results": {\n    "4": 1,'));
});

test("mmmu: parse_multi_choice_response reproduces every recorded generation-time parse", () => {
  const cases = expectedOf("mmmu").mc_parse_cases as Array<{
    response: string;
    all_choices: string[];
    index2ans: Record<string, string>;
    parsed: string | null;
    random: string | null;
  }>;
  assert.equal(cases.length, 15);
  for (const c of cases) {
    const got = parseMultiChoiceResponse(c.response, c.all_choices, Object.entries(c.index2ans));
    assert.equal(got.parsed, c.parsed, c.response);
    assert.equal(got.random === null, c.random === null, c.response);
  }
});

// --- the CLI: `tinyllava eval score ... --json --out DIR`
const tmp = mkdtempSync(join(tmpdir(), "tinyllava-eval-cli-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src", "cli", "main.ts"), ...args], {
    encoding: "utf8",
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

for (const b of BENCHMARKS) {
  test(`${b}: \`tinyllava eval score --json --out\` prints the official summary and writes items + converted files`, () => {
    const expected = expectedOf(b);
    const dir = join(EVAL_FIXTURES, b);
    const out = join(tmp, "results");
    const r = cli(
      "eval",
      "score",
      "--benchmark",
      b,
      "--data",
      dir,
      "--answers",
      join(dir, "answers.jsonl"),
      "--json",
      "--out",
      out,
    );
    assert.equal(r.code, 0, r.err);
    assertClose(JSON.parse(r.out), summaryOf(expected), `${b} (CLI)`);
    const items = readFileSync(join(out, b, "items.jsonl"), "utf8")
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    assertClose(items, expected.items, `${b} items.jsonl`);
    const score = JSON.parse(readFileSync(join(out, b, "score.json"), "utf8"));
    assert.equal(score.benchmark, b);
    assertClose(score.summary, summaryOf(expected), `${b} score.json`);
    for (const [rel, check] of convertedChecks(b, expected)) {
      const p = join(out, b, rel);
      assert.ok(existsSync(p), `${p} not written`);
      check(readFileSync(p, "utf8"));
    }
    checked.cli.add(b);
  });
}

test("human-readable output without --json; usage errors", () => {
  const dir = join(EVAL_FIXTURES, "pope");
  const r = cli("eval", "score", "--benchmark", "pope", "--data", dir, "--answers", join(dir, "answers.jsonl"));
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^pope — answers \(30 items\)$/m);
  assert.match(r.out, /^adversarial \(10\)\s+F1 0\.800 {2}acc 0\.800/m);
  const bad = cli("eval", "score", "--benchmark", "nope", "--data", dir, "--answers", join(dir, "answers.jsonl"));
  assert.equal(bad.code, 1);
  assert.match(bad.err, /^tinyllava: EvaluationError: --benchmark nope: expected one of pope, mme, /);
  const help = cli("eval", "score", "--help");
  assert.equal(help.code, 0);
  assert.match(help.out, /--benchmark <name>/);
  const top = cli("--help");
  assert.match(top.out, /\beval\b/);
});

test("every benchmark fixture was checked (library and CLI)", () => {
  assert.deepEqual([...checked.library].sort(), [...BENCHMARKS].sort());
  assert.deepEqual([...checked.cli].sort(), [...BENCHMARKS].sort());
  assert.equal(
    checked.items,
    Object.values(ITEM_COUNTS).reduce((a, b) => a + b, 0),
  );
  assert.equal(checked.converted, 1 + 1 + 1 + 1 + 2 + 14);
});
