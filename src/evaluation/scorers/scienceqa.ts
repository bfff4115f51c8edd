// ScienceQA (IMG): TinyLLaVA Factory tinyllava/eval/eval_science_qa.py @ 53f12c7 (split "test", options A–E).
// Quirks kept: answers are looked up by question_id with Python dict semantics (a numeric id never matches the
// string pids); `The answer is ([A-Z]).` must match exactly once, and its "." matches any character but "\n"; a
// letter beyond the problem's choices scores -1; IMG accuracy counts problems whose answer *prompt* has "<image>".
import { join } from "node:path";
import { EvaluationError } from "../errors.js";
import { Rec, readJson, readJsonDict } from "../jsonio.js";
import { PyFloat, pyFormatFixed, pyJsonDumps, pyKey } from "../python.js";
import { type Answer, modelName, readAnswers, type ScoreOptions, type ScoreResult } from "./common.js";

const OPTIONS = ["A", "B", "C", "D", "E"];

/** The letter eval_science_qa.py extracts from a prediction, or "FAILED". */
export function scienceqaParse(predText: string): string {
  if (OPTIONS.includes(predText)) return predText;
  const cps = Array.from(predText);
  if (cps.length >= 3 && OPTIONS.includes(cps[0] as string) && `${cps[1]}${cps[2]}` === ". ") return cps[0] as string;
  const found = [...predText.matchAll(/The answer is ([A-Z])[^\n]/gu)].map((m) => m[1] as string);
  return found.length === 1 ? (found[0] as string) : "FAILED";
}

function predIdx(letter: string, numChoices: number): number {
  const i = OPTIONS.slice(0, numChoices).indexOf(letter);
  return i;
}

export function scoreScienceqa(dataDir: string, answersPath: string, opts: ScoreOptions = {}): ScoreResult {
  const splitsPath = join(dataDir, "pid_splits.json");
  const splits = new Rec(readJson(splitsPath), splitsPath);
  const testIds = splits.arr("test");
  const problemsPath = join(dataDir, "problems.json");
  const problems = new Map(readJsonDict(problemsPath, "problems"));
  const predictions = new Map<string, Answer>();
  for (const a of readAnswers(answersPath)) predictions.set(pyKey(a.questionId), a);

  const correct: Map<string, unknown>[] = [];
  const incorrect: Map<string, unknown>[] = [];
  const results = new Map<string, number>();
  const outputs = new Map<string, string>();
  const items: Record<string, unknown>[] = [];
  for (const id of testIds) {
    if (typeof id !== "string") {
      throw new EvaluationError(`${splitsPath}: "test" holds ${JSON.stringify(id)}; expected problem id strings`);
    }
    const prob = problems.get(id);
    if (!prob) throw new EvaluationError(`${problemsPath}: test problem "${id}" (from pid_splits.json) is missing`);
    const choices = prob.arr("choices");
    const answerIdx = prob.int("answer");
    const groundTruth = OPTIONS[answerIdx];
    if (groundTruth === undefined) prob.fail("answer", "an option index 0–4");
    const pred = predictions.get(pyKey(id));
    const predText = pred ? pred.text : "FAILED";
    const prompt = pred ? pred.rec.str("prompt") : "Unknown";
    const parsed = scienceqaParse(predText);
    const idx = predIdx(parsed, choices.length);
    const isMultimodal = prompt.includes("<image>");
    const analysis = new Map<string, unknown>([
      ["question_id", id],
      ["parsed_ans", parsed],
      ["ground_truth", groundTruth],
      ["question", prompt],
      ["pred", predText],
      ["is_multimodal", isMultimodal],
    ]);
    results.set(id, idx);
    outputs.set(id, predText);
    const ok = idx === answerIdx;
    (ok ? correct : incorrect).push(analysis);
    items.push({
      question_id: id,
      text: predText,
      parsed_ans: parsed,
      pred_idx: idx,
      ground_truth: groundTruth,
      is_multimodal: isMultimodal,
      correct: ok,
    });
  }
  const total = correct.length + incorrect.length;
  if (total === 0) throw new EvaluationError(`${splitsPath}: the test split is empty`);
  const imgCorrect = correct.filter((x) => x.get("is_multimodal")).length;
  const imgTotal = imgCorrect + incorrect.filter((x) => x.get("is_multimodal")).length;
  if (imgTotal === 0) {
    throw new EvaluationError(
      `${answersPath}: no answer prompt contains <image> (the official IMG accuracy divides by zero)`,
    );
  }
  const accuracy = (correct.length / total) * 100;
  const imgAccuracy = (imgCorrect / imgTotal) * 100;

  const model = modelName(answersPath, opts.model);
  const outputFile = {
    correct: correct.map((m) => Object.fromEntries(m)),
    incorrect: incorrect.map((m) => Object.fromEntries(m)),
  };
  const outputResult = {
    acc: accuracy,
    correct: correct.length,
    count: total,
    results: Object.fromEntries(results),
    outputs: Object.fromEntries(outputs),
  };
  const converted = {
    // json.dump(..., indent=2) as eval_science_qa.py writes --output-file and --output-result (sqa.sh names)
    [`${model}_output.jsonl`]: pyJsonDumps(
      new Map([
        ["correct", correct],
        ["incorrect", incorrect],
      ]),
      2,
    ),
    [`${model}_result.json`]: pyJsonDumps(
      new Map<string, unknown>([
        ["acc", new PyFloat(accuracy)],
        ["correct", correct.length],
        ["count", total],
        ["results", results],
        ["outputs", outputs],
      ]),
      2,
    ),
  };
  return {
    benchmark: "scienceqa",
    model,
    summary: {
      total,
      correct: correct.length,
      accuracy,
      img_total: imgTotal,
      img_correct: imgCorrect,
      img_accuracy: imgAccuracy,
      output_file: outputFile,
      output_result: outputResult,
    },
    items,
    converted,
    headline: { metric: "IMG accuracy (%)", value: imgAccuracy },
    table: [
      ["Accuracy", `${pyFormatFixed(accuracy, 2)}% (${correct.length}/${total})`],
      ["IMG-Accuracy", `${pyFormatFixed(imgAccuracy, 2)}% (${imgCorrect}/${imgTotal})`],
    ],
  };
}
