// The benchmarks `tinyllava eval run` answers: for each, the official question file and its format, the image
// folder, the Factory script whose behaviour is reproduced (prompt building, max_new_tokens, the answer fields) and a
// validated reader of its question file. The answer-format suffixes ("Answer the question using a single word or
// phrase.", VizWiz's "Unanswerable" instruction, TextVQA's OCR tokens) are inside the question files; only ScienceQA's
// "Answer with the option's letter from the given choices directly." is added by the script (--single-pred-prompt).
//
// Sources (TinyLLaVA/TinyLLaVA_Factory @ 53f12c7, scripts/eval/*.sh and tinyllava/eval/*.py; VizWiz and LLaVA-Bench
// from haotian-liu/LLaVA scripts/v1_5/eval/{vizwiz,llavabench}.sh, which run model_vqa_loader / model_vqa):
//   model_vqa_loader.py (VQAv2, GQA, TextVQA, MME, VizWiz) and model_vqa_pope.py (POPE): "<image>\n" + text;
//     prompt = the question file's text; model_id = args.model_base (None); max_new_tokens = 128 (the default; the
//     scripts pass no other).
//   model_vqa_science.py (ScienceQA, sqa.sh passes --single-pred-prompt): conversations[0].value with "<image>"
//     removed and stripped; "<image>\n" in front only when the entry has an image (else a text-only prompt); then
//     "\nAnswer with the option's letter from the given choices directly."; prompt = the whole templated prompt;
//     model_id = the model path's last component; max_new_tokens = 1024 (hard-coded).
//   model_vqa_mmmu.py: "<image>\n" + prompt when the entry has an image; entries without one (multi-image questions)
//     are not run: random.choice(all_choices) / "INVALID GENERATION FOR MULTIPLE IMAGE INPUTS"; multiple-choice
//     outputs go through parse_multi_choice_response; open outputs are written unstripped; max_new_tokens = 1024.
//   model_vqa.py (MM-Vet, LLaVA-Bench): "<image>\n" + text; prompt = the whole templated prompt; model_id = None;
//     max_new_tokens = 1024 (hard-coded).
import { EvaluationError } from "../errors.js";
import { Rec, readJsonArray, readJsonLines } from "../jsonio.js";
import { pyStrip } from "../python.js";
import type { BenchmarkName } from "../scorers/common.js";

export type FactoryScript =
  | "model_vqa_loader"
  | "model_vqa_pope"
  | "model_vqa_science"
  | "model_vqa_mmmu"
  | "model_vqa";

export interface BenchmarkSpec {
  benchmark: BenchmarkName;
  /** the official question file's name, looked up in --data */
  questionFile: string;
  /** the official scripts' --image-folder, relative to --data (the default of --images) */
  imageFolder: string;
  script: FactoryScript;
  /** the script's max_new_tokens */
  maxNewTokens: number;
  /** the answer's "prompt": the question file's text, or the whole templated prompt the model saw */
  promptField: "question" | "prompt";
  /** the answer's "model_id": args.model_base (null) or args.model_path.split('/')[-1] */
  modelId: "base" | "path";
  format: "jsonl" | "scienceqa" | "mmmu";
}

const loader = (benchmark: BenchmarkName, questionFile: string, imageFolder: string): BenchmarkSpec => ({
  benchmark,
  questionFile,
  imageFolder,
  script: benchmark === "pope" ? "model_vqa_pope" : "model_vqa_loader",
  maxNewTokens: 128,
  promptField: "question",
  modelId: "base",
  format: "jsonl",
});

const modelVqa = (benchmark: BenchmarkName, questionFile: string): BenchmarkSpec => ({
  benchmark,
  questionFile,
  imageFolder: "images",
  script: "model_vqa",
  maxNewTokens: 1024,
  promptField: "prompt",
  modelId: "base",
  format: "jsonl",
});

export const RUN_BENCHMARKS: Readonly<Record<BenchmarkName, BenchmarkSpec>> = {
  vqav2: loader("vqav2", "llava_vqav2_mscoco_test-dev2015.jsonl", "test2015"),
  gqa: loader("gqa", "llava_gqa_testdev_balanced.jsonl", "images"),
  textvqa: loader("textvqa", "llava_textvqa_val_v051_ocr.jsonl", "train_images"),
  pope: loader("pope", "llava_pope_test.jsonl", "val2014"),
  mme: loader("mme", "llava_mme.jsonl", "MME_Benchmark_release_version"),
  vizwiz: loader("vizwiz", "llava_test.jsonl", "test"),
  scienceqa: {
    benchmark: "scienceqa",
    questionFile: "llava_test_CQM-A.json",
    imageFolder: "images/test",
    script: "model_vqa_science",
    maxNewTokens: 1024,
    promptField: "prompt",
    modelId: "path",
    format: "scienceqa",
  },
  mmmu: {
    benchmark: "mmmu",
    questionFile: "anns_for_eval.json",
    imageFolder: "all_images",
    script: "model_vqa_mmmu",
    maxNewTokens: 1024,
    // Factory writes the whole list of the chunk's questions here (an upstream slip that makes the file quadratic in
    // the number of questions: ~400 MB for MMMU's 900); nothing reads it, so the prompt the model saw is written.
    promptField: "prompt",
    modelId: "path",
    format: "mmmu",
  },
  mmvet: modelVqa("mmvet", "llava-mm-vet.jsonl"),
  llavabench: modelVqa("llavabench", "questions.jsonl"),
};

export const RUN_BENCHMARK_NAMES = Object.keys(RUN_BENCHMARKS) as BenchmarkName[];

export function benchmarkSpec(name: string): BenchmarkSpec {
  if (!Object.hasOwn(RUN_BENCHMARKS, name))
    throw new EvaluationError(`--benchmark ${name}: expected one of ${RUN_BENCHMARK_NAMES.join(", ")}`);
  return RUN_BENCHMARKS[name as BenchmarkName];
}

export interface MmmuChoices {
  questionType: string;
  /** all_choices and index2ans (file order), for multiple-choice questions only */
  allChoices: string[] | null;
  index2ans: Array<[string, string]> | null;
}

/** One question as the Factory script prepares it. */
export interface EvalQuestion {
  /** position in the question file (0-based) */
  index: number;
  /** the answer's question_id, as the question file has it (string or integer) */
  questionId: string | number;
  /** "file:line" or "file: [i]", for messages */
  where: string;
  /** image file relative to the image folder; null: text-only (ScienceQA without image, MMMU multi-image) */
  image: string | null;
  /** the user message the script passes to the template ("<image>\n…" when there is an image) */
  message: string;
  /** the question file's text (what model_vqa_loader/pope write as "prompt") */
  text: string;
  mmmu?: MmmuChoices;
}

export const IMAGE_PREFIX = "<image>\n";
export const SCIENCEQA_SUFFIX = "\nAnswer with the option's letter from the given choices directly.";

/** Reads and validates a question file in the benchmark's official format. */
export function readQuestions(spec: BenchmarkSpec, path: string): EvalQuestion[] {
  let questions: EvalQuestion[];
  if (spec.format === "jsonl") questions = readJsonlQuestions(path);
  else if (spec.format === "scienceqa") questions = readScienceqaQuestions(path);
  else questions = readMmmuQuestions(path);
  if (questions.length === 0) throw new EvaluationError(`${path}: no questions`);
  return questions;
}

/** {"question_id", "image", "text", ...} per line (model_vqa_loader.py, model_vqa_pope.py, model_vqa.py). */
function readJsonlQuestions(path: string): EvalQuestion[] {
  return readJsonLines(path).map((l, index) => {
    const r = Rec.line(l);
    const questionId = r.id("question_id");
    const image = r.str("image");
    const text = r.str("text");
    return { index, questionId, where: r.where, image, message: `${IMAGE_PREFIX}${text}`, text };
  });
}

/** LLaVA's ScienceQA conversion: [{"id", "image"?, "conversations": [{"from": "human", "value"}, …]}]. */
function readScienceqaQuestions(path: string): EvalQuestion[] {
  return readJsonArray(path, "questions").map((r, index) => {
    const questionId = r.id("id");
    const conversations = r.arr("conversations");
    if (conversations.length === 0) r.fail("conversations", "a non-empty array of turns");
    const first = new Rec(conversations[0], `${r.where} conversations[0]`);
    const value = first.str("value");
    let message = pyStrip(value.replaceAll("<image>", ""));
    let image: string | null = null;
    if ("image" in r.obj) {
      image = r.str("image");
      message = `${IMAGE_PREFIX}${message}`;
    }
    message += SCIENCEQA_SUFFIX;
    return { index, questionId, where: r.where, image, message, text: value };
  });
}

/** TinyLLaVA's MMMU anns_for_eval.json: [{"id", "question_type", "prompt", "image"?, "all_choices"?, "index2ans"?}]. */
function readMmmuQuestions(path: string): EvalQuestion[] {
  return readJsonArray(path, "questions").map((r, index) => {
    const questionId = r.id("id");
    const questionType = r.str("question_type");
    const prompt = r.str("prompt");
    let allChoices: string[] | null = null;
    let index2ans: Array<[string, string]> | null = null;
    if (questionType === "multiple-choice") {
      allChoices = r.strArr("all_choices");
      if (allChoices.length === 0) r.fail("all_choices", "a non-empty array of option letters");
      const dict = r.rec("index2ans");
      index2ans = Object.keys(dict.obj).map((k) => [k, dict.str(k)]);
    }
    let image: string | null = null;
    let message = prompt;
    if ("image" in r.obj) {
      image = r.str("image");
      message = `${IMAGE_PREFIX}${prompt}`;
    }
    return {
      index,
      questionId,
      where: r.where,
      image,
      message,
      text: prompt,
      mmmu: { questionType, allChoices, index2ans },
    };
  });
}
