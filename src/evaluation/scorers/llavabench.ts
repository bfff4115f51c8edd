// LLaVA-Bench (in-the-wild): LLaVA's llava/eval/eval_gpt_review_bench.py (rule-based reviewer, rules from
// llava/eval/table/rule.json) and llava/eval/summarize_gpt_review.py (haotian-liu/LLaVA @ c121f04), over any
// OpenAI-compatible judge. The reviewer compares the reference answers (answers_gpt4.jsonl, "Assistant 1") with
// the model's ("Assistant 2").
// Rules kept: question, reference and model answer files are paired *by line position* (zip); the "score pair" is
// the first line of the review with "," → " ", split on single spaces, exactly two floats, else [-1, -1] (and those
// -1 pairs stay in the means); per category the mean pair is rounded to 3 decimals, then relative score =
// round(model / reference · 100, 1), and both scores are reported ×10 rounded to 1 decimal.
import { join } from "node:path";
import { EvaluationError } from "../errors.js";
import { Rec, readJsonLines } from "../jsonio.js";
import { Judge } from "../judge.js";
import { PyFloat, pyFloat, pyFormatFixed, pyJsonDumps, pyRound } from "../python.js";
import type { ScoreResult } from "./common.js";
import { modelName, pushTo, readAnswers } from "./common.js";
import type { JudgedScoreOptions } from "./mmvet.js";

export const LLAVA_BENCH_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer.";

/** rule.json's llava_bench_{conv,detail,complex} prompt (the three are identical; role "Assistant"). */
const LLAVA_BENCH_PROMPT = [
  "We would like to request your feedback on the performance of two AI assistants in response to the user question displayed above. The user asks the question on observing an image. For your reference, the visual content in the image is represented with a few sentences describing the image. ",
  "Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.",
  "Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, respectively. The two scores are separated by a space.",
  "In the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the responses were presented does not affect your judgment.",
].join("\n");

export const LLAVA_BENCH_RULES: Readonly<Record<string, { role: string; prompt: string }>> = {
  llava_bench_conv: { role: "Assistant", prompt: LLAVA_BENCH_PROMPT },
  llava_bench_detail: { role: "Assistant", prompt: LLAVA_BENCH_PROMPT },
  llava_bench_complex: { role: "Assistant", prompt: LLAVA_BENCH_PROMPT },
};

/** The reviewer's user message (eval_gpt_review_bench.py `content`). */
export function llavaBenchContent(
  caption: string,
  question: string,
  answer1: string,
  answer2: string,
  rule: { role: string; prompt: string },
): string {
  const r = rule.role;
  return (
    `[Context]\n${caption}\n\n[Question]\n${question}\n\n` +
    `[${r} 1]\n${answer1}\n\n[End of ${r} 1]\n\n[${r} 2]\n${answer2}\n\n[End of ${r} 2]\n\n[System]\n${rule.prompt}\n\n`
  );
}

/** eval_gpt_review_bench.parse_score: the "score pair" on the review's first line, [-1, -1] when there is none. */
export function llavaBenchParseScore(review: string | null): [number, number] {
  if (typeof review !== "string") return [-1, -1];
  const sp = (review.split("\n")[0] as string).replaceAll(",", " ").split(" ");
  if (sp.length !== 2) return [-1, -1];
  const a = pyFloat(sp[0] as string);
  const b = pyFloat(sp[1] as string);
  return a === null || b === null ? [-1, -1] : [a, b];
}

export interface LlavaBenchCategory {
  /** round(model / reference · 100, 1) of the 3-decimal means */
  relative: number;
  reference: number;
  model: number;
  count: number;
}

export async function scoreLlavabench(
  dataDir: string,
  answersPath: string,
  opts: JudgedScoreOptions,
): Promise<ScoreResult> {
  const model = modelName(answersPath, opts.model);
  const questions = readJsonLines(join(dataDir, "questions.jsonl")).map(Rec.line);
  const contextPath = join(dataDir, "context.jsonl");
  const captionOf = new Map<string, string>();
  for (const l of readJsonLines(contextPath)) {
    const c = Rec.line(l);
    const cap = c.get("caption");
    captionOf.set(
      c.str("image"),
      Array.isArray(cap)
        ? c.strArr("caption").join("\n")
        : typeof cap === "string"
          ? cap
          : c.fail("caption", "a string or an array of strings"),
    );
  }
  const references = readJsonLines(join(dataDir, "answers_gpt4.jsonl")).map(Rec.line);
  const answers = readAnswers(answersPath);
  const judge = new Judge({ ...opts.judge, log: opts.judge.log ?? opts.log });

  const reviews: Map<string, unknown>[] = [];
  const items: Record<string, unknown>[] = [];
  const n = Math.min(questions.length, references.length, answers.length);
  for (let idx = 0; idx < n; idx++) {
    const q = questions[idx] as Rec;
    const ref = references[idx] as Rec;
    const ans = answers[idx] as (typeof answers)[number];
    const caption = captionOf.get(q.str("image"));
    if (caption === undefined)
      throw new EvaluationError(`${q.where}: image "${q.str("image")}" is not in ${contextPath}`);
    const category = `llava_bench_${q.str("category")}`;
    const rule = LLAVA_BENCH_RULES[category];
    if (!Object.hasOwn(LLAVA_BENCH_RULES, category) || !rule) {
      throw new EvaluationError(`${q.where}: Visual QA category not found in rule file: ${category}`);
    }
    const content = llavaBenchContent(caption, q.str("text"), ref.str("text"), ans.text, rule);
    const reply = await judge.complete({
      messages: [
        { role: "system", content: LLAVA_BENCH_SYSTEM },
        { role: "user", content },
      ],
      temperature: 0.2,
      max_tokens: 1024,
    });
    const tuple = llavaBenchParseScore(reply.content);
    reviews.push(
      new Map<string, unknown>([
        ["id", idx + 1],
        ["question_id", q.get("question_id")],
        ["answer1_id", ref.has("answer_id") ? ref.get("answer_id") : ref.get("question_id")],
        ["answer2_id", ans.rec.has("answer_id") ? ans.rec.get("answer_id") : null],
        ["category", category],
        ["content", reply.content],
        ["tuple", tuple[0] === -1 && tuple[1] === -1 ? tuple : tuple.map((x) => new PyFloat(x))],
      ]),
    );
    items.push({ id: idx + 1, question_id: q.get("question_id"), category, content: reply.content, tuple });
  }
  if (n === 0) throw new EvaluationError(`${answersPath}: nothing to review`);

  // summarize_gpt_review.py: per category and "all", sorted by name
  const byCat = new Map<string, [number, number][]>();
  for (const it of items) {
    for (const k of [it.category as string, "all"]) pushTo(byCat, k, it.tuple as [number, number]);
  }
  const categories: Record<string, LlavaBenchCategory> = {};
  for (const k of [...byCat.keys()].sort()) {
    const v = byCat.get(k) as [number, number][];
    let s0 = 0;
    let s1 = 0;
    for (const [a, b] of v) {
      s0 += a;
      s1 += b;
    }
    const m0 = pyRound(s0 / v.length, 3);
    const m1 = pyRound(s1 / v.length, 3);
    if (m0 === 0)
      throw new EvaluationError(
        `LLaVA-Bench ${k}: the reference's mean score is 0 (summarize_gpt_review divides by it)`,
      );
    categories[k] = {
      relative: pyRound((m1 / m0) * 100, 1),
      reference: pyRound(m0 * 10, 1),
      model: pyRound(m1 * 10, 1),
      count: v.length,
    };
  }
  const all = categories.all as LlavaBenchCategory;
  return {
    benchmark: "llavabench",
    model,
    summary: {
      judge_model: opts.judge.model,
      num_reviews: n,
      categories,
      judge_requests: judge.requests,
      judge_cache_hits: judge.cacheHits,
    },
    items,
    converted: { [`reviews/${model}.jsonl`]: reviews.map((r) => `${pyJsonDumps(r)}\n`).join("") },
    headline: { metric: "relative score (all)", value: all.relative },
    table: Object.entries(categories).map(([k, c]): [string, string] => [
      k,
      `${pyFormatFixed(c.relative, 1)} (reference ${pyFormatFixed(c.reference, 1)}, model ${pyFormatFixed(c.model, 1)})`,
    ]),
  };
}
