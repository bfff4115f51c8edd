// Running benchmarks: official question files in, TinyLLaVA answers files out (sharded, resumable, batched), and
// the merge of chunk files.
export {
  AnswersLock,
  AnswersWriter,
  answerId,
  answerLine,
  readExistingAnswers,
  shortuuidEncode,
} from "./answers.js";
export {
  type BenchmarkSpec,
  benchmarkSpec,
  type EvalQuestion,
  RUN_BENCHMARK_NAMES,
  RUN_BENCHMARKS,
  readQuestions,
  SCIENCEQA_SUFFIX,
} from "./benchmarks.js";
export { chunkRange, getChunk, splitList } from "./chunks.js";
export { chunkFiles, type MergeResult, mergeAnswers } from "./merge.js";
export {
  mmmuAnswerText,
  mmmuRandomChoice,
  modelPathName,
  type RunModel,
  type RunOptions,
  type RunProgress,
  type RunResult,
  runBenchmark,
} from "./run.js";
