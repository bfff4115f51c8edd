// Corner cases of the normalisers, answer parsers and Python built-ins, against golden/python_goldens.json: the
// outputs of the official, unmodified code (and CPython 3.11 / 2.7.18) for tricky inputs — see make_goldens.py.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { evalAIAnswer, vizwizNormalize, vqaV2Clean, vqaV2Normalize } from "../../src/evaluation/normalize.js";
import {
  numpyRound,
  PyFloat,
  pyFloat,
  pyFloatRepr,
  pyFormatFixed,
  pyJsonDumps,
  pyRound,
  pySplit,
  pyStrip,
} from "../../src/evaluation/python.js";
import { mmeParse } from "../../src/evaluation/scorers/mme.js";
import {
  evalOpen,
  extractNumbers,
  parseMultiChoiceResponse,
  parseOpenResponse,
} from "../../src/evaluation/scorers/mmmu.js";
import { popeParse } from "../../src/evaluation/scorers/pope.js";
import { scienceqaParse } from "../../src/evaluation/scorers/scienceqa.js";

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), "golden", "python_goldens.json");
assert.ok(existsSync(GOLDEN), `missing ${GOLDEN}`);
// biome-ignore lint/suspicious/noExplicitAny: golden data of several shapes
const g: any = JSON.parse(readFileSync(GOLDEN, "utf8"));

/** a float from its repr() */
const num = (r: string) => (r === "nan" ? Number.NaN : r === "inf" ? Infinity : r === "-inf" ? -Infinity : Number(r));

function cases<T>(name: string, list: T[], min: number): T[] {
  assert.ok(Array.isArray(list) && list.length >= min, `golden ${name}: expected ≥ ${min} cases, got ${list?.length}`);
  return list;
}

test("EvalAIAnswerProcessor (m4c_evaluator.py) on tricky answers, incl. the 32-period limit", () => {
  for (const [input, out] of cases<[string, string]>("evalai", g.evalai, 100)) {
    assert.equal(evalAIAnswer(input), out, JSON.stringify(input));
  }
  // the quirk spelled out: only the first 32 periods are removed
  assert.equal(evalAIAnswer(`${".".repeat(40)}x`), `${".".repeat(8)}x`);
});

test("VizWiz evaluator normalisation (curly contractions) and VQA v2 evaluator under Python 2.7", () => {
  for (const [input, out] of cases<[string, string]>("vizwiz", g.vizwiz, 100)) {
    assert.equal(vizwizNormalize(input), out, JSON.stringify(input));
  }
  for (const [input, cleaned, out] of cases<[string, string, string]>("vqav2_py2", g.vqav2_py2, 100)) {
    assert.equal(vqaV2Clean(input), cleaned, JSON.stringify(input));
    assert.equal(vqaV2Normalize(cleaned), out, JSON.stringify(input));
  }
});

test("MMMU parse_open_response / extract_numbers / eval_open and parse_multi_choice_response", () => {
  for (const c of cases<{
    response: string;
    parsed: { numbers: string[]; strings: string[] };
    extract_numbers: string[];
    eval_open: [string | string[], boolean][];
  }>("mmmu_open", g.mmmu_open, 50)) {
    const preds = parseOpenResponse(c.response);
    const numbers = preds.filter((p) => typeof p === "number").map((p) => pyFloatRepr(p as number));
    const strings = preds.filter((p) => typeof p === "string");
    assert.deepEqual(
      { numbers: numbers.sort(), strings: strings.sort() },
      { numbers: [...c.parsed.numbers].sort(), strings: [...c.parsed.strings].sort() },
      JSON.stringify(c.response),
    );
    assert.deepEqual(extractNumbers(c.response), c.extract_numbers, JSON.stringify(c.response));
    for (const [gold, ok] of c.eval_open) {
      assert.equal(evalOpen(gold, preds), ok, `${JSON.stringify(c.response)} vs ${JSON.stringify(gold)}`);
    }
  }
  for (const c of cases<{
    response: string;
    all_choices: string[];
    index2ans: [string, string][];
    parsed: string | null;
  }>("mmmu_mc", g.mmmu_mc, 20)) {
    assert.equal(parseMultiChoiceResponse(c.response, c.all_choices, c.index2ans).parsed, c.parsed, c.response);
  }
});

test("MME, POPE and ScienceQA answer parsing", () => {
  for (const [input, out] of cases<[string, string]>("mme_parse", g.mme_parse, 15)) {
    assert.equal(mmeParse(input), out, JSON.stringify(input));
  }
  for (const [input, out] of cases<[string, string]>("pope_parse", g.pope_parse, 20)) {
    assert.equal(popeParse(input), out, JSON.stringify(input));
  }
  for (const [input, out] of cases<[string, string, number]>("scienceqa_parse", g.scienceqa_parse, 20)) {
    assert.equal(scienceqaParse(input), out, JSON.stringify(input));
  }
});

test("round() (Python 3 and 2.7), '%.nf', repr(float), float(str), numpy round", () => {
  for (const [x, n, r] of cases<[string, number, string]>("round", g.py3.round, 100)) {
    assert.equal(pyFloatRepr(pyRound(num(x), n)), r, `round(${x}, ${n})`);
  }
  for (const [x, n, r] of cases<[string, number, string]>("py2_round", g.py2_round, 100)) {
    assert.equal(pyFloatRepr(pyRound(num(x), n, "away")), r, `py2 round(${x}, ${n})`);
  }
  for (const [x, n, r] of cases<[string, number, string]>("format", g.py3.format, 100)) {
    assert.equal(pyFormatFixed(num(x), n), r, `'%.${n}f' % ${x}`);
  }
  for (const [x, r] of cases<[string, string]>("repr", g.py3.repr, 25)) assert.equal(pyFloatRepr(num(x)), r);
  for (const [s, r] of cases<[string, string | null]>("float", g.py3.float, 25)) {
    const v = pyFloat(s);
    assert.equal(v === null ? null : pyFloatRepr(v), r, `float(${JSON.stringify(s)})`);
  }
  for (const [x, n, r] of cases<[string, number, string]>("numpy_round", g.py3.numpy_round, 50)) {
    assert.equal(pyFloatRepr(numpyRound(num(x), n)), r, `np.round(${x}, ${n})`);
  }
});

test("json.dumps format of the converted files; whitespace helpers", () => {
  assert.equal(
    pyJsonDumps([
      { question_id: 1, answer: "caf\u00e9 \u{1F600}\n" },
      { a: [], b: {}, c: null, d: true },
    ]),
    '[{"question_id": 1, "answer": "caf\\u00e9 \\ud83d\\ude00\\n"}, {"a": [], "b": {}, "c": null, "d": true}]',
  );
  assert.equal(
    pyJsonDumps(
      new Map<string, unknown>([
        ["acc", new PyFloat(84)],
        [
          "r",
          new Map([
            ["5", 1],
            ["4", 0],
          ]),
        ],
      ]),
      2,
    ),
    '{\n  "acc": 84.0,\n  "r": {\n    "5": 1,\n    "4": 0\n  }\n}',
  );
  assert.equal(pyJsonDumps([Number.NaN, 1e-7, 0.5]), "[NaN, 1e-07, 0.5]");
  assert.deepEqual(pySplit(" a\u00a0b\u3000c\x1cd "), ["a", "b", "c", "d"]);
  assert.equal(pyStrip("\ufeffx\ufeff"), "\ufeffx\ufeff"); // not whitespace for Python (JS trim() strips it)
  assert.equal(pyStrip("..a..", "."), "a");
});
