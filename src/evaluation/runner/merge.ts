// `tinyllava eval merge`: the chunk answers files of a sharded run concatenated in chunk order, as Factory's
// vqav2.sh/gqa.sh `cat` them into merge.jsonl, after checks the shell loop does not make: every chunk file is there
// and complete (no incomplete last line), no answer appears twice, and — given the question file — chunk k holds
// exactly get_chunk(questions, K, k), in order.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { EvaluationError } from "../errors.js";
import { readText, writeFileAtomic } from "../jsonio.js";
import { pyKey } from "../python.js";
import { idText, readExistingAnswers, sameId } from "./answers.js";
import type { EvalQuestion } from "./benchmarks.js";
import { chunkRange } from "./chunks.js";

/** The chunk files named by a pattern with `{idx}` (and optionally `{chunks}`), e.g. `answers/{chunks}_{idx}.jsonl`. */
export function chunkFiles(pattern: string, numChunks: number): string[] {
  if (!pattern.includes("{idx}"))
    throw new EvaluationError(`--answers-pattern ${pattern}: must contain {idx} (e.g. answers/{chunks}_{idx}.jsonl)`);
  if (!Number.isInteger(numChunks) || numChunks < 1)
    throw new EvaluationError(`--num-chunks ${numChunks}: expected an integer ≥ 1`);
  return Array.from({ length: numChunks }, (_, i) =>
    pattern.replaceAll("{chunks}", String(numChunks)).replaceAll("{idx}", String(i)),
  );
}

export interface MergeOptions {
  /** the question file's questions (after --limit), to check that every chunk is complete and in order */
  questions?: readonly EvalQuestion[];
  questionFile?: string;
}

export interface MergeResult {
  out: string;
  inputs: string[];
  /** answers per chunk file */
  counts: number[];
  total: number;
}

/** Concatenates chunk answers files (chunk order) into `out`, atomically, after validating them. */
export function mergeAnswers(inputs: readonly string[], out: string, o: MergeOptions = {}): MergeResult {
  if (inputs.length === 0) throw new EvaluationError("eval merge: no chunk files given");
  if (inputs.some((p) => resolve(p) === resolve(out)))
    throw new EvaluationError(`--out ${out}: is also one of the chunk files; write the merged file elsewhere`);
  const missing = inputs.map((p, i) => [p, i] as const).filter(([p]) => !existsSync(p));
  if (missing.length)
    throw new EvaluationError(
      `missing chunk file(s): ${missing.map(([p, i]) => `${p} (chunk ${i} of ${inputs.length})`).join(", ")}; run those chunks first`,
    );
  const seen = new Map<string, string>();
  const counts: number[] = [];
  const parts: string[] = [];
  inputs.forEach((path, k) => {
    const a = readExistingAnswers(path);
    if (a.partialBytes > 0)
      throw new EvaluationError(
        `${path}:${a.lines.length + 1}: incomplete last line (chunk ${k} of ${inputs.length} was interrupted); rerun that chunk to resume it`,
      );
    for (const l of a.lines) {
      // (question_id, prompt) identifies an answer: ids alone repeat in TextVQA (image ids) and MME (two per image)
      const key = JSON.stringify([pyKey(l.questionId), l.prompt]);
      const first = seen.get(key);
      if (first)
        throw new EvaluationError(
          `${l.line.where}: duplicate answer to question_id ${idText(l.questionId)} (same prompt as ${first})`,
        );
      seen.set(key, l.line.where);
    }
    if (o.questions) {
      const [start, end] = chunkRange(o.questions.length, inputs.length, k);
      const want = o.questions.slice(start, end);
      a.lines.forEach((l, j) => {
        const q = want[j];
        if (!q)
          throw new EvaluationError(
            `${l.line.where}: chunk ${k} of ${inputs.length} has ${want.length} questions in ${o.questionFile ?? "the question file"}, this file has more answers (another question file or chunking?)`,
          );
        if (!sameId(l.questionId, q.questionId))
          throw new EvaluationError(
            `${l.line.where}: question_id ${idText(l.questionId)}, but question ${j + 1} of chunk ${k} is ${idText(q.questionId)} (${q.where})`,
          );
      });
      if (a.lines.length < want.length)
        throw new EvaluationError(
          `${path}: chunk ${k} of ${inputs.length} has ${a.lines.length} of its ${want.length} answers (first missing: question_id ${idText((want[a.lines.length] as EvalQuestion).questionId)}, ${(want[a.lines.length] as EvalQuestion).where}); rerun that chunk to finish it`,
        );
    }
    counts.push(a.lines.length);
    parts.push(a.validBytes === 0 ? "" : readText(path));
  });
  writeFileAtomic(out, parts.join(""));
  return { out, inputs: [...inputs], counts, total: counts.reduce((s, n) => s + n, 0) };
}
