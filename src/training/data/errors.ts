// Errors about training data: every message names the data file, the sample (index and id) and the field.
import { TinyllavaError } from "../../errors.js";

export interface DataErrorPlace {
  /** the data file (LLaVA JSON) */
  file: string;
  /** position of the sample in the file's list */
  index?: number;
  sampleId?: string;
  /** the offending field, e.g. "conversations[1].from" */
  field?: string;
}

/** A training data file or sample is malformed, inconsistent or refers to a missing/corrupt image. */
export class DataError extends TinyllavaError {
  constructor(
    message: string,
    readonly place: DataErrorPlace,
  ) {
    super(message);
  }
}

/** "data.json: sample #3 (id "abc"), field "image"" */
export function describePlace(p: DataErrorPlace): string {
  let s = p.file;
  if (p.index !== undefined) s += `: sample #${p.index} (${p.sampleId !== undefined ? `id "${p.sampleId}"` : "no id"})`;
  if (p.field !== undefined) s += `, field "${p.field}"`;
  return s;
}

export function dataError(p: DataErrorPlace, problem: string): DataError {
  return new DataError(`${describePlace(p)}: ${problem}`, p);
}
