// `tinyllava eval report`: one table over the benchmarks scored for a model (the score.json files `eval score
// --out DIR` writes under DIR/<benchmark>/), beside the published TinyLLaVA Factory model-zoo numbers.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { EvaluationError } from "./errors.js";
import { Rec, readJson } from "./jsonio.js";
import { findZooRow, MODEL_ZOO_SOURCE, type ZooRow } from "./model_zoo.js";
import { pyFormatFixed } from "./python.js";
import type { BenchmarkName, ScoreResult } from "./scorers/common.js";

/** Report order and the model zoo's column titles. */
export const BENCHMARK_TITLES: ReadonlyArray<[BenchmarkName, string]> = [
  ["vqav2", "VQA-v2"],
  ["gqa", "GQA"],
  ["scienceqa", "SQA-image"],
  ["textvqa", "TextVQA"],
  ["mmvet", "MM-Vet"],
  ["pope", "POPE"],
  ["mme", "MME"],
  ["mmmu", "MMMU-val"],
  ["vizwiz", "VizWiz"],
  ["llavabench", "LLaVA-Bench"],
];

/** What `eval score --out` writes to <out>/<benchmark>/score.json. */
export interface ScoreFile {
  benchmark: BenchmarkName;
  model: string;
  headline: { metric: string; value: number };
  data: string;
  answers: string;
  summary: Record<string, unknown>;
}

export function scoreFile(r: ScoreResult, dataDir: string, answersPath: string): ScoreFile {
  return {
    benchmark: r.benchmark,
    model: r.model,
    headline: r.headline,
    data: dataDir,
    answers: answersPath,
    summary: r.summary,
  };
}

export interface ReportRow {
  benchmark: BenchmarkName;
  title: string;
  metric: string;
  value: number;
  published: number | null;
  source: string;
}

export interface Report {
  model: string;
  family: string | null;
  published_source: string | null;
  rows: ReportRow[];
}

export function buildReport(resultsDir: string, opts: { family?: string } = {}): Report {
  if (!existsSync(resultsDir) || !statSync(resultsDir).isDirectory()) {
    throw new EvaluationError(`${resultsDir}: results folder not found`);
  }
  const found: ScoreFile[] = [];
  for (const name of readdirSync(resultsDir).sort()) {
    const path = join(resultsDir, name, "score.json");
    if (!existsSync(path)) continue;
    const r = new Rec(readJson(path), path);
    const benchmark = r.str("benchmark") as BenchmarkName;
    if (!BENCHMARK_TITLES.some(([b]) => b === benchmark)) r.fail("benchmark", "a known benchmark name");
    const h = r.rec("headline");
    const value = h.get("value");
    if (typeof value !== "number") return h.fail("value", "a number");
    found.push({
      benchmark,
      model: r.str("model"),
      headline: { metric: h.str("metric"), value },
      data: r.str("data"),
      answers: r.str("answers"),
      summary: r.rec("summary").obj,
    });
  }
  if (found.length === 0)
    throw new EvaluationError(`${resultsDir}: no <benchmark>/score.json files (run eval score --out)`);
  const models = [...new Set(found.map((f) => f.model))].sort();
  if (models.length > 1) {
    throw new EvaluationError(
      `${resultsDir}: scores of several models (${models.join(", ")}); report one model per folder`,
    );
  }
  const model = models[0] as string;
  let zoo: ZooRow | null = null;
  if (opts.family) {
    zoo = findZooRow(opts.family);
    if (!zoo)
      throw new EvaluationError(
        `--family ${opts.family}: not in the published model zoo (src/evaluation/model_zoo.ts)`,
      );
  } else zoo = findZooRow(model);
  const rows: ReportRow[] = [];
  for (const [b, title] of BENCHMARK_TITLES) {
    const f = found.find((x) => x.benchmark === b);
    if (!f) continue;
    rows.push({
      benchmark: b,
      title,
      metric: f.headline.metric,
      value: f.headline.value,
      published: zoo?.results[b] ?? null,
      source: join(resultsDir, b, "score.json"),
    });
  }
  return {
    model,
    family: zoo ? (zoo.names[0] ?? `${zoo.vision_tower}+${zoo.llm}:${zoo.recipe}`) : null,
    published_source: zoo ? MODEL_ZOO_SOURCE : null,
    rows,
  };
}

export function reportMarkdown(r: Report): string {
  const head = r.family
    ? `| benchmark | metric | ${r.model} | ${r.family} (published) | Δ |\n|---|---|---:|---:|---:|`
    : `| benchmark | metric | ${r.model} |\n|---|---|---:|`;
  const lines = r.rows.map((row) => {
    const v = pyFormatFixed(row.value, 1);
    if (!r.family) return `| ${row.title} | ${row.metric} | ${v} |`;
    const p = row.published === null ? "—" : pyFormatFixed(row.published, 1);
    const d = row.published === null ? "—" : pyFormatFixed(row.value - row.published, 1);
    return `| ${row.title} | ${row.metric} | ${v} | ${p} | ${d} |`;
  });
  const foot = r.published_source
    ? `\n\nPublished numbers: TinyLLaVA Factory model zoo, ${r.published_source}\n`
    : "\n";
  return `${head}\n${lines.join("\n")}${foot}`;
}
