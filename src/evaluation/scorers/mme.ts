// MME: LLaVA's convert_answer_to_mme.py (eval.zip, haotian-liu/LLaVA @ 32cebc3) writes one tab-separated file per
// task, then MME's eval_tool/calculation.py (BradyFU/Awesome-Multimodal-Large-Language-Models, Evaluation branch)
// scores those files. Both steps are reproduced; the scoring reads the task files exactly as written.
// Quirks kept: the converter falls back to the two-space "?  Please answer yes or no." variant when only that
// matches the ground truth; calculation.py reads lines as consecutive pairs (one image = two questions), keeps the
// answer's trailing newline when it lower-cases it, and parses "other" answers by looking for "yes"/"no" in the
// first four characters; acc+ counts images with both answers right; task score = 100·acc + 100·acc+.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { EvaluationError } from "../errors.js";
import { pyLines, readText } from "../jsonio.js";
import { pyFormatFixed, pyStrip } from "../python.js";
import { modelName, readAnswers, type ScoreOptions, type ScoreResult } from "./common.js";

export const MME_EVAL_TYPES: Readonly<Record<"Perception" | "Cognition", readonly string[]>> = {
  Perception: [
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
  ],
  Cognition: ["commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"],
};

const PHRASE = "Answer the question using a single word or phrase.";
const SUFFIX = " Please answer yes or no.";

/** convert_answer_to_mme.get_gt: (task, file, question) → "Yes"/"No" from the release folder. */
function readGroundTruth(releaseDir: string): Map<string, string> {
  if (!existsSync(releaseDir) || !statSync(releaseDir).isDirectory()) {
    throw new EvaluationError(`${releaseDir}: MME release folder not found`);
  }
  const gt = new Map<string, string>();
  for (const category of readdirSync(releaseDir).sort()) {
    const categoryDir = join(releaseDir, category);
    if (!statSync(categoryDir).isDirectory()) continue;
    // the layout is decided by the presence of images/: then the questions live in questions_answers_YN/
    const qaDir = existsSync(join(categoryDir, "images")) ? join(categoryDir, "questions_answers_YN") : categoryDir;
    if (!existsSync(qaDir) || !statSync(qaDir).isDirectory()) throw new EvaluationError(`${qaDir}: folder not found`);
    for (const file of readdirSync(qaDir).sort()) {
      if (!file.endsWith(".txt")) continue;
      const path = join(qaDir, file);
      pyLines(readText(path)).forEach((line, i) => {
        const parts = pyStrip(line).split("\t");
        if (parts.length !== 2) {
          throw new EvaluationError(`${path}:${i + 1}: expected "<question>\\t<Yes|No>", got ${JSON.stringify(line)}`);
        }
        gt.set(key(category, file, parts[0] as string), parts[1] as string);
      });
    }
  }
  return gt;
}

function key(category: string, file: string, question: string): string {
  return JSON.stringify([category, file, question]);
}

/** calculation.parse_pred_ans on the lower-cased answer field (which still ends with the line's "\n"). */
export function mmeParse(predAns: string): "yes" | "no" | "other" {
  if (predAns === "yes" || predAns === "no") return predAns;
  const prefix = Array.from(predAns).slice(0, 4).join("");
  if (prefix.includes("yes")) return "yes";
  if (prefix.includes("no")) return "no";
  return "other";
}

export interface MmeTask {
  num_images: number;
  num_questions: number;
  acc: number;
  acc_plus: number;
  score: number;
  TP: number;
  FN: number;
  TN: number;
  FP: number;
  precision: number;
  recall: number;
  other_num: number;
}

/** readlines() in text mode: \r\n and \r become \n; each line keeps its terminator. */
function readlines(text: string): string[] {
  return text.replace(/\r\n?/g, "\n").match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

export function scoreMme(dataDir: string, answersPath: string, opts: ScoreOptions = {}): ScoreResult {
  const gt = readGroundTruth(join(dataDir, "MME_Benchmark_release_version"));
  const answers = readAnswers(answersPath);
  const model = modelName(answersPath, opts.model);

  // --- convert_answer_to_mme.py
  const byTask = new Map<string, { tuple: [string, string, string, string]; answer: (typeof answers)[number] }[]>();
  for (const a of answers) {
    const qid = a.rec.str("question_id");
    const prompt = a.rec.str("prompt");
    const category = qid.split("/")[0] as string;
    const file = `${(qid.split("/").at(-1) as string).split(".")[0]}.txt`;
    let p = prompt;
    if (p.includes(PHRASE)) p = pyStrip(p.replaceAll(PHRASE, ""));
    if (!p.includes("Please answer yes or no.")) {
      p += SUFFIX;
      if (!gt.has(key(category, file, p))) p = p.replaceAll(SUFFIX, `  ${SUFFIX.slice(1)}`);
    }
    const g = gt.get(key(category, file, p));
    if (g === undefined) {
      throw new EvaluationError(
        `${a.line.where}: no ground truth for task "${category}", file "${file}", question ${JSON.stringify(p)} in MME_Benchmark_release_version`,
      );
    }
    const list = byTask.get(category) ?? [];
    list.push({ tuple: [file, p, g, a.text], answer: a });
    byTask.set(category, list);
  }
  const converted: Record<string, string> = {};
  const taskFiles = new Map<string, string>();
  for (const [category, list] of byTask) {
    const text = list.map((x) => `${x.tuple.join("\t")}\n`).join("");
    taskFiles.set(category, text);
    converted[`eval_tool/answers/${model}/${category}.txt`] = text;
  }

  // --- calculation.py
  const tasks: Record<string, MmeTask> = {};
  const totals: Record<string, number> = {};
  const evalToolAnswers: Record<string, string[]> = {};
  const parsedByTask = new Map<string, { gt: string; parsed: string }[]>();
  for (const [evalType, names] of Object.entries(MME_EVAL_TYPES)) {
    let scores = 0;
    for (const task of names) {
      const text = taskFiles.get(task);
      if (text === undefined) {
        throw new EvaluationError(
          `${answersPath}: no answers for MME task "${task}" (calculation.py needs all 14 task files)`,
        );
      }
      const lines = readlines(text);
      evalToolAnswers[task] = lines.map((l) => l.replace(/\n$/, ""));
      if (lines.length % 2 !== 0) {
        throw new EvaluationError(
          `MME task "${task}": ${lines.length} lines; calculation.py reads two questions per image`,
        );
      }
      const gts: number[] = [];
      const preds: number[] = [];
      const parsed: { gt: string; parsed: string }[] = [];
      let accPlusCorrect = 0;
      for (let i = 0; i < lines.length; i += 2) {
        let imgCorrect = 0;
        for (const line of [lines[i] as string, lines[i + 1] as string]) {
          const fields = line.split("\t");
          if (fields.length !== 4) {
            throw new EvaluationError(
              `MME task "${task}": line ${JSON.stringify(line)} does not have 4 tab-separated fields`,
            );
          }
          const gtAns = (fields[2] as string).toLowerCase();
          if (gtAns !== "yes" && gtAns !== "no") {
            throw new EvaluationError(`MME task "${task}": ground truth ${JSON.stringify(fields[2])} is not yes/no`);
          }
          const pred = mmeParse((fields[3] as string).toLowerCase());
          parsed.push({ gt: gtAns, parsed: pred });
          gts.push(gtAns === "yes" ? 1 : 0);
          preds.push(pred === "yes" ? 1 : pred === "no" ? 0 : -1);
          if (gtAns === pred) imgCorrect++;
        }
        if (imgCorrect === 2) accPlusCorrect++;
      }
      parsedByTask.set(task, parsed);
      const m = binaryMetrics(gts, preds);
      const numImages = lines.length / 2;
      const accPlus = accPlusCorrect / numImages;
      const score = 0 + m.acc * 100 + accPlus * 100;
      tasks[task] = {
        num_images: numImages,
        num_questions: lines.length,
        acc: m.acc,
        acc_plus: accPlus,
        score,
        TP: m.tp,
        FN: m.fn,
        TN: m.tn,
        FP: m.fp,
        precision: m.precision,
        recall: m.recall,
        other_num: m.other,
      };
      scores += score;
    }
    totals[evalType] = scores;
  }

  // per-item view: the task files hold one line per answer, in answers order within each task
  const cursor = new Map<string, number>();
  const items: Record<string, unknown>[] = [];
  for (const [category, list] of byTask) {
    const parsed = parsedByTask.get(category);
    if (parsed && parsed.length !== list.length) {
      throw new EvaluationError(
        `MME task "${category}": an answer contains a line break, so its task file lines no longer match the answers`,
      );
    }
  }
  for (const a of answers) {
    const category = a.rec.str("question_id").split("/")[0] as string;
    const list = byTask.get(category) as NonNullable<ReturnType<typeof byTask.get>>;
    const i = cursor.get(category) ?? 0;
    cursor.set(category, i + 1);
    const entry = list[i] as (typeof list)[number];
    const p = parsedByTask.get(category)?.[i];
    items.push({
      question_id: a.questionId,
      category,
      prompt: a.rec.str("prompt"),
      text: a.text,
      gt: entry.tuple[2],
      eval_tool_line: [...entry.tuple],
      parsed: p ? p.parsed : null,
      correct: p ? p.parsed === p.gt : null,
    });
  }

  return {
    benchmark: "mme",
    model,
    summary: { totals, tasks, eval_tool_answers: evalToolAnswers },
    items,
    converted,
    headline: { metric: "Perception score", value: totals.Perception as number },
    table: [
      ["Perception", pyFormatFixed(totals.Perception as number, 1)],
      ["Cognition", pyFormatFixed(totals.Cognition as number, 1)],
      ...Object.entries(tasks).map(([t, m]): [string, string] => [
        `  ${t}`,
        `${pyFormatFixed(m.score, 1)} (acc ${pyFormatFixed(m.acc, 3)}, acc+ ${pyFormatFixed(m.acc_plus, 3)})`,
      ]),
    ],
  };
}

/** accuracy_score, confusion_matrix(labels=[1, 0]), precision/recall_score(average="binary") as sklearn computes them. */
function binaryMetrics(gts: number[], preds: number[]) {
  let correct = 0;
  let tp = 0;
  let fn = 0;
  let fp = 0;
  let tn = 0;
  let other = 0;
  gts.forEach((g, i) => {
    const p = preds[i] as number;
    if (g === p) correct++;
    if (p === -1) {
      other++;
      return;
    }
    if (g === 1 && p === 1) tp++;
    else if (g === 1 && p === 0) fn++;
    else if (g === 0 && p === 1) fp++;
    else tn++;
  });
  return {
    acc: correct / gts.length,
    tp,
    fn,
    fp,
    tn,
    other,
    // sklearn's zero_division default: 0.0 when undefined
    precision: tp + fp === 0 ? 0 : tp / (tp + fp),
    recall: tp + fn === 0 ? 0 : tp / (tp + fn),
  };
}
