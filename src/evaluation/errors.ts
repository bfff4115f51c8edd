// The evaluation layer's typed error: a question/answer/annotation file (or a judge endpoint) that cannot be scored
// the way the official code would score it. Messages name the file, the line (JSONL) and the field.
import { TinyllavaError } from "../errors.js";

export class EvaluationError extends TinyllavaError {}
