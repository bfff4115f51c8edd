// Malformed question / answer / annotation files give an EvaluationError that names the file, the line (JSONL) and the
// field — from the library and from the CLI (exit code 1, "tinyllava: EvaluationError: ...").
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { EvaluationError } from "../../src/evaluation/errors.js";
import { SCORERS } from "../../src/evaluation/index.js";
import { readJsonLines, topLevelKeys } from "../../src/evaluation/jsonio.js";
import { EVAL_FIXTURES, ROOT } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tinyllava-eval-bad-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;

/** A copy of a benchmark fixture to break. */
function copyOf(benchmark: string): string {
  const dir = join(tmp, `${benchmark}-${n++}`);
  cpSync(join(EVAL_FIXTURES, benchmark), dir, { recursive: true });
  return dir;
}

function editLine(path: string, line: number, edit: (s: string) => string) {
  const lines = readFileSync(path, "utf8").split("\n");
  lines[line - 1] = edit(lines[line - 1] as string);
  writeFileSync(path, lines.join("\n"));
}

function rejects(fn: () => unknown, pattern: RegExp) {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof EvaluationError, `expected an EvaluationError, got ${e.name}: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

const score = (b: keyof typeof SCORERS, dir: string) => () => SCORERS[b](dir, join(dir, "answers.jsonl"));

test("answers JSONL: invalid JSON, missing / mistyped fields, empty lines — with file and line", () => {
  let d = copyOf("pope");
  editLine(join(d, "answers.jsonl"), 3, (s) => s.slice(0, -1));
  rejects(score("pope", d), /pope-\d+\/answers\.jsonl:3: invalid JSON/);

  d = copyOf("textvqa");
  editLine(join(d, "answers.jsonl"), 2, (s) => JSON.stringify({ ...JSON.parse(s), text: undefined }));
  rejects(score("textvqa", d), /answers\.jsonl:2: field "text" is missing; expected a string/);

  d = copyOf("gqa");
  editLine(join(d, "answers.jsonl"), 5, (s) => JSON.stringify({ ...JSON.parse(s), text: 5 }));
  rejects(score("gqa", d), /answers\.jsonl:5: field "text" is 5; expected a string/);

  d = copyOf("vqav2");
  editLine(join(d, "answers.jsonl"), 4, (s) => JSON.stringify({ ...JSON.parse(s), question_id: [1] }));
  rejects(score("vqav2", d), /answers\.jsonl:4: field "question_id" is \[1\]; expected a string or integer id/);

  d = copyOf("vizwiz");
  editLine(join(d, "answers.jsonl"), 6, () => "");
  rejects(score("vizwiz", d), /answers\.jsonl:6: empty line; expected one JSON object per line/);

  d = copyOf("mmmu");
  editLine(join(d, "answers.jsonl"), 1, () => "[1, 2]");
  rejects(score("mmmu", d), /answers\.jsonl:1: expected a JSON object, got \[1,2\]/);

  // trailing blank lines are not lines; a missing file or bad UTF-8 is named
  d = copyOf("pope");
  appendFileSync(join(d, "answers.jsonl"), "\n\n");
  assert.equal(readJsonLines(join(d, "answers.jsonl")).length, 30);
  rejects(() => SCORERS.pope(d, join(d, "nope.jsonl")), /nope\.jsonl: file not found/);
  writeFileSync(join(d, "answers.jsonl"), Buffer.from([0x7b, 0xff, 0x7d, 0x0a]));
  rejects(score("pope", d), /answers\.jsonl: not valid UTF-8 text/);
});

test("question and annotation files: the field and the record are named", () => {
  let d = copyOf("pope");
  editLine(join(d, "llava_pope_test.jsonl"), 7, (s) => JSON.stringify({ ...JSON.parse(s), question_id: undefined }));
  rejects(score("pope", d), /llava_pope_test\.jsonl:7: field "question_id" is missing/);

  d = copyOf("pope");
  editLine(join(d, "answers.jsonl"), 2, (s) => JSON.stringify({ ...JSON.parse(s), question_id: 999999 }));
  rejects(score("pope", d), /answers\.jsonl:2: question_id 999999 is not in .*llava_pope_test\.jsonl/);

  d = copyOf("pope");
  writeFileSync(join(d, "coco", "notes.txt"), "x");
  rejects(score("pope", d), /coco\/notes\.txt: unexpected file/);

  d = copyOf("textvqa");
  const ann = JSON.parse(readFileSync(join(d, "TextVQA_0.5.1_val.json"), "utf8"));
  ann.data[3].answers.pop();
  writeFileSync(join(d, "TextVQA_0.5.1_val.json"), JSON.stringify(ann));
  rejects(
    score("textvqa", d),
    /TextVQA_0\.5\.1_val\.json: data\[3\]: field "answers" is \[.*; expected exactly 10 answers/,
  );

  d = copyOf("textvqa");
  editLine(join(d, "answers.jsonl"), 1, (s) => JSON.stringify({ ...JSON.parse(s), prompt: "one\ntwo\nthree\nfour" }));
  rejects(score("textvqa", d), /answers\.jsonl:1: field "prompt": cannot find the question/);

  d = copyOf("vqav2");
  const v = JSON.parse(readFileSync(join(d, "v2_mscoco_test-dev2015_annotations.json"), "utf8"));
  delete v.annotations[0].answers;
  writeFileSync(join(d, "v2_mscoco_test-dev2015_annotations.json"), JSON.stringify(v));
  rejects(score("vqav2", d), /annotations\.json: annotations\[0\]: field "answers" is missing; expected a JSON array/);

  d = copyOf("vizwiz");
  const z = JSON.parse(readFileSync(join(d, "annotations.json"), "utf8"));
  z[2].answers[4] = { answer: 7 };
  writeFileSync(join(d, "annotations.json"), JSON.stringify(z));
  rejects(score("vizwiz", d), /annotations\.json: \[2\]\.answers\[4\]: field "answer" is 7; expected a string/);

  d = copyOf("gqa");
  const lines = readFileSync(join(d, "answers.jsonl"), "utf8").trimEnd().split("\n");
  writeFileSync(join(d, "answers.jsonl"), `${lines.slice(1).join("\n")}\n`);
  rejects(score("gqa", d), /no prediction for question 201307251 \(eval\.py raises "missing predictions"\)/);

  d = copyOf("scienceqa");
  const probs = JSON.parse(readFileSync(join(d, "problems.json"), "utf8"));
  delete probs["11"];
  writeFileSync(join(d, "problems.json"), JSON.stringify(probs));
  rejects(score("scienceqa", d), /problems\.json: test problem "11" \(from pid_splits\.json\) is missing/);

  d = copyOf("scienceqa");
  const p2 = JSON.parse(readFileSync(join(d, "problems.json"), "utf8"));
  p2["5"].choices = "A";
  writeFileSync(join(d, "problems.json"), JSON.stringify(p2));
  rejects(score("scienceqa", d), /problems\.json: "5": field "choices" is "A"; expected a JSON array/);

  d = copyOf("mmmu");
  const gt = JSON.parse(readFileSync(join(d, "answer_dict_val.json"), "utf8"));
  gt.validation_Math_3.ground_truth = 0.33;
  writeFileSync(join(d, "answer_dict_val.json"), JSON.stringify(gt));
  rejects(score("mmmu", d), /answer_dict_val\.json: "validation_Math_3": field "ground_truth" is 0\.33/);

  d = copyOf("mmmu");
  const gt2 = JSON.parse(readFileSync(join(d, "answer_dict_val.json"), "utf8"));
  delete gt2.validation_Art_2;
  writeFileSync(join(d, "answer_dict_val.json"), JSON.stringify(gt2));
  rejects(score("mmmu", d), /no answer for "validation_Art_2"/);
});

test("MME: ground-truth lines, missing tasks and unmatched questions", () => {
  let d = copyOf("mme");
  const gtFile = join(d, "MME_Benchmark_release_version", "OCR", "0020.txt");
  editLine(gtFile, 1, (s) => s.replace("\t", " "));
  rejects(score("mme", d), /OCR\/0020\.txt:1: expected "<question>\\t<Yes\|No>"/);

  d = copyOf("mme");
  const kept = readFileSync(join(d, "answers.jsonl"), "utf8")
    .trimEnd()
    .split("\n")
    .filter((l) => !l.includes('"OCR/'));
  writeFileSync(join(d, "answers.jsonl"), `${kept.join("\n")}\n`);
  rejects(score("mme", d), /no answers for MME task "OCR" \(calculation\.py needs all 14 task files\)/);

  d = copyOf("mme");
  editLine(join(d, "answers.jsonl"), 3, (s) => JSON.stringify({ ...JSON.parse(s), prompt: "Something else?" }));
  rejects(score("mme", d), /answers\.jsonl:3: no ground truth for task "code_reasoning", file "0014\.txt"/);
});

test("JSON objects keep their file order (Python dicts), also for integer-like keys", () => {
  const text = '{"9": {"a": "}{\\"x"}, "10": [1, {"k": 2}], "2": "v", "9": 3, "b\\u00e9": null}';
  assert.deepEqual(topLevelKeys(text), ["9", "10", "2", "bé"]);
  const d = copyOf("gqa");
  const path = join(d, "testdev_balanced_questions.json");
  const q = JSON.parse(readFileSync(path, "utf8"));
  const ids = Object.keys(q).sort((a, b) => Number(b) - Number(a)); // descending: JS objects would re-sort them
  writeFileSync(path, `{${ids.map((k) => `${JSON.stringify(k)}: ${JSON.stringify(q[k])}`).join(", ")}}`);
  const items = SCORERS.gqa(d, join(d, "answers.jsonl")).items.map((x) => x.question_id);
  assert.deepEqual(items, ids);
});

test("CLI: a malformed file exits 1 with the EvaluationError on stderr", () => {
  const d = copyOf("textvqa");
  editLine(join(d, "answers.jsonl"), 2, (s) => JSON.stringify({ ...JSON.parse(s), text: null }));
  const r = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      join(ROOT, "src", "cli", "main.ts"),
      "eval",
      "score",
      "--benchmark",
      "textvqa",
      "--data",
      d,
      "--answers",
      join(d, "answers.jsonl"),
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^tinyllava: EvaluationError: .*answers\.jsonl:2: field "text" is null; expected a string/);
});
