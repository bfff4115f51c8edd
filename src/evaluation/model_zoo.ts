// Published TinyLLaVA Factory model-zoo results (data). Only numbers found in the sources below are listed.
//
// Source of every row: TinyLLaVA Factory README, "Model Zoo → Trained Models → Model Performance",
//   https://github.com/TinyLLaVA/TinyLLaVA_Factory/blob/53f12c7804102104d54064102b5d2139343e59c5/README.md#model-performance
// Columns there: VQA-v2, GQA, SQA-image, TextVQA, MM-Vet, POPE, MME, MMMU-val (VizWiz and LLaVA-Bench are not
// reported). The README lists the released checkpoints by name but the table by vision tower + LLM + recipe; a
// released name is mapped to a row only where that is unambiguous:
//  - TinyLLaVA-OpenELM-450M-SigLIP-0.89B, -Qwen2-0.5B-SigLIP, -Qwen2.5-3B-SigLIP, -Gemma-SigLIP-2.4B: the only row
//    with that SigLIP + LLM pair;
//  - TinyLLaVA-Phi-2-SigLIP-3.1B: the "share" row; its model card says it was trained on ShareGPT4V,
//    https://huggingface.co/tinyllava/TinyLLaVA-Phi-2-SigLIP-3.1B (README.md).
import type { BenchmarkName } from "./scorers/common.js";

export interface ZooRow {
  vision_tower: string;
  llm: string;
  recipe: string;
  /** released checkpoint names that are this row */
  names: readonly string[];
  results: Partial<Record<BenchmarkName, number>>;
}

export const MODEL_ZOO_SOURCE =
  "https://github.com/TinyLLaVA/TinyLLaVA_Factory/blob/53f12c7804102104d54064102b5d2139343e59c5/README.md#model-performance";

const CLIP = "openai/clip-vit-large-patch14-336";
const SIGLIP = "google/siglip-so400m-patch14-384";

function row(
  vision_tower: string,
  llm: string,
  recipe: string,
  names: string[],
  [vqav2, gqa, scienceqa, textvqa, mmvet, pope, mme, mmmu]: number[],
): ZooRow {
  return {
    vision_tower,
    llm,
    recipe,
    names,
    results: { vqav2, gqa, scienceqa, textvqa, mmvet, pope, mme, mmmu } as Partial<Record<BenchmarkName, number>>,
  };
}

//                                                              VQA-v2 GQA  SQA-I TextVQA MM-Vet POPE MME   MMMU
export const MODEL_ZOO: readonly ZooRow[] = [
  row(CLIP, "apple/OpenELM-450M-Instruct", "base", [], [69.5, 52.1, 50.6, 40.4, 20.0, 83.6, 1052.9, 23.9]),
  row(
    SIGLIP,
    "apple/OpenELM-450M-Instruct",
    "base",
    ["TinyLLaVA-OpenELM-450M-SigLIP-0.89B"],
    [71.7, 53.9, 54.1, 44.0, 20.0, 85.4, 1118.8, 24.0],
  ),
  row(
    SIGLIP,
    "Qwen/Qwen2-0.5B",
    "base",
    ["TinyLLaVA-Qwen2-0.5B-SigLIP"],
    [72.3, 55.8, 60.1, 45.2, 19.5, 86.6, 1153.0, 29.7],
  ),
  row(SIGLIP, "Qwen/Qwen2.5-0.5B", "base", [], [75.3, 59.5, 60.3, 48.3, 23.9, 86.1, 1253.0, 33.3]),
  row(
    SIGLIP,
    "Qwen/Qwen2.5-3B",
    "base",
    ["TinyLLaVA-Qwen2.5-3B-SigLIP"],
    [79.4, 62.5, 74.1, 58.3, 34.8, 87.4, 1438.7, 39.9],
  ),
  row(CLIP, "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "base", [], [73.7, 58.0, 59.9, 46.3, 23.2, 85.5, 1284.6, 27.9]),
  row(SIGLIP, "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "base", [], [75.5, 58.6, 64.0, 49.6, 23.5, 86.3, 1256.5, 28.3]),
  row(CLIP, "stabilityai/stablelm-2-zephyr-1_6b", "base", [], [75.9, 59.5, 64.6, 50.5, 27.3, 86.1, 1368.1, 31.8]),
  row(SIGLIP, "stabilityai/stablelm-2-zephyr-1_6b", "base", [], [78.2, 60.7, 66.7, 56.0, 29.4, 86.3, 1319.3, 32.6]),
  row(
    SIGLIP,
    "google/gemma-2b-it",
    "base",
    ["TinyLLaVA-Gemma-SigLIP-2.4B"],
    [78.4, 61.6, 64.4, 53.6, 26.9, 86.4, 1339.0, 31.7],
  ),
  row(CLIP, "microsoft/phi-2", "base", [], [76.8, 59.4, 71.2, 53.4, 31.7, 86.8, 1448.6, 36.3]),
  row(SIGLIP, "microsoft/phi-2", "base", [], [79.2, 61.6, 71.9, 57.4, 35.0, 87.2, 1462.4, 38.2]),
  row(SIGLIP, "microsoft/phi-2", "base&lora", [], [77.6, 59.7, 71.6, 53.8, 33.3, 87.9, 1413.2, 35.6]),
  row(
    SIGLIP,
    "microsoft/phi-2",
    "share",
    ["TinyLLaVA-Phi-2-SigLIP-3.1B"],
    [80.1, 62.1, 73.0, 60.3, 37.5, 87.2, 1466.4, 38.4],
  ),
];

/**
 * The published row for a family: a released name ("TinyLLaVA-Phi-2-SigLIP-3.1B", case-insensitive, an
 * "owner/" prefix ignored) or "<vision tower>+<llm>:<recipe>" as in the table.
 */
export function findZooRow(family: string): ZooRow | null {
  const f = family.toLowerCase().replace(/^[^/]+\/(?=tinyllava-)/, "");
  for (const r of MODEL_ZOO) {
    if (r.names.some((n) => n.toLowerCase() === f)) return r;
    if (`${r.vision_tower}+${r.llm}:${r.recipe}`.toLowerCase() === f) return r;
  }
  return null;
}
