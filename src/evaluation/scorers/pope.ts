// POPE: TinyLLaVA Factory tinyllava/eval/eval_pope.py @ 53f12c7.
// Quirks kept: answers are grouped by their question's category (answers-file order) and paired with the label
// file's lines *by position* (zip, so the shorter list wins), not by id; a label other than exactly "no" counts as
// positive; the parse is case-sensitive word matching; precision/recall/F1 carry the 1e-6 guards added in 53f12c7.
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { EvaluationError } from "../errors.js";
import { Rec, readJsonLines } from "../jsonio.js";
import { pyFormatFixed, pyKey, pyStr } from "../python.js";
import { modelName, readAnswers, type ScoreOptions, type ScoreResult, setOwn } from "./common.js";

/** eval_pope's parse: text before the first ".", commas removed, split on " "; "No"/"not"/"no" → no, else yes. */
export function popeParse(text: string): "yes" | "no" {
  let t = text;
  if (t.includes(".")) t = t.split(".")[0] as string;
  const words = t.replaceAll(",", "").split(" ");
  return words.includes("No") || words.includes("not") || words.includes("no") ? "no" : "yes";
}

export interface PopeCategory {
  num_samples: number;
  TP: number;
  FP: number;
  TN: number;
  FN: number;
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
  yes_ratio: number;
  summary_line: string;
}

export function scorePope(dataDir: string, answersPath: string, opts: ScoreOptions = {}): ScoreResult {
  const questionFile = join(dataDir, "llava_pope_test.jsonl");
  const categoryOf = new Map<string, unknown>();
  for (const l of readJsonLines(questionFile)) {
    const q = Rec.line(l);
    categoryOf.set(pyKey(q.id("question_id")), q.get("category"));
  }
  const answers = readAnswers(answersPath);
  const annotationDir = join(dataDir, "coco");
  let files: string[];
  try {
    if (!statSync(annotationDir).isDirectory()) throw new Error();
    files = readdirSync(annotationDir).sort();
  } catch {
    throw new EvaluationError(
      `${annotationDir}: annotation folder not found (expected coco_pope_<category>.json files)`,
    );
  }
  // os.listdir order in the official script; sorted here so the output is deterministic
  for (const f of files) {
    if (!f.startsWith("coco_pope_") || !f.endsWith(".json")) {
      throw new EvaluationError(
        `${join(annotationDir, f)}: unexpected file; the folder must hold only coco_pope_<category>.json`,
      );
    }
  }
  if (files.length === 0) throw new EvaluationError(`${annotationDir}: no coco_pope_<category>.json label files`);

  const categories: Record<string, PopeCategory> = {};
  const items: Record<string, unknown>[] = [];
  for (const file of files) {
    const category = file.slice(10, -5);
    const labelPath = join(annotationDir, file);
    const labels = readJsonLines(labelPath).map((l) => Rec.line(l).get("label"));
    const cur = answers.filter((a) => {
      const c = categoryOf.get(pyKey(a.questionId));
      if (c === undefined) {
        throw new EvaluationError(`${a.line.where}: question_id ${pyStr(a.questionId)} is not in ${questionFile}`);
      }
      return c === category;
    });
    if (cur.length === 0) {
      throw new EvaluationError(
        `${labelPath}: no answers for category "${category}" (the official script divides by zero)`,
      );
    }
    const preds = cur.map((a) => popeParse(a.text));
    const pos = (label: unknown) => (label === "no" ? 0 : 1);
    let TP = 0;
    let FP = 0;
    let TN = 0;
    let FN = 0;
    const n = Math.min(preds.length, labels.length);
    for (let i = 0; i < n; i++) {
      const p = preds[i] === "no" ? 0 : 1;
      const l = pos(labels[i]);
      if (p === 1 && l === 1) TP++;
      else if (p === 1 && l === 0) FP++;
      else if (p === 0 && l === 0) TN++;
      else FN++;
    }
    if (n === 0) throw new EvaluationError(`${labelPath}: no labels (the official script divides by zero)`);
    const eps = 1e-6;
    const precision = TP / (TP + FP + eps);
    const recall = TP / (TP + FN + eps);
    const f1 = (2 * precision * recall) / (precision + recall + eps);
    const accuracy = (TP + TN) / (TP + TN + FP + FN);
    const yesRatio = preds.filter((p) => p === "yes").length / preds.length;
    setOwn(categories, category, {
      num_samples: cur.length,
      TP,
      FP,
      TN,
      FN,
      accuracy,
      precision,
      recall,
      f1,
      yes_ratio: yesRatio,
      summary_line: [f1, accuracy, precision, recall, yesRatio].map((x) => pyFormatFixed(x, 3)).join(", "),
    });
    cur.forEach((a, i) => {
      const paired = i < labels.length;
      items.push({
        category,
        question_id: a.questionId,
        text: a.text,
        parsed: preds[i],
        label: paired ? labels[i] : null,
        correct: paired ? (preds[i] === "no" ? 0 : 1) === pos(labels[i]) : null,
      });
    });
  }
  const cats = Object.entries(categories);
  const meanF1 = cats.reduce((s, [, c]) => s + c.f1, 0) / cats.length;
  return {
    benchmark: "pope",
    model: modelName(answersPath, opts.model),
    summary: { categories },
    items,
    converted: {},
    headline: { metric: "mean F1 over categories (%)", value: 100 * meanF1 },
    table: cats.map(([name, c]) => [
      `${name} (${c.num_samples})`,
      `F1 ${pyFormatFixed(c.f1, 3)}  acc ${pyFormatFixed(c.accuracy, 3)}  P ${pyFormatFixed(c.precision, 3)}  R ${pyFormatFixed(c.recall, 3)}  yes ${pyFormatFixed(c.yes_ratio, 3)}`,
    ]),
  };
}
