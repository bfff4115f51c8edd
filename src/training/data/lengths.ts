// Factory's sample lengths (LazySupervisedDataset.lengths / .modality_lengths): a cheap proxy computed from the raw
// text, without tokenising — the number of whitespace-separated words over all turns.
import { pyWordCount } from "../../processing/templates.js";
import type { LlavaRecord } from "./llava-json.js";

/** Image tokens Factory adds to `lengths` for a sample with an image (a fixed 128, whatever the vision tower). */
export const LENGTH_IMAGE_TOKENS = 128;

function words(r: LlavaRecord): number {
  let n = 0;
  for (const c of r.conversations) n += pyWordCount(c.value);
  return n;
}

/** `lengths`: words + 128 for a sample with an image. */
export function sampleLength(r: LlavaRecord): number {
  return words(r) + (r.image !== undefined ? LENGTH_IMAGE_TOKENS : 0);
}

/** `modality_lengths`: words, negative for a text-only sample (the sign is the modality for the grouped sampler). */
export function modalityLength(r: LlavaRecord): number {
  const n = words(r);
  return r.image !== undefined ? n : -n;
}
