// MMMU (validation): TinyLLaVA Factory tinyllava/eval/model_vqa_mmmu.py picks the multiple-choice letter at
// generation time (parse_multi_choice_response); scripts/convert_answer_to_mmmu.py turns the answers into
// {id: text}; MMMU-Benchmark/MMMU mmmu/main_eval_only.py + utils/eval_utils.py @ bb0b95a score it.
// Quirks kept: subjects come from "_".join(id.split("_")[1:-1]) and only MMMU's 30 are scored; only ids in the
// output file count; open answers are parsed by parse_open_response (lower-cased first, so its
// `\.\s(?=[A-Z])` split never fires), numbers rounded with round(x, 2) (half-to-even on the binary value); a string
// gold must be a substring of a string prediction, a numeric gold equal to a numeric prediction; accuracies are
// instance-weighted, printed with round(x, 3).
import { join } from "node:path";
import { EvaluationError } from "../errors.js";
import { Rec, readJsonDictRaw } from "../jsonio.js";
import { PY_WHITESPACE, pyFloat, pyFloatRepr, pyJsonDumps, pyLen, pyRound, pySplit, pyStrip } from "../python.js";
import { modelName, readAnswers, type ScoreOptions, type ScoreResult } from "./common.js";

/** mmmu/utils/data_utils.py: domains → subjects (the order of the printed results). */
export const MMMU_DOMAINS: Readonly<Record<string, readonly string[]>> = {
  "Art and Design": ["Art", "Art_Theory", "Design", "Music"],
  Business: ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
  Science: ["Biology", "Chemistry", "Geography", "Math", "Physics"],
  "Health and Medicine": [
    "Basic_Medical_Science",
    "Clinical_Medicine",
    "Diagnostics_and_Laboratory_Medicine",
    "Pharmacy",
    "Public_Health",
  ],
  "Humanities and Social Science": ["History", "Literature", "Sociology", "Psychology"],
  "Tech and Engineering": [
    "Agriculture",
    "Architecture_and_Engineering",
    "Computer_Science",
    "Electronics",
    "Energy_and_Power",
    "Materials",
    "Mechanical_Engineering",
  ],
};
/** CAT_SHORT2LONG.values(): the order subjects are evaluated in. */
export const MMMU_SUBJECTS: readonly string[] = [
  "Accounting",
  "Agriculture",
  "Architecture_and_Engineering",
  "Art",
  "Art_Theory",
  "Basic_Medical_Science",
  "Biology",
  "Chemistry",
  "Clinical_Medicine",
  "Computer_Science",
  "Design",
  "Diagnostics_and_Laboratory_Medicine",
  "Economics",
  "Electronics",
  "Energy_and_Power",
  "Finance",
  "Geography",
  "History",
  "Literature",
  "Manage",
  "Marketing",
  "Materials",
  "Math",
  "Mechanical_Engineering",
  "Music",
  "Pharmacy",
  "Physics",
  "Psychology",
  "Public_Health",
  "Sociology",
];

// ---------------------------------------------------------------------------------------------------------------
// multiple choice (generation time)

export interface McParse {
  /** the letter, or null where the official code falls back to random.choice(all_choices) */
  parsed: string | null;
  /** why the official code draws at random, when it does */
  random: string | null;
}

/** parse_multi_choice_response (model_vqa_mmmu.py, identical in MMMU's eval_utils.py) without the random draw. */
export function parseMultiChoiceResponse(
  response: string,
  allChoices: readonly string[],
  index2ans: ReadonlyArray<readonly [string, string]>,
): McParse {
  for (const ch of [",", ".", "!", "?", ";", ":", "'"]) response = pyStrip(response, ch);
  response = ` ${response} `;
  let indexAns = true;
  let withBracket = false;
  let candidates: string[] = [];
  for (const c of allChoices) {
    if (response.includes(`(${c})`)) {
      candidates.push(c);
      withBracket = true;
    }
  }
  if (candidates.length === 0) candidates = allChoices.filter((c) => response.includes(` ${c} `));
  if (candidates.length === 0 && pySplit(response).length > 5) {
    const lower = response.toLowerCase();
    for (const [index, ans] of index2ans) {
      if (lower.includes(ans.toLowerCase())) {
        candidates.push(index);
        indexAns = false;
      }
    }
  }
  if (candidates.length === 0) return { parsed: null, random: "no option found in the response" };
  if (candidates.length === 1) return { parsed: candidates[0] as string, random: null };
  const ans = new Map(index2ans);
  const starts = candidates.map((c) => {
    if (!indexAns) return response.toLowerCase().lastIndexOf((ans.get(c) ?? "").toLowerCase());
    return withBracket ? response.lastIndexOf(`(${c})`) : response.lastIndexOf(` ${c} `);
  });
  // np.argmax: the first of the largest start positions
  let best = 0;
  starts.forEach((s, i) => {
    if (s > (starts[best] as number)) best = i;
  });
  return { parsed: candidates[best] as string, random: null };
}

// ---------------------------------------------------------------------------------------------------------------
// open questions

export type OpenPred = number | string;

const SPLIT_RE = new RegExp(`\\.[${PY_WHITESPACE}](?=[A-Z])|\\n`, "u");
const W = "[\\p{L}\\p{N}_]"; // Python's \w for str patterns
const B = `(?:(?<=${W})(?!${W})|(?<!${W})(?=${W}))`; // \b
const D = "\\p{Nd}"; // \d
const NUM_COMMAS = new RegExp(`-?${B}${D}{1,3}(?:,${D}{3})+${B}`, "gu");
const NUM_SCIENTIFIC = new RegExp(`-?${D}+(?:\\.${D}+)?[eE][+-]?${D}+`, "gu");
const NUM_SIMPLE = new RegExp(`-?(?:${D}+\\.${D}+|\\.${D}+|${D}+${B})(?![eE][+-]?${D}+)(?![,${D}])`, "gu");

/** eval_utils.extract_numbers: numbers with commas, then scientific, then simple ones (as strings). */
export function extractNumbers(s: string): string[] {
  return [
    ...[...s.matchAll(NUM_COMMAS)].map((m) => m[0]),
    ...[...s.matchAll(NUM_SCIENTIFIC)].map((m) => m[0]),
    ...[...s.matchAll(NUM_SIMPLE)].map((m) => m[0]),
  ];
}

/** eval_utils.normalize_str: a number rounded to 2 decimals, or the lower-cased string (1 char → " c", "c "). */
export function normalizeStr(s: string): OpenPred[] {
  s = pyStrip(s);
  const num = pyFloat(s.replaceAll(",", ""));
  if (num !== null) return [pyRound(num, 2)];
  s = s.toLowerCase();
  return pyLen(s) === 1 ? [` ${s}`, `${s} `] : [s];
}

function keySubresponses(response: string): string[] {
  response = pyStrip(pyStrip(response), ".").toLowerCase();
  const subs = response.split(SPLIT_RE);
  const indicators = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "];
  const keys: string[] = [];
  subs.forEach((resp, index) => {
    if (index === subs.length - 1) indicators.push("=");
    let shortest: string | null = null;
    for (const ind of indicators) {
      if (!resp.includes(ind)) continue;
      const tail = pyStrip(resp.split(ind).at(-1) as string);
      // `if not shortest_key_response` treats "" like None
      if (!shortest || pyLen(tail) < pyLen(shortest)) shortest = tail;
    }
    if (shortest && ![":", ",", ".", "!", "?", ";", ":", "'"].includes(pyStrip(shortest))) keys.push(shortest);
  });
  return keys.length === 0 ? [response] : keys;
}

/** eval_utils.parse_open_response: the set of candidate answers (numbers and strings), in first-seen order. */
export function parseOpenResponse(response: string): OpenPred[] {
  const keys = keySubresponses(response);
  const preds = [...keys, ...keys.flatMap(extractNumbers)];
  const out: OpenPred[] = [];
  for (const p of preds.flatMap(normalizeStr)) {
    // set(): numbers equal by value (NaN never), strings by value
    if (!out.some((q) => q === p)) out.push(p);
  }
  return out;
}

/** eval_utils.eval_open */
export function evalOpen(gold: string | string[], preds: OpenPred[]): boolean {
  const norm = Array.isArray(gold) ? gold.flatMap(normalizeStr) : normalizeStr(gold);
  for (const p of preds) {
    if (typeof p === "string") {
      if (norm.some((n) => typeof n === "string" && p.includes(n))) return true;
    } else if (norm.some((n) => n === p)) return true;
  }
  return false;
}

/** eval_utils.eval_multi_choice */
export function evalMultiChoice(gold: unknown, pred: unknown): boolean {
  return Array.isArray(gold) ? gold.some((g) => g === pred) : gold === pred;
}

/** parsed_pred as a sorted list of {"number": x} / {"string": s} (numbers first). */
export function openPredList(preds: OpenPred[]): Array<{ number: number } | { string: string }> {
  const nums = preds.filter((p): p is number => typeof p === "number").sort((a, b) => a - b);
  const strs = preds.filter((p): p is string => typeof p === "string").sort(byCodePoint);
  return [...nums.map((n) => ({ number: n })), ...strs.map((s) => ({ string: s }))];
}

function byCodePoint(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0) as number);
  const y = Array.from(b, (c) => c.codePointAt(0) as number);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number);
  return x.length - y.length;
}

export function mmmuSubject(id: string): string {
  return id.split("_").slice(1, -1).join("_");
}

/** calculate_ins_level_acc over {subject: {acc, num_example}} in the given order. */
function insLevelAcc(results: Array<{ acc: number; num_example: number }>): number {
  let acc = 0;
  let n = 0;
  for (const r of results) {
    acc += r.acc * r.num_example;
    n += r.num_example;
  }
  return n === 0 ? 0 : acc / n;
}

export function scoreMmmu(dataDir: string, answersPath: string, opts: ScoreOptions = {}): ScoreResult {
  const model = modelName(answersPath, opts.model);
  // --- convert_answer_to_mmmu.py: {question_id: text}, the last answer of an id wins (first position kept)
  const output = new Map<string, string>();
  for (const a of readAnswers(answersPath)) output.set(String(a.questionId), a.text);

  // --- main_eval_only.py
  const answerPath = join(dataDir, "answer_dict_val.json");
  const answerDict = new Map(readJsonDictRaw(answerPath, "answers"));
  const group = <V>(entries: Iterable<[string, V]>) => {
    const m = new Map<string, Map<string, V>>();
    for (const [id, v] of entries) {
      const c = mmmuSubject(id);
      const inner = m.get(c) ?? new Map<string, V>();
      inner.set(id, v);
      m.set(c, inner);
    }
    return m;
  };
  const outByCat = group(output);
  const ansByCat = group(answerDict);
  const evaluation: Record<string, { acc: number; num_example: number }> = {};
  const judged = new Map<string, Record<string, unknown>>();
  for (const subject of MMMU_SUBJECTS) {
    const outs = outByCat.get(subject);
    const golds = ansByCat.get(subject);
    if (!outs || !golds) continue; // "Skipping <subject> for not found"
    let correct = 0;
    for (const [id, pred] of outs) {
      if (!golds.has(id))
        throw new EvaluationError(`${answerPath}: no answer for "${id}" (main_eval_only.py raises KeyError)`);
      const g = new Rec(golds.get(id), `${answerPath}: "${id}"`);
      const questionType = g.get("question_type");
      const gt = g.get("ground_truth");
      const isString = typeof gt === "string";
      if (!isString && !(Array.isArray(gt) && gt.every((x) => typeof x === "string"))) {
        g.fail("ground_truth", "a string or an array of strings");
      }
      const item: Record<string, unknown> = { id, question_type: questionType, ground_truth: gt, text: pred };
      let ok: boolean;
      if (questionType !== "multiple-choice") {
        const parsed = parseOpenResponse(pred);
        ok = evalOpen(gt as string | string[], parsed);
        item.judge = ok ? "Correct" : "Wrong";
        item.parsed_pred = openPredList(parsed);
      } else {
        ok = evalMultiChoice(gt, pred);
        item.judge = ok ? "Correct" : "Wrong";
      }
      if (ok) correct++;
      judged.set(id, item);
    }
    evaluation[subject] = { acc: correct / outs.size, num_example: outs.size };
  }
  const printable: Record<string, { num: number; acc: number }> = {};
  for (const [domain, subjects] of Object.entries(MMMU_DOMAINS)) {
    const inDomain = subjects.filter((s) => s in evaluation);
    const results = inDomain.map((s) => evaluation[s] as { acc: number; num_example: number });
    printable[`Overall-${domain}`] = {
      num: results.reduce((n, r) => n + r.num_example, 0),
      acc: pyRound(insLevelAcc(results), 3),
    };
    for (const s of inDomain) {
      const r = evaluation[s] as { acc: number; num_example: number };
      printable[s] = { num: r.num_example, acc: pyRound(r.acc, 3) };
    }
  }
  const all = MMMU_SUBJECTS.filter((s) => s in evaluation).map(
    (s) => evaluation[s] as { acc: number; num_example: number },
  );
  const overall = insLevelAcc(all);
  printable.Overall = { num: all.reduce((n, r) => n + r.num_example, 0), acc: pyRound(overall, 3) };
  if (all.length === 0)
    throw new EvaluationError(`${answersPath}: no answer belongs to an MMMU subject with ground truth`);

  const items = [...output.keys()]
    .filter((id) => judged.has(id))
    .map((id) => judged.get(id) as Record<string, unknown>);
  return {
    benchmark: "mmmu",
    model,
    summary: {
      printable_results: printable,
      evaluation_result: evaluation,
      converted_output: Object.fromEntries(output),
    },
    items,
    converted: { [`${model}_output.json`]: pyJsonDumps(output) },
    headline: { metric: "overall accuracy (%)", value: 100 * overall },
    table: Object.entries(printable).map(([k, v]): [string, string] => [k, `${pyFloatRepr(v.acc)} (${v.num})`]),
  };
}
