// placeholder until the LoRA module lands (replaced in the same series of commits)
import type { TinyLlava } from "../models/tinyllava.js";
import type { TrainingArguments } from "./args.js";
export function applyLoraRecipe(_m: TinyLlava, _a: TrainingArguments): void {
  throw new Error("LoRA recipe: not available yet");
}
export function saveLoraOutputs(
  _m: TinyLlava,
  _d: string,
  _a: TrainingArguments,
  _t: string,
  _p: string | null,
): string[] {
  throw new Error("LoRA recipe: not available yet");
}
