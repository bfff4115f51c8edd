// VizWiz-VQA: LLaVA's scripts/convert_vizwiz_for_submission.py (haotian-liu/LLaVA @ c121f04; its
// EvalAIAnswerProcessor is byte-identical to TinyLLaVA's) builds the upload keyed by image; the server's scoring
// is the VizWiz VQA API's vqaEval.py (accuracy part; copy at OpenGVLab/MM-Interleaved @ ac539d0).
// Quirks kept: the prediction is normalised again by the evaluator (its contraction table maps to curly ’ forms),
// the ground-truth answers are *never* normalised, annotations and uploads are keyed by image (last one wins);
// accuracies are Python 3 round(100·x, 2).
import { join } from "node:path";
import { EvaluationError } from "../errors.js";
import { Rec, readJsonArray, readJsonLines } from "../jsonio.js";
import { evalAIAnswer, vizwizNormalize } from "../normalize.js";
import { pyFormatFixed, pyJsonDumps, pyKey, pyRound, pyStr } from "../python.js";
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

/** The VizWiz caption metrics (BLEU/METEOR/ROUGE/CIDEr) need the Java coco-caption tools; only accuracy is computed. */
export const VIZWIZ_CAPTION_METRIC_NOTE =
  "not computed (pycocoevalcap/Java not available); accuracy was complete before this step";

export function scoreVizwiz(dataDir: string, answersPath: string, opts: ScoreOptions = {}): ScoreResult {
  const model = modelName(answersPath, opts.model);
  // --- convert_vizwiz_for_submission.py
  const results = new Map<string, string>();
  for (const a of readAnswers(answersPath)) results.set(pyKey(a.questionId), a.text);
  const splitPath = join(dataDir, "llava_test.jsonl");
  const questionOfImage = new Map<string, string | number>();
  const upload = readJsonLines(splitPath).map((l) => {
    const q = Rec.line(l);
    const qid = q.id("question_id");
    const image = q.str("image");
    const text = results.get(pyKey(qid));
    if (text === undefined) {
      throw new EvaluationError(
        `${answersPath}: no answer for question_id ${pyStr(qid)} of ${l.where} (the converter asserts)`,
      );
    }
    questionOfImage.set(image, qid);
    return { image, answer: evalAIAnswer(text) };
  });

  // --- VQA(annotations), VQA(upload), VQAEval(n=2).evaluate() (accuracy)
  const annPath = join(dataDir, "annotations.json");
  const gts = new Map<string, { answers: string[]; answerType: string }>();
  for (const r of readJsonArray(annPath, "annotations")) {
    const answers = r.arr("answers").map((y, j) => new Rec(y, `${r.where}.answers[${j}]`).str("answer"));
    gts.set(r.str("image"), { answers, answerType: r.str("answer_type") });
  }
  const res = new Map(upload.map((u) => [u.image, u.answer]));
  const accQA: number[] = [];
  const accAnsType = new Map<string, number[]>();
  const evalAnsType = new Map<string, Map<string, number>>();
  const items: Record<string, unknown>[] = [];
  for (const [image, gt] of gts) {
    const uploaded = res.get(image);
    if (uploaded === undefined) throw new EvaluationError(`${annPath}: image "${image}" has no answer in the upload`);
    const resAns = vizwizNormalize(uploaded);
    const gtAcc = gt.answers.map((_, i) => {
      const matching = gt.answers.filter((ans, j) => j !== i && ans === resAns).length;
      return Math.min(1, matching / 3);
    });
    const acc = pySum(gtAcc) / gtAcc.length;
    accQA.push(acc);
    pushTo(accAnsType, gt.answerType, acc);
    mapIn(evalAnsType, gt.answerType).set(image, pyRound(100 * acc, 2));
    const qid = questionOfImage.get(image);
    items.push({
      question_id: qid ?? null,
      image,
      answer_type: gt.answerType,
      text: qid === undefined ? null : results.get(pyKey(qid)),
      upload_answer: uploaded,
      compared_answer: resAns,
      accuracy: acc,
      evalQA: pyRound(100 * acc, 2),
    });
  }
  if (accQA.length === 0) throw new EvaluationError(`${annPath}: no annotations`);
  const mean100 = (xs: number[]) => pyRound((100 * pySum(xs)) / xs.length, 2);
  const accuracy = {
    overall: mean100(accQA),
    perAnswerType: Object.fromEntries([...accAnsType].map(([k, v]) => [k, mean100(v)])),
  };
  return {
    benchmark: "vizwiz",
    model,
    summary: { upload, accuracy, evalAnsType: nestedObject(evalAnsType), caption_metric: VIZWIZ_CAPTION_METRIC_NOTE },
    items,
    converted: { [`answers_upload/${model}.json`]: pyJsonDumps(upload) },
    headline: { metric: "accuracy (%)", value: accuracy.overall },
    table: [
      ["overall", pyFormatFixed(accuracy.overall, 2)],
      ...Object.entries(accuracy.perAnswerType).map(([k, v]): [string, string] => [`  ${k}`, pyFormatFixed(v, 2)]),
    ],
  };
}
