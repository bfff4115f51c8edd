// Benchmark scorers that reproduce the official scoring code rule for rule, the LLM judge for MM-Vet and
// LLaVA-Bench, and reports beside the published TinyLLaVA model zoo.
import { join } from "node:path";
import { EvaluationError } from "./errors.js";
import { writeFileAtomic } from "./jsonio.js";
import { pyJsonDumps } from "./python.js";
import { scoreFile } from "./report.js";
import type { BenchmarkName, ScoreOptions, ScoreResult } from "./scorers/common.js";
import { scoreGqa } from "./scorers/gqa.js";
import { scoreLlavabench } from "./scorers/llavabench.js";
import { scoreMme } from "./scorers/mme.js";
import { scoreMmmu } from "./scorers/mmmu.js";
import { type JudgedScoreOptions, scoreMmvet } from "./scorers/mmvet.js";
import { scorePope } from "./scorers/pope.js";
import { scoreScienceqa } from "./scorers/scienceqa.js";
import { scoreTextvqa } from "./scorers/textvqa.js";
import { scoreVizwiz } from "./scorers/vizwiz.js";
import { scoreVqav2 } from "./scorers/vqav2.js";

export { EvaluationError } from "./errors.js";
export { Judge, type JudgeOptions } from "./judge.js";
export { evalAIAnswer } from "./normalize.js";
export { buildReport, reportMarkdown } from "./report.js";
export type { BenchmarkName, ScoreOptions, ScoreResult } from "./scorers/common.js";
export type { JudgedScoreOptions } from "./scorers/mmvet.js";
export {
  scoreGqa,
  scoreLlavabench,
  scoreMme,
  scoreMmmu,
  scoreMmvet,
  scorePope,
  scoreScienceqa,
  scoreTextvqa,
  scoreVizwiz,
  scoreVqav2,
};

type SyncScorer = (dataDir: string, answersPath: string, opts?: ScoreOptions) => ScoreResult;

/** The deterministic scorers (no judge). */
export const SCORERS: Readonly<Record<Exclude<BenchmarkName, "mmvet" | "llavabench">, SyncScorer>> = {
  pope: scorePope,
  mme: scoreMme,
  scienceqa: scoreScienceqa,
  textvqa: scoreTextvqa,
  vqav2: scoreVqav2,
  vizwiz: scoreVizwiz,
  gqa: scoreGqa,
  mmmu: scoreMmmu,
};
export const JUDGED_BENCHMARKS = ["mmvet", "llavabench"] as const;
export const BENCHMARKS: readonly BenchmarkName[] = [
  ...(Object.keys(SCORERS) as BenchmarkName[]),
  ...JUDGED_BENCHMARKS,
];

/** Scores one benchmark; MM-Vet and LLaVA-Bench need `opts.judge`. */
export async function scoreBenchmark(
  benchmark: string,
  dataDir: string,
  answersPath: string,
  opts: ScoreOptions & Partial<Pick<JudgedScoreOptions, "judge" | "runs" | "log">> = {},
): Promise<ScoreResult> {
  if (Object.hasOwn(SCORERS, benchmark)) return SCORERS[benchmark as keyof typeof SCORERS](dataDir, answersPath, opts);
  if (benchmark === "mmvet" || benchmark === "llavabench") {
    if (!opts.judge)
      throw new EvaluationError(`--benchmark ${benchmark} needs a judge (--judge-url and --judge-model)`);
    const o = { ...opts, judge: opts.judge };
    return benchmark === "mmvet" ? scoreMmvet(dataDir, answersPath, o) : scoreLlavabench(dataDir, answersPath, o);
  }
  throw new EvaluationError(`--benchmark ${benchmark}: expected one of ${BENCHMARKS.join(", ")}`);
}

/**
 * Writes a result under `<outDir>/<benchmark>/`: score.json (what `eval report` reads), items.jsonl (per-item
 * results) and the converted files the official pipeline produces, at their relative paths.
 */
export function writeResult(r: ScoreResult, outDir: string, dataDir: string, answersPath: string): string[] {
  const dir = join(outDir, r.benchmark);
  const written: string[] = [];
  const put = (rel: string, content: string) => {
    const p = join(dir, rel);
    writeFileAtomic(p, content);
    written.push(p);
  };
  put("score.json", `${JSON.stringify(scoreFile(r, dataDir, answersPath), null, 2)}\n`);
  put("items.jsonl", r.items.map((it) => `${pyJsonDumps(it)}\n`).join(""));
  for (const [rel, content] of Object.entries(r.converted)) {
    if (rel.startsWith("/") || rel.split("/").includes(".."))
      throw new EvaluationError(`converted file ${rel}: not a relative path`);
    put(rel, content);
  }
  return written;
}
