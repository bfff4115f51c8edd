// Held-out accuracy for the demo: exact match after normalisation, overall and per question type. The normalisation
// is VQA-like but deliberately small, since the gold answers are single lowercase words: lowercase, punctuation to
// spaces, articles (a, an, the) dropped, whitespace collapsed, number words (zero … ten) as digits — so "Red.",
// " red" and "RED!" all match "red", and "three" matches "3"; "a red circle" does not match "red".
import { join } from "node:path";
import type { EvalQuestion } from "./data.js";

const NUMBERS: Record<string, string> = {
  zero: "0",
  one: "1",
  two: "2",
  three: "3",
  four: "4",
  five: "5",
  six: "6",
  seven: "7",
  eight: "8",
  nine: "9",
  ten: "10",
};
const ARTICLES = new Set(["a", "an", "the"]);

/** The form answers are compared in. */
export function normalizeAnswer(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s]/gu, " ")
    .split(/\s+/)
    .filter((w) => w.length > 0 && !ARTICLES.has(w))
    .map((w) => NUMBERS[w] ?? w)
    .join(" ");
}

export interface EvalResult {
  question_id: string;
  image: string;
  type: string;
  question: string;
  answer: string;
  prediction: string;
  correct: boolean;
}

export interface AccuracyCounts {
  total: number;
  correct: number;
  /** correct / total (0 when total is 0) */
  accuracy: number;
}

export interface EvalReport extends AccuracyCounts {
  byType: Record<string, AccuracyCounts>;
  /** one per question, in the order of the questions */
  results: EvalResult[];
}

function counts(correct: number, total: number): AccuracyCounts {
  return { total, correct, accuracy: total === 0 ? 0 : correct / total };
}

/** Scores predictions (one per question, same order) against the gold answers. */
export function scoreAnswers(questions: EvalQuestion[], predictions: string[]): EvalReport {
  if (predictions.length !== questions.length)
    throw new RangeError(`scoreAnswers: ${predictions.length} predictions for ${questions.length} questions`);
  const results = questions.map(
    (q, i): EvalResult => ({
      question_id: q.question_id,
      image: q.image,
      type: q.type,
      question: q.question,
      answer: q.answer,
      prediction: predictions[i] as string,
      correct: normalizeAnswer(predictions[i] as string) === normalizeAnswer(q.answer),
    }),
  );
  const byType: Record<string, AccuracyCounts> = {};
  for (const t of [...new Set(results.map((r) => r.type))].sort()) {
    const of = results.filter((r) => r.type === t);
    byType[t] = counts(of.filter((r) => r.correct).length, of.length);
  }
  return { ...counts(results.filter((r) => r.correct).length, results.length), byType, results };
}

export type AnswerFn = (imagePath: string, question: string) => string | Promise<string>;
/** Answers for several (image, question) pairs at once (batched generation). */
export type BatchAnswerFn = (items: { imagePath: string; question: string }[]) => string[] | Promise<string[]>;

export interface EvaluateOptions {
  /** folder the questions' image names are relative to */
  imageFolder: string;
  /** questions per call of a BatchAnswerFn (default 16) */
  batchSize?: number;
  /** after each answered batch */
  onProgress?: (done: number, total: number) => void;
}

/** Asks every question through `answer` (one at a time) and scores the answers. */
export async function evaluate(questions: EvalQuestion[], answer: AnswerFn, o: EvaluateOptions): Promise<EvalReport> {
  return evaluateBatched(
    questions,
    async (items) => {
      const out: string[] = [];
      for (const it of items) out.push(await answer(it.imagePath, it.question));
      return out;
    },
    { ...o, batchSize: 1 },
  );
}

/** Asks the questions in batches through `answer` and scores the answers. */
export async function evaluateBatched(
  questions: EvalQuestion[],
  answer: BatchAnswerFn,
  o: EvaluateOptions,
): Promise<EvalReport> {
  const size = Math.max(1, o.batchSize ?? 16);
  const predictions: string[] = [];
  for (let i = 0; i < questions.length; i += size) {
    const batch = questions.slice(i, i + size);
    const got = await answer(batch.map((q) => ({ imagePath: join(o.imageFolder, q.image), question: q.question })));
    if (got.length !== batch.length)
      throw new RangeError(`evaluate: the answer function gave ${got.length} answers for ${batch.length} questions`);
    predictions.push(...got);
    o.onProgress?.(predictions.length, questions.length);
  }
  return scoreAnswers(questions, predictions);
}

/** The report as a few lines of text (overall, then per type). */
export function formatReport(r: EvalReport): string {
  const pct = (c: AccuracyCounts) => `${(100 * c.accuracy).toFixed(1)}% (${c.correct}/${c.total})`;
  const lines = [`held-out accuracy: ${pct(r)}`];
  for (const [t, c] of Object.entries(r.byType)) lines.push(`  ${t.padEnd(8)} ${pct(c)}`);
  return lines.join("\n");
}
