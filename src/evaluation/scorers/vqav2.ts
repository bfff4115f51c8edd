// VQAv2 (test-dev style): TinyLLaVA Factory scripts/convert_vqav2_for_submission.py builds the EvalAI upload
// (every test2015 question, EvalAIAnswerProcessor on the answer, "" when unanswered); the server's scoring is the
// VQA evaluation code, GT-Vision-Lab/VQA vqaEval.py + vqa.py @ a013f00 (Python 2.7), run here on the upload
// restricted to the annotated question ids, as the server does for test-dev.
// Quirks kept: ground truths and prediction are normalised *only when the ten ground-truth answers are not all
// identical*; "the other nine answers" are the answer dicts unequal to the current one (dict inequality over all
// fields); accuracies are round(100·x, 2) with Python 2's round (exact halves away from zero).
import { join } from "node:path";
import { EvaluationError } from "../errors.js";
import { Rec, readJson, readJsonLines } from "../jsonio.js";
import { evalAIAnswer, vqaV2Clean, vqaV2Normalize } from "../normalize.js";
import { pyFormatFixed, pyJsonDumps, pyKey, pyRound } from "../python.js";
import {
  mapIn,
  modelName,
  nestedObject,
  pushTo,
  pySum,
  readAnswers,
  type ScoreOptions,
  type ScoreResult,
} from "./common.js";

const SPLIT = "llava_vqav2_mscoco_test-dev2015";

/** vqaEval.py setAccuracy/setEvalQA: round(100 * x, 2) under Python 2.7. */
const round2 = (x: number) => pyRound(x, 2, "away");

/** Python == on JSON values (dicts compare regardless of key order). */
function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => k in b && deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

export function scoreVqav2(dataDir: string, answersPath: string, opts: ScoreOptions = {}): ScoreResult {
  const model = modelName(answersPath, opts.model);
  // --- convert_vqav2_for_submission.py
  const results = new Map<string, string>();
  for (const a of readAnswers(answersPath)) results.set(pyKey(a.questionId), a.text);
  const splitPath = join(dataDir, "llava_vqav2_mscoco_test2015.jsonl");
  const upload = readJsonLines(splitPath).map((l) => {
    const qid = Rec.line(l).id("question_id");
    const text = results.get(pyKey(qid));
    return { question_id: qid, answer: text === undefined ? "" : evalAIAnswer(text) };
  });

  // --- VQA(annFile, quesFile).loadRes(upload restricted to annotated ids) + VQAEval(n=2).evaluate()
  const annPath = join(dataDir, "v2_mscoco_test-dev2015_annotations.json");
  const anns = new Rec(readJson(annPath), annPath).arr("annotations").map((x, i) => {
    const r = new Rec(x, `${annPath}: annotations[${i}]`);
    const answers = r.arr("answers").map((y, j) => {
      const ar = new Rec(y, `${annPath}: annotations[${i}].answers[${j}]`);
      ar.str("answer");
      return { ...ar.obj } as Record<string, unknown> & { answer: string };
    });
    return {
      questionId: r.id("question_id"),
      questionType: r.str("question_type"),
      answerType: r.str("answer_type"),
      answers,
    };
  });
  const quesPath = join(dataDir, "v2_OpenEnded_mscoco_test-dev2015_questions.json");
  const taskType = new Rec(readJson(quesPath), quesPath).get("task_type");
  const annotated = new Set(anns.map((a) => pyKey(a.questionId)));
  const res = new Map<string, string>();
  for (const u of upload) if (annotated.has(pyKey(u.question_id))) res.set(pyKey(u.question_id), u.answer);
  for (const a of anns) {
    if (!res.has(pyKey(a.questionId))) {
      throw new EvaluationError(
        `${splitPath}: annotated question ${a.questionId} is not in the test split, so the upload has no answer for it (vqa.loadRes asserts)`,
      );
    }
  }
  if (taskType === "Multiple Choice") {
    throw new EvaluationError(
      `${quesPath}: task_type "Multiple Choice" is not supported (the LLaVA pipeline is open-ended)`,
    );
  }
  // vqa.qa is keyed by question_id (the last annotation of an id wins); quesIds keep the annotation order
  const qa = new Map(anns.map((a) => [pyKey(a.questionId), a]));
  const accQA: number[] = [];
  const accQuesType = new Map<string, number[]>();
  const accAnsType = new Map<string, number[]>();
  const evalQuesType = new Map<string, Map<string, number>>();
  const evalAnsType = new Map<string, Map<string, number>>();
  const items: Record<string, unknown>[] = [];
  for (const { questionId } of anns) {
    const key = pyKey(questionId);
    const gts = qa.get(key) as (typeof anns)[number];
    // the evaluator mutates the annotation dicts in place; work on copies
    const gtAnswers = gts.answers.map((d) => ({ ...d, answer: vqaV2Clean(d.answer) }));
    const uploaded = res.get(key) as string;
    let resAns = vqaV2Clean(uploaded);
    const normalized = new Set(gtAnswers.map((d) => d.answer)).size > 1;
    if (normalized) {
      for (const d of gtAnswers) d.answer = vqaV2Normalize(d.answer);
      resAns = vqaV2Normalize(resAns);
    }
    const gtAcc = gtAnswers.map((cur) => {
      const matching = gtAnswers.filter((item) => item.answer === resAns && !deepEqual(item, cur)).length;
      return Math.min(1, matching / 3);
    });
    const acc = pySum(gtAcc) / gtAcc.length;
    accQA.push(acc);
    const push = (m: Map<string, number[]>, k: string) => pushTo(m, k, acc);
    push(accQuesType, gts.questionType);
    push(accAnsType, gts.answerType);
    const evalQA = round2(100 * acc);
    mapIn(evalQuesType, gts.questionType).set(String(questionId), evalQA);
    mapIn(evalAnsType, gts.answerType).set(String(questionId), evalQA);
    items.push({
      question_id: questionId,
      question_type: gts.questionType,
      answer_type: gts.answerType,
      text: results.get(key) ?? null,
      upload_answer: uploaded,
      vqa_eval_normalized: normalized,
      compared_answer: resAns,
      compared_gts: gtAnswers.map((d) => d.answer),
      accuracy: acc,
      evalQA,
    });
  }
  if (accQA.length === 0) throw new EvaluationError(`${annPath}: no annotations`);
  const mean100 = (xs: number[]) => round2((100 * pySum(xs)) / xs.length);
  const accuracy = {
    overall: mean100(accQA),
    perQuestionType: Object.fromEntries([...accQuesType].map(([k, v]) => [k, mean100(v)])),
    perAnswerType: Object.fromEntries([...accAnsType].map(([k, v]) => [k, mean100(v)])),
  };
  return {
    benchmark: "vqav2",
    model,
    summary: { upload, accuracy, evalQuesType: nestedObject(evalQuesType), evalAnsType: nestedObject(evalAnsType) },
    items,
    converted: { [`answers_upload/${SPLIT}/${model}.json`]: pyJsonDumps(upload) },
    headline: { metric: "accuracy (%)", value: accuracy.overall },
    table: [
      ["overall", pyFormatFixed(accuracy.overall, 2)],
      ...Object.entries(accuracy.perAnswerType).map(([k, v]): [string, string] => [`  ${k}`, pyFormatFixed(v, 2)]),
    ],
  };
}
