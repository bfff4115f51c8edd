// `tinyllava eval run|merge|score|report`: answer a benchmark's official question file with a model (sharded,
// resumable, batched); merge chunk answers files; score a benchmark's answers file with the official rules; one
// table over the scores of a model beside the published model zoo. Thin over src/evaluation.
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
import {
  benchmarkSpec,
  chunkFiles,
  mergeAnswers,
  RUN_BENCHMARK_NAMES,
  type RunProgress,
  readQuestions,
  runBenchmark,
} from "../evaluation/runner/index.js";
import { progressReporter } from "../evaluation/runner/progress.js";
import { type GenerateFlags, loadPipeline, TEMPLATE_NAMES } from "./generate.js";
import { choice, dtype, int, num, UsageError } from "./options.js";

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

interface RunCliOptions {
  benchmark: string;
  model: string;
  data: string;
  images?: string;
  questionFile?: string;
  answers: string;
  numChunks: string;
  chunkIdx: string;
  batchSize: string;
  maxNewTokens?: string;
  dtype: string;
  quantize?: string;
  template?: string;
  imageAspect?: string;
  temperature: string;
  numBeams: string;
  seed?: string;
  limit?: string;
  progressInterval: string;
  json?: boolean;
}

export async function evalRun(o: RunCliOptions): Promise<void> {
  const spec = benchmarkSpec(o.benchmark);
  const numChunks = int("--num-chunks", o.numChunks, { min: 1 });
  const chunkIdx = int("--chunk-idx", o.chunkIdx, { min: 0, max: numChunks - 1 });
  const batchSize = int("--batch-size", o.batchSize, { min: 1 });
  const maxNewTokens = o.maxNewTokens === undefined ? undefined : int("--max-new-tokens", o.maxNewTokens, { min: 1 });
  const temperature = num("--temperature", o.temperature, { min: 0 });
  const numBeams = int("--num-beams", o.numBeams, { min: 1 });
  const seed = o.seed === undefined ? undefined : int("--seed", o.seed, { min: 0 });
  const limit = o.limit === undefined ? undefined : int("--limit", o.limit, { min: 1 });
  const intervalS = num("--progress-interval", o.progressInterval, { above: 0 });
  // the model flags are checked now, not when the model loads (after the question file and the images)
  dtype(o.dtype);
  if (o.quantize !== undefined) choice("--quantize", o.quantize, ["int8"]);
  if (o.template !== undefined) choice("--template", o.template, TEMPLATE_NAMES);
  if (o.imageAspect !== undefined) choice("--image-aspect", o.imageAspect, ["square", "pad"]);
  const flags: Partial<GenerateFlags> & { model: string } = {
    model: o.model,
    dtype: o.dtype,
    quantize: o.quantize,
    template: o.template,
    imageAspect: o.imageAspect,
  };
  const label = numChunks > 1 ? `${spec.benchmark} [chunk ${chunkIdx}/${numChunks}]` : spec.benchmark;
  const progress = progressReporter(label, { intervalS });
  const ac = new AbortController();
  const onSigint = () => {
    progress.log(
      "interrupted: finishing nothing more; answers written so far are kept (rerun the same command to resume)",
    );
    ac.abort();
  };
  process.once("SIGINT", onSigint);
  let pipe: ReturnType<typeof loadPipeline> | null = null;
  try {
    const r = await runBenchmark({
      benchmark: spec.benchmark,
      dataDir: o.data,
      questionFile: o.questionFile,
      imagesDir: o.images,
      answersPath: o.answers,
      modelPath: o.model,
      loadModel: () => {
        pipe = loadPipeline(flags);
        return pipe;
      },
      numChunks,
      chunkIdx,
      batchSize,
      maxNewTokens,
      temperature,
      numBeams,
      seed,
      limit,
      modelSettings: {
        dtype: o.dtype,
        quantize: o.quantize ?? null,
        template: o.template ?? null,
        image_aspect: o.imageAspect ?? null,
      },
      onProgress: (p: RunProgress) => progress.update(p),
      log: (m) => progress.log(m),
      signal: ac.signal,
    });
    progress.stop();
    const done = r.resumed + r.answered;
    if (o.json) console.log(JSON.stringify(r));
    else
      console.log(
        `${r.benchmark}: ${done}/${r.total} answers in ${r.answersPath} (${r.resumed} resumed, ${r.answered} new; questions ${r.chunk[0]}–${r.chunk[1]} of ${r.questionFile})`,
      );
    if (r.interrupted) process.exitCode = 130;
  } finally {
    progress.stop();
    process.removeListener("SIGINT", onSigint);
    (pipe as ReturnType<typeof loadPipeline> | null)?.dispose();
  }
}

interface MergeCliOptions {
  inputs?: string[];
  answersPattern?: string;
  numChunks?: string;
  out: string;
  benchmark?: string;
  data?: string;
  questionFile?: string;
  limit?: string;
}

export function evalMerge(o: MergeCliOptions): void {
  if ((o.inputs === undefined) === (o.answersPattern === undefined))
    throw new UsageError("eval merge: give either --inputs FILE... or --answers-pattern PATTERN --num-chunks K");
  let inputs: string[];
  if (o.answersPattern !== undefined) {
    if (o.numChunks === undefined) throw new UsageError("--answers-pattern needs --num-chunks K");
    inputs = chunkFiles(o.answersPattern, int("--num-chunks", o.numChunks, { min: 1 }));
  } else {
    inputs = o.inputs as string[];
    if (o.numChunks !== undefined && int("--num-chunks", o.numChunks, { min: 1 }) !== inputs.length)
      throw new UsageError(`--num-chunks ${o.numChunks} but ${inputs.length} --inputs`);
  }
  let check: Parameters<typeof mergeAnswers>[2] = {};
  if (o.benchmark !== undefined || o.questionFile !== undefined) {
    if (o.benchmark === undefined) throw new UsageError("--question-file needs --benchmark (for its format)");
    const spec = benchmarkSpec(o.benchmark);
    if (o.data === undefined && o.questionFile === undefined)
      throw new UsageError("--benchmark needs --data DIR or --question-file FILE (to check the chunks against)");
    const questionFile = o.questionFile ?? join(o.data as string, spec.questionFile);
    let questions = readQuestions(spec, questionFile);
    if (o.limit !== undefined) questions = questions.slice(0, int("--limit", o.limit, { min: 1 }));
    check = { questions, questionFile };
  } else if (o.limit !== undefined || o.data !== undefined) {
    throw new UsageError("--data / --limit check the chunks against a question file: give --benchmark too");
  }
  const r = mergeAnswers(inputs, o.out, check);
  console.log(
    `merged ${r.inputs.length} chunk files (${r.counts.join(" + ")} = ${r.total} answers) into ${r.out}${check.questions ? ` (checked against ${check.questionFile})` : ""}`,
  );
}

/** Entry point from main.ts: parses the arguments after `eval`. */
export async function evalCommand(args: string[]): Promise<void> {
  const cmd = new Command("tinyllava eval").description(
    "answer benchmarks as TinyLLaVA's eval scripts do, score the answers exactly as the official scripts do, and report the scores of a model",
  );
  cmd
    .command("run")
    .description("answer a benchmark's official question file with a model (TinyLLaVA's answers JSONL; resumable)")
    .requiredOption("--benchmark <name>", RUN_BENCHMARK_NAMES.join(", "))
    .requiredOption("-m, --model <dir>", "model folder (config.json + safetensors + tokenizer)")
    .requiredOption("--data <dir>", "the benchmark's folder in the official layout (holds the question file)")
    .requiredOption("--answers <file>", "answers JSONL to write (appended; an existing one is resumed)")
    .option("--images <dir>", "image folder (default: the official one under --data, e.g. pope/val2014)")
    .option(
      "--question-file <file>",
      "another question file in the benchmark's format (default: the official name in --data)",
    )
    .option("--num-chunks <k>", "split the questions into k contiguous chunks (Factory's get_chunk)", "1")
    .option("--chunk-idx <i>", "answer chunk i (0-based)", "0")
    .option("--batch-size <n>", "prompts generated together (greedy answers are those of batch size 1)", "1")
    .option("--max-new-tokens <n>", "override the benchmark's (128; 1024 for scienceqa, mmmu, mmvet, llavabench)")
    .option("--dtype <dtype>", "float32, bfloat16, float16 or float64", "float32")
    .option("--quantize <kind>", "weight-only quantisation of the language model: int8")
    .option("--template <name>", "conversation template (Factory's --conv-mode; default: the checkpoint's)")
    .option("--image-aspect <mode>", "square or pad (default: the config's image_aspect_ratio)")
    .option("--temperature <t>", "0 = greedy, as the official scripts run", "0")
    .option("--num-beams <n>", "beam search with n beams", "1")
    .option("--seed <s>", "sampling seed (with --temperature > 0)")
    .option("--limit <n>", "only the first n questions of the question file (before chunking)")
    .option("--progress-interval <s>", "seconds between progress lines when stderr is not a terminal", "30")
    .option("--json", "print the run's summary as JSON")
    .action(async (o: RunCliOptions) => evalRun(o));
  cmd
    .command("merge")
    .description("concatenate the chunk answers files of a sharded run in chunk order, with checks")
    .option("--inputs <files...>", "chunk files in chunk order")
    .option("--answers-pattern <pattern>", "chunk files by pattern: {idx} = chunk index, {chunks} = K")
    .option("--num-chunks <k>", "number of chunks (with --answers-pattern)")
    .requiredOption("--out <file>", "merged answers file (e.g. .../merge.jsonl)")
    .option("--benchmark <name>", "check every chunk against the question file: complete, in order")
    .option("--data <dir>", "the benchmark's folder (for the question file)")
    .option("--question-file <file>", "the question file the run used (default: the official name in --data)")
    .option("--limit <n>", "the --limit the run used")
    .action((o: MergeCliOptions) => evalMerge(o));
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
