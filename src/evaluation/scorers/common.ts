// What every scorer returns, and helpers shared by the scorer files.
import { basename, dirname, extname } from "node:path";
import { type JsonLine, Rec, readJsonLines } from "../jsonio.js";

export type BenchmarkName =
  | "pope"
  | "mme"
  | "scienceqa"
  | "textvqa"
  | "vqav2"
  | "vizwiz"
  | "gqa"
  | "mmmu"
  | "mmvet"
  | "llavabench";

export interface ScoreResult {
  benchmark: BenchmarkName;
  /** the model name used for converted file names and reports */
  model: string;
  /** the summary numbers, keyed and nested as the official scripts report them */
  summary: Record<string, unknown>;
  /** one entry per question: the parse and score the official code computes for it */
  items: Record<string, unknown>[];
  /** files the official pipeline writes (path relative to the output folder → exact content) */
  converted: Record<string, string>;
  /** the number a model-zoo table reports for this benchmark */
  headline: { metric: string; value: number };
  /** a small human-readable table */
  table: Array<[string, string]>;
}

export interface ScoreOptions {
  /** model name (default: the answers file's name without extension; the folder's name for merge.jsonl) */
  model?: string;
}

/** The experiment name the official scripts derive from the answers path (answers/<MODEL>.jsonl, <MODEL>/merge.jsonl). */
export function modelName(answersPath: string, given?: string): string {
  if (given) return given;
  const stem = basename(answersPath, extname(answersPath));
  return stem === "merge" ? basename(dirname(answersPath)) || stem : stem;
}

/** One line of a TinyLLaVA answers file: {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"}. */
export interface Answer {
  questionId: string | number;
  text: string;
  rec: Rec;
  line: JsonLine;
}

/** Reads an answers JSONL file; `question_id` and `text` are required on every line. */
export function readAnswers(path: string): Answer[] {
  return readJsonLines(path).map((line) => {
    const rec = Rec.line(line);
    return { questionId: rec.id("question_id"), text: rec.str("text"), rec, line };
  });
}

/** Sum in input order, as Python's sum() does (matters for the last bit). */
export function pySum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

/** o[k] = v as an own property, also for keys such as "__proto__" (ids and types come from data files). */
export function setOwn<V>(o: Record<string, V>, k: string, v: V): V {
  Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
  return v;
}

/** Appends v to the list at m[k] (Python's defaultdict(list)[k].append(v)). */
export function pushTo<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/** The inner map at m[k], created when missing. */
export function mapIn<K, K2, V>(m: Map<K, Map<K2, V>>, k: K): Map<K2, V> {
  let inner = m.get(k);
  if (!inner) m.set(k, (inner = new Map()));
  return inner;
}

/** {k: {k2: v}} from nested maps; Object.fromEntries keeps keys such as "__proto__" as own properties. */
export function nestedObject<V>(m: Map<string, Map<string, V>>): Record<string, Record<string, V>> {
  return Object.fromEntries([...m].map(([k, inner]) => [k, Object.fromEntries(inner)]));
}
