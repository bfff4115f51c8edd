// GQA (testdev-balanced): TinyLLaVA Factory scripts/convert_gqa_for_eval.py, then GQA's eval.py with LLaVA's
// changes (optional scene graphs/choices, {tier}_questions.json; copy at SHI-Labs/VCoder @ 4e85ace).
// Rules: prediction = text.rstrip(".").lower(); exact match with `answer`; only isBalanced questions are scored and
// each must have a prediction; binary = structural type ≠ query; without a choices file validity and plausibility
// are 0; distribution = chi-square of predicted vs gold answer counts per groups.global, weighted by group size,
// / 100; breakdowns by structural and semantic type, reasoning steps and question words.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { EvaluationError } from "../errors.js";
import { type Rec, readJsonDict } from "../jsonio.js";
import { pyFormatFixed, pyJsonDumps, pyKey, pySplit, pyStr } from "../python.js";
import { modelName, pushTo, pySum, readAnswers, type ScoreOptions, type ScoreResult } from "./common.js";

const TIER = "testdev_balanced";

/** eval.py avg(): 0 for an empty list. */
function avg(xs: number[]): number {
  return xs.length === 0 ? 0 : pySum(xs) / xs.length;
}

/** Reasoning steps: semantic operations whose "op: arg" names none of exist / query: name / choose name. */
export function gqaSteps(semantic: unknown[], where: string): number {
  return semantic.filter((c, i) => {
    if (c === null || typeof c !== "object") throw new EvaluationError(`${where}: semantic[${i}] is not an object`);
    const op = (c as Record<string, unknown>).operation;
    const arg = (c as Record<string, unknown>).argument;
    const s = `${pyStr(op)}: ${pyStr(arg)}`;
    return !["exist", "query: name", "choose name"].some((o) => s.includes(o));
  }).length;
}

export function scoreGqa(dataDir: string, answersPath: string, opts: ScoreOptions = {}): ScoreResult {
  const model = modelName(answersPath, opts.model);
  // --- convert_gqa_for_eval.py
  const answers = readAnswers(answersPath);
  const predictions = answers.map((a) => ({
    questionId: a.questionId,
    prediction: a.text.replace(/\.+$/, "").toLowerCase(),
  }));
  // eval.py keys predictions by questionId; the questions file's ids are strings, so a numeric id never matches
  const predicted = new Map(predictions.map((p) => [pyKey(p.questionId), p.prediction]));
  const textById = new Map(answers.map((a) => [pyKey(a.questionId), a.text]));

  // --- eval/eval.py --tier testdev_balanced
  const questionsPath = join(dataDir, `${TIER}_questions.json`);
  const questions = readJsonDict(questionsPath, "questions");
  const choicesPath = join(dataDir, `${TIER}_choices.json`);
  const choices = existsSync(choicesPath) ? new Map(readJsonDict(choicesPath, "choices")) : null;
  for (const [qid, q] of questions) {
    if (!predicted.has(pyKey(qid)) && q.bool("isBalanced")) {
      throw new EvaluationError(
        `${answersPath}: no prediction for question ${qid} (eval.py raises "missing predictions")`,
      );
    }
  }
  const scores = { accuracy: [] as number[], binary: [] as number[], open: [] as number[] };
  const validity: number[] = [];
  const plausibility: number[] = [];
  const perStructural = new Map<string, number[]>();
  const perSemantic = new Map<string, number[]>();
  const perSteps = new Map<number, number[]>();
  const perLength = new Map<number, number[]>();
  const goldDist = new Map<string, Map<string, number>>();
  const predDist = new Map<string, Map<string, number>>();
  const add = pushTo;
  const count = (m: Map<string, Map<string, number>>, g: string, a: string) => {
    const h = m.get(g) ?? new Map<string, number>();
    h.set(a, (h.get(a) ?? 0) + 1);
    m.set(g, h);
  };
  const items: Record<string, unknown>[] = [];
  for (const [qid, q] of questions) {
    const types = q.rec("types");
    const structural = types.str("structural");
    const semantic = types.str("semantic");
    const balanced = q.bool("isBalanced");
    const gold = q.str("answer");
    const prediction = predicted.get(pyKey(qid));
    let correct: boolean | null = null;
    if (balanced) {
      const pred = prediction as string;
      correct = pred === gold;
      const score = correct ? 1 : 0;
      scores.accuracy.push(score);
      add(perLength, pySplit(q.str("question")).length, score);
      add(perSteps, gqaSteps(q.arr("semantic"), q.where), score);
      add(perStructural, structural, score);
      add(perSemantic, semantic, score);
      (structural === "query" ? scores.open : scores.binary).push(score);
      validity.push(choices ? (belongs(pred, choiceList(choices, qid, "valid"), types) ? 1 : 0) : 0);
      plausibility.push(choices ? (belongs(pred, choiceList(choices, qid, "plausible"), types) ? 1 : 0) : 0);
      const globalGroup = q.rec("groups").get("global");
      if (globalGroup !== null) {
        if (typeof globalGroup !== "string") return q.rec("groups").fail("global", "a string or null");
        count(goldDist, globalGroup, gold);
        count(predDist, globalGroup, pred);
      }
    }
    items.push({
      question_id: qid,
      text: textById.get(pyKey(qid)) ?? null,
      prediction: prediction ?? null,
      answer: gold,
      isBalanced: balanced,
      structural,
      semantic,
      scored: balanced,
      correct,
    });
  }
  if (scores.accuracy.length === 0) throw new EvaluationError(`${questionsPath}: no balanced questions`);
  const distribution = chiSquare(goldDist, predDist, questionsPath) / 100;
  const metrics = {
    accuracy: avg(scores.accuracy) * 100,
    binary: avg(scores.binary) * 100,
    open: avg(scores.open) * 100,
    validity: avg(validity) * 100,
    plausibility: avg(plausibility) * 100,
    distribution,
  };
  const detail = <K>(m: Map<K, number[]>) => {
    const keys = [...m.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return Object.fromEntries(
      keys.map((k) => {
        const v = m.get(k) as number[];
        return [String(k), { accuracy: avg(v) * 100, count: v.length }];
      }),
    );
  };
  const detailed = {
    accuracyPerStructuralType: detail(perStructural),
    accuracyPerSemanticType: detail(perSemantic),
    accuracyPerSteps: detail(perSteps),
    accuracyPerLength: detail(perLength),
  };
  const upload = predictions.map((p) => ({ questionId: p.questionId, prediction: p.prediction }));
  return {
    benchmark: "gqa",
    model,
    summary: { predictions: upload, metrics, detailed },
    items,
    converted: { [`${TIER}_predictions.json`]: pyJsonDumps(upload) },
    headline: { metric: "accuracy (%)", value: metrics.accuracy },
    table: [
      ["Accuracy", `${pyFormatFixed(metrics.accuracy, 2)}%`],
      ["Binary", `${pyFormatFixed(metrics.binary, 2)}%`],
      ["Open", `${pyFormatFixed(metrics.open, 2)}%`],
      ["Distribution", pyFormatFixed(metrics.distribution, 2)],
    ],
  };
}

function choiceList(choices: Map<string, Rec>, qid: string, field: string): string[] {
  const c = choices.get(qid);
  if (!c) throw new EvaluationError(`choices file: no entry for question ${qid}`);
  return c.strArr(field);
}

/** eval.py belongs(): questions whose detailed type names "Common" accept color/material/shape. */
function belongs(element: string, group: string[], types: Rec): boolean {
  const g = types.str("detailed").includes("Common") ? ["color", "material", "shape"] : group;
  return g.includes(element);
}

/** eval.py chiSquare: per group Σ (o − e)² / e, weighted by the group's size; groups in first-seen order. */
function chiSquare(gold: Map<string, Map<string, number>>, pred: Map<string, Map<string, number>>, where: string) {
  let sumScore = 0;
  let sumOverall = 0;
  for (const [group, answers] of gold) {
    let score = 0;
    let overall = 0;
    for (const [ans, e] of answers) {
      const o = pred.get(group)?.get(ans) ?? 0;
      score += (o - e) ** 2 / e;
      overall += e;
    }
    sumScore += score * overall;
    sumOverall += overall;
  }
  if (sumOverall === 0) {
    throw new EvaluationError(
      `${where}: no balanced question has groups.global (eval.py's distribution divides by zero)`,
    );
  }
  return sumScore / sumOverall;
}
