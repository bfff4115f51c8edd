// MM-Vet: the official grader, yuweihao/MM-Vet mm-vet_evaluator.py @ acde843 (same prompt and loop as the
// notebook), over any OpenAI-compatible judge. The results file is what TinyLLaVA's
// scripts/convert_mmvet_for_eval.py writes ({"v1_<question_id>": text}).
// Rules kept: the few-shot prompt + "\n" + "question | ground truth (with spaced <AND>/<OR>) | prediction | ";
// max_tokens 3, temperature 0; the score is float(reply.split(" ")[0].strip()) in [0, 1]; otherwise re-ask with
// "\nPredict the correctness of the answer (digit): " appended, at the current temperature, which then rises by
// 0.5; after the fifth re-ask the score is 0.0 (that last reply is not parsed). Scores per capability (and
// "total") = Σ score / #samples with it · 100, rounded by numpy to one decimal; per capability *set* likewise.
import { join } from "node:path";
import { EvaluationError } from "../errors.js";
import { readJsonDict } from "../jsonio.js";
import { type ChatReply, Judge, type JudgeOptions } from "../judge.js";
import { numpyRound, pyFloat, pyFormatFixed, pyJsonDumps, pyStrip } from "../python.js";
import { modelName, pySum, readAnswers, type ScoreOptions, type ScoreResult, setOwn } from "./common.js";

/** The grader's few-shot prompt, as published (mm-vet_evaluator.py `prompt`). */
export const MMVET_PROMPT = [
  "Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. <AND> in the ground truth means it is totally right only when all elements in the ground truth are present in the prediction, and <OR> means it is totally right when any one element in the ground truth is present in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right). Just complete the last space of the correctness score.",
  "",
  "Question | Ground truth | Prediction | Correctness",
  "--- | --- | --- | ---",
  "What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0",
  "What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5",
  "What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5",
  "What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5",
  "What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0",
  "Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme talks about Iceland and Greenland. It's pointing out that despite their names, Iceland is not very icy and Greenland isn't very green. | 0.4",
  "Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme is using humor to point out the misleading nature of Iceland's and Greenland's names. Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and snow. The text 'This is why I have trust issues' is a playful way to suggest that these contradictions can lead to distrust or confusion. The humor in this meme is derived from the unexpected contrast between the names of the countries and their actual physical characteristics. | 1.0",
  "",
].join("\n");

const RETRY_SUFFIX = "\nPredict the correctness of the answer (digit): ";

export interface JudgedScoreOptions extends ScoreOptions {
  judge: JudgeOptions;
  /** MM-Vet's --num_run (5 in the paper; default 1) */
  runs?: number;
  /** also report the judge's progress */
  log?: (msg: string) => void;
}

/** The grading question for one sample (mm-vet_evaluator.py `question`). */
export function mmvetQuestion(question: string, answer: string, prediction: string, retry = false): string {
  const gt = answer.replaceAll("<AND>", " <AND> ").replaceAll("<OR>", " <OR> ");
  return `${MMVET_PROMPT}\n${[question, gt, prediction, ""].join(" | ")}${retry ? RETRY_SUFFIX : ""}`;
}

/**
 * The grade in a reply: `content.split(" ")[0].strip()` as a float in [0, 1] (NaN passes, as in the official
 * check), or null where the official loop re-asks. `token` is what the grader then stores as the content.
 */
export function mmvetParseScore(content: string | null): { token: string | null; score: number | null } {
  if (typeof content !== "string") return { token: null, score: null };
  const token = pyStrip(content.split(" ")[0] as string);
  const score = pyFloat(token);
  if (score === null || score > 1.0 || score < 0.0) return { token, score: null };
  return { token, score };
}

interface Grade {
  model: string[];
  content: (string | null)[];
  score: number[];
}

/** One run of the grading loop for one sample. */
async function gradeSample(judge: Judge, q: string, a: string, pred: string, run: number) {
  let temperature = 0.0;
  let reply: ChatReply = await judge.complete({
    messages: [{ role: "user", content: mmvetQuestion(q, a, pred) }],
    temperature,
    max_tokens: 3,
    run,
  });
  let tries = 1;
  for (;;) {
    const { token, score } = mmvetParseScore(reply.content);
    if (score !== null) return { reply, score, content: token, tries };
    reply = await judge.complete({
      messages: [{ role: "user", content: mmvetQuestion(q, a, pred, true) }],
      temperature,
      max_tokens: 3,
      run,
    });
    tries++;
    temperature += 0.5;
    // after the fifth re-ask the score is 0.0 and the last reply is stored unparsed
    if (tries > 5) return { reply, score: 0.0, content: reply.content, tries };
  }
}

/** np.std (population) */
function std(xs: number[]): number {
  const m = pySum(xs) / xs.length;
  return Math.sqrt(pySum(xs.map((x) => (x - m) ** 2)) / xs.length);
}

export async function scoreMmvet(dataDir: string, answersPath: string, opts: JudgedScoreOptions): Promise<ScoreResult> {
  const model = modelName(answersPath, opts.model);
  const runs = opts.runs ?? 1;
  if (!Number.isInteger(runs) || runs < 1)
    throw new EvaluationError(`--judge-runs ${runs}: expected a positive integer`);
  const metaPath = join(dataDir, "mm-vet.json");
  const data = readJsonDict(metaPath, "MM-Vet samples").map(([id, r]) => ({
    id,
    question: r.str("question"),
    answer: r.str("answer"),
    capability: r.strArr("capability"),
  }));
  if (data.length === 0) throw new EvaluationError(`${metaPath}: no samples`);
  // scripts/convert_mmvet_for_eval.py: {"v1_<question_id>": text}
  const results = new Map<string, string>();
  for (const a of readAnswers(answersPath)) results.set(`v1_${a.questionId}`, a.text);

  const judge = new Judge({ ...opts.judge, log: opts.judge.log ?? opts.log });
  const grades = new Map<string, Grade>();
  for (let run = 0; run < runs; run++) {
    for (const s of data) {
      const pred = results.get(s.id);
      if (pred === undefined) throw new EvaluationError(`${answersPath}: no answer for MM-Vet sample ${s.id}`);
      const g = grades.get(s.id) ?? { model: [], content: [], score: [] };
      const { reply, score, content } = await gradeSample(judge, s.question, s.answer, pred, run);
      g.model.push(reply.model);
      g.content.push(content);
      g.score.push(score);
      grades.set(s.id, g);
    }
    opts.log?.(`mmvet: run ${run + 1}/${runs} graded (${judge.requests} requests, ${judge.cacheHits} cached)`);
  }

  // export_result: capabilities ordered by frequency (Counter.most_common), then "total"
  const counter = new Map<string, number>();
  const capSets: { name: string; caps: string[]; count: number }[] = [];
  const setName = (caps: string[]) => [...new Set(caps)].sort().join("_");
  for (const s of data) {
    for (const c of new Set(s.capability)) counter.set(c, (counter.get(c) ?? 0) + 1);
    const name = setName(s.capability);
    const found = capSets.find((x) => x.name === name);
    if (found) found.count++;
    else capSets.push({ name, caps: [...new Set(s.capability)], count: 1 });
  }
  const columns = [...counter.entries()].sort((a, b) => b[1] - a[1]).map(([k]) => k);
  const capScores = new Map<string, number[]>([...columns, "total"].map((k) => [k, new Array(runs).fill(0.0)]));
  const intScores = new Map<string, number[]>(
    [...capSets.map((x) => x.name), "total"].map((k) => [k, new Array(runs).fill(0.0)]),
  );
  for (const s of data) {
    const g = grades.get(s.id) as Grade;
    for (let i = 0; i < runs; i++) {
      const score = g.score[i] as number;
      const bump = (m: Map<string, number[]>, k: string) => {
        const v = m.get(k) as number[];
        v[i] = (v[i] as number) + score;
      };
      for (const c of new Set(s.capability)) bump(capScores, c);
      bump(capScores, "total");
      bump(intScores, setName(s.capability));
      bump(intScores, "total");
    }
  }
  const n = (k: string, isInt: boolean) =>
    k === "total"
      ? data.length
      : isInt
        ? (capSets.find((x) => x.name === k)?.count as number)
        : (counter.get(k) as number);
  const perRun = (v: number[], count: number) => v.map((x) => (x / count) * 100);
  const totalRuns = perRun(capScores.get("total") as number[], data.length);
  const capScore: Record<string, unknown> = {};
  for (const [k, v] of capScores) setOwn(capScore, k, numpyRound(pySum(perRun(v, n(k, false))) / runs, 1));
  capScore.std = numpyRound(std(totalRuns), 1);
  capScore.runs = totalRuns.map((x) => numpyRound(x, 1));
  const intScore: Record<string, unknown> = {};
  for (const [k, v] of intScores) setOwn(intScore, k, numpyRound(pySum(perRun(v, n(k, true))) / runs, 1));
  intScore.std = capScore.std;
  intScore.runs = capScore.runs;

  const gradeFile = new Map(
    [...grades].map(([id, g]) => [
      id,
      new Map<string, unknown>([
        ["model", g.model],
        ["content", g.content],
        ["score", g.score],
      ]),
    ]),
  );
  const total = capScore.total as number;
  return {
    benchmark: "mmvet",
    model,
    summary: {
      judge_model: opts.judge.model,
      num_samples: data.length,
      runs,
      cap_score: capScore,
      cap_int_score: intScore,
      judge_requests: judge.requests,
      judge_cache_hits: judge.cacheHits,
    },
    items: data.map((s) => ({
      id: s.id,
      capability: s.capability,
      question: s.question,
      answer: s.answer,
      prediction: results.get(s.id),
      score: (grades.get(s.id) as Grade).score,
      content: (grades.get(s.id) as Grade).content,
    })),
    converted: {
      // mm-vet_evaluator.py's grade file: {model}_{gpt_model}-grade-{num_run}runs.json
      [`${model}_${opts.judge.model.replaceAll("/", "_")}-grade-${runs}runs.json`]: pyJsonDumps(gradeFile, 4),
    },
    headline: { metric: "total score", value: total },
    table: [
      ...columns.map((c): [string, string] => [c, pyFormatFixed(capScore[c] as number, 1)]),
      ["total", pyFormatFixed(total, 1)],
    ],
  };
}
