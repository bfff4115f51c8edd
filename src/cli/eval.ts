// `tinyllava eval score|report`: score a benchmark's answers file with the official rules; one table over the
// scores of a model beside the published model zoo. Thin over src/evaluation.
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { Command } from "commander";
import {
  BENCHMARKS,
  buildReport,
  EvaluationError,
  reportMarkdown,
  type ScoreResult,
  scoreBenchmark,
  writeResult,
} from "../evaluation/index.js";
import { writeFileAtomic } from "../evaluation/jsonio.js";
import { apiKeyFromEnv, type JudgeOptions } from "../evaluation/judge.js";

interface ScoreCliOptions {
  benchmark: string;
  data: string;
  answers: string;
  out?: string;
  json?: boolean;
  model?: string;
  judgeUrl?: string;
  judgeModel?: string;
  judgeKeyEnv?: string;
  judgeCache?: string;
  judgeRuns: string;
  judgeRetries: string;
}

function positiveInt(v: string, flag: string, min = 1): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new EvaluationError(`${flag} ${v}: expected an integer ≥ ${min}`);
  return n;
}

function table(r: ScoreResult): string {
  const w = Math.max(...r.table.map(([k]) => k.length), 8);
  const rows = r.table.map(([k, v]) => `${k.padEnd(w)}  ${v}`);
  return [`${r.benchmark} — ${r.model} (${r.items.length} items)`, ...rows].join("\n");
}

export async function evalScore(o: ScoreCliOptions): Promise<void> {
  const judged = o.benchmark === "mmvet" || o.benchmark === "llavabench";
  let judge: JudgeOptions | undefined;
  if (judged) {
    if (!o.judgeUrl || !o.judgeModel) {
      throw new EvaluationError(
        `--benchmark ${o.benchmark} is graded by an LLM judge: give --judge-url and --judge-model`,
      );
    }
    const cacheRoot = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
    judge = {
      url: o.judgeUrl,
      model: o.judgeModel,
      apiKey: apiKeyFromEnv(o.judgeKeyEnv),
      cacheDir: o.judgeCache ?? join(cacheRoot, "tinyllava", "judge"),
      maxRetries: positiveInt(o.judgeRetries, "--judge-retries", 0),
    };
  }
  const result = await scoreBenchmark(o.benchmark, o.data, o.answers, {
    model: o.model,
    judge,
    runs: positiveInt(o.judgeRuns, "--judge-runs"),
    log: (m) => console.error(m),
  });
  if (o.out) {
    const files = writeResult(result, o.out, resolve(o.data), resolve(o.answers));
    console.error(`wrote ${files.length} files under ${join(o.out, result.benchmark)}`);
  }
  console.log(o.json ? JSON.stringify(result.summary) : table(result));
}

export function evalReport(o: { results: string; family?: string; json?: boolean }): void {
  const report = buildReport(o.results, { family: o.family });
  const md = reportMarkdown(report);
  writeFileAtomic(join(o.results, "report.md"), md);
  writeFileAtomic(join(o.results, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
  console.log(o.json ? JSON.stringify(report) : md.trimEnd());
}

/** Entry point from main.ts: parses the arguments after `eval`. */
export async function evalCommand(args: string[]): Promise<void> {
  const cmd = new Command("tinyllava eval").description(
    "score benchmark answers exactly as the official scripts do, and report the scores of a model",
  );
  cmd
    .command("score")
    .description("score an answers file (JSONL as TinyLLaVA's model_vqa_* scripts write it)")
    .requiredOption("--benchmark <name>", BENCHMARKS.join(", "))
    .requiredOption("--data <dir>", "the benchmark's files, in the official layout")
    .requiredOption("--answers <file>", "the answers JSONL")
    .option(
      "--out <dir>",
      "write <dir>/<benchmark>/score.json, items.jsonl and the official pipeline's converted files",
    )
    .option("--json", "print the summary as one JSON object (keys as the official scripts report them)")
    .option("--model <name>", "model name (default: from the answers file name)")
    .option("--judge-url <url>", "OpenAI-compatible endpoint for MM-Vet / LLaVA-Bench (e.g. https://api.openai.com/v1)")
    .option("--judge-model <name>", "judge model (MM-Vet used gpt-4-0613, LLaVA-Bench gpt-4-0314)")
    .option("--judge-key-env <var>", "environment variable holding the API key (e.g. OPENAI_API_KEY)")
    .option("--judge-cache <dir>", "judgement cache (default ~/.cache/tinyllava/judge)")
    .option("--judge-runs <n>", "MM-Vet grading runs (the paper used 5)", "1")
    .option("--judge-retries <n>", "retries on 429/5xx/network errors", "6")
    .action(async (o: ScoreCliOptions) => evalScore(o));
  cmd
    .command("report")
    .description("one table (Markdown + JSON) over <results>/<benchmark>/score.json, beside the published model zoo")
    .requiredOption("--results <dir>", "folder that `eval score --out` wrote to")
    .option(
      "--family <name>",
      "published model to compare with (e.g. TinyLLaVA-Phi-2-SigLIP-3.1B); default: from the model name",
    )
    .option("--json", "print the report as JSON")
    .action((o: { results: string; family?: string; json?: boolean }) => evalReport(o));
  if (args.length === 0) {
    cmd.outputHelp();
    return;
  }
  await cmd.parseAsync(args, { from: "user" });
}
