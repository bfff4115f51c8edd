// TextVQA: TinyLLaVA Factory tinyllava/eval/eval_textvqa.py + m4c_evaluator.TextVQAAccuracyEvaluator @ 53f12c7.
// An answer is matched to its annotation by (question_id == image_id, question lower-cased) where the question is
// recovered from the prompt; prediction and the ten answers go through EvalAIAnswerProcessor; a normalised
// answer's score is the mean over the ten leave-one-out subsets of min(1, matches / 3).
import { join } from "node:path";
import { EvaluationError } from "../errors.js";
import { Rec, readJson } from "../jsonio.js";
import { evalAIAnswer } from "../normalize.js";
import { pyFormatFixed, pyKey } from "../python.js";
import { modelName, pySum, readAnswers, type ScoreOptions, type ScoreResult } from "./common.js";

/** eval_textvqa.prompt_processor: the question inside a prompt, lower-cased; null where the official code asserts. */
export function textvqaQuestion(prompt: string): string | null {
  let question: string;
  const lines = prompt.split("\n");
  if (prompt.startsWith("OCR tokens: ")) {
    const m = /Question: ([\s\S]*?) Short answer:/.exec(prompt);
    if (!m) return null;
    question = m[1] as string;
  } else if (prompt.includes("Reference OCR token: ") && lines.length === 3) {
    question = (prompt.startsWith("Reference OCR token:") ? lines[1] : lines[0]) as string;
  } else if (lines.length === 2) {
    question = lines[0] as string;
  } else return null;
  return question.toLowerCase();
}

/** TextVQAAccuracyEvaluator._compute_answer_scores: normalised answer → soft score (needs exactly ten answers). */
export function textvqaAnswerScores(processed: string[]): Map<string, number> {
  const scores = new Map<string, number>();
  for (const unique of new Set(processed)) {
    const accs: number[] = [];
    for (let i = 0; i < processed.length; i++) {
      let matching = 0;
      for (let j = 0; j < processed.length; j++) if (j !== i && processed[j] === unique) matching++;
      accs.push(Math.min(1, matching / 3));
    }
    scores.set(unique, pySum(accs) / accs.length);
  }
  return scores;
}

export function scoreTextvqa(dataDir: string, answersPath: string, opts: ScoreOptions = {}): ScoreResult {
  const annPath = join(dataDir, "TextVQA_0.5.1_val.json");
  const data = new Rec(readJson(annPath), annPath).arr("data");
  const annotations = new Map<string, { rec: Rec; answers: string[] }>();
  data.forEach((x, i) => {
    const rec = new Rec(x, `${annPath}: data[${i}]`);
    const k = JSON.stringify([pyKey(rec.id("image_id")), rec.str("question").toLowerCase()]);
    annotations.set(k, { rec, answers: rec.strArr("answers") });
  });
  const items: Record<string, unknown>[] = [];
  const scores: number[] = [];
  for (const a of readAnswers(answersPath)) {
    const prompt = a.rec.str("prompt");
    const question = textvqaQuestion(prompt);
    if (question === null) {
      throw new EvaluationError(
        `${a.line.where}: field "prompt": cannot find the question (the official prompt_processor asserts)`,
      );
    }
    const ann = annotations.get(JSON.stringify([pyKey(a.questionId), question]));
    if (!ann) {
      throw new EvaluationError(
        `${a.line.where}: no annotation in ${annPath} with image_id ${JSON.stringify(a.questionId)} and question ${JSON.stringify(question)}`,
      );
    }
    if (ann.answers.length !== 10) ann.rec.fail("answers", "exactly 10 answers");
    const processedGt = ann.answers.map(evalAIAnswer);
    const unique = textvqaAnswerScores(processedGt);
    const processedPred = evalAIAnswer(a.text);
    const score = unique.get(processedPred) ?? 0.0;
    scores.push(score);
    items.push({
      question_id: a.questionId,
      question,
      text: a.text,
      processed_pred: processedPred,
      processed_gt: processedGt,
      unique_answer_scores: Object.fromEntries([...unique].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))),
      score,
    });
  }
  if (scores.length === 0) throw new EvaluationError(`${answersPath}: no answers`);
  const accuracy = pySum(scores) / scores.length;
  const printed = pyFormatFixed(100.0 * accuracy, 2);
  return {
    benchmark: "textvqa",
    model: modelName(answersPath, opts.model),
    summary: { samples: scores.length, accuracy, accuracy_percent_printed: printed },
    items,
    converted: {},
    headline: { metric: "accuracy (%)", value: 100 * accuracy },
    table: [
      ["Samples", String(scores.length)],
      ["Accuracy", `${printed}%`],
    ],
  };
}
