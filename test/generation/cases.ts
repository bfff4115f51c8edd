// The reference models as generation test cases: the fixture's prompt (ids in the model's own format), its pixel
// values and golden greedy tokens. Fails loudly when a model folder or golden is missing.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { IMAGE_PLACEHOLDER } from "../../src/config/index.js";
import { loadTinyLlava } from "../../src/models/load.js";
import type { TinyLlava } from "../../src/models/tinyllava.js";
import { type DType, SafetensorsFile, type Tensor } from "../../src/torch/index.js";
import { REFERENCE } from "../helpers.js";

export interface Golden {
  prompt_before: string;
  prompt_after: string;
  image: string;
  image_aspect: string;
  image_token_id: number;
  image_tokens: number;
  greedy_ids: number[];
  greedy_margins: number[];
}

export interface Case {
  name: string;
  dir: string;
  golden: Golden;
  model: TinyLlava;
  /** prompt ids as the model's format writes them (Factory: one −200 per image) */
  ids: number[];
  pixels: Tensor;
  close(): void;
}

export const MODELS_DIR = join(REFERENCE, "models");
export const IMAGES_DIR = join(REFERENCE, "images");

export function modelNames(): string[] {
  assert.ok(existsSync(MODELS_DIR), `${MODELS_DIR}: reference models folder missing`);
  const names = readdirSync(MODELS_DIR).sort();
  assert.ok(names.length >= 8, `expected the 8 reference models in ${MODELS_DIR}, found ${names.length}`);
  for (const n of names)
    for (const f of ["config.json", "golden.json", "golden.safetensors", "model.safetensors"])
      assert.ok(existsSync(join(MODELS_DIR, n, f)), `${join(MODELS_DIR, n, f)} missing`);
  return names;
}

export function loadCase(name: string, dtype: DType = "float64"): Case {
  const dir = join(MODELS_DIR, name);
  const golden = JSON.parse(readFileSync(join(dir, "golden.json"), "utf8")) as Golden;
  const g = new SafetensorsFile(join(dir, "golden.safetensors"));
  const model = loadTinyLlava(dir, { dtype });
  model.eval();
  let ids = g.get("input_ids").toArray();
  if (model.config.source_format !== "llava") {
    const out: number[] = [];
    for (const id of ids)
      if (id !== golden.image_token_id) out.push(id);
      else if (out[out.length - 1] !== IMAGE_PLACEHOLDER) out.push(IMAGE_PLACEHOLDER);
    ids = out;
  }
  const pixels = g.get("pixel_values");
  g.close();
  return {
    name,
    dir,
    golden,
    model,
    ids,
    pixels,
    close: () => {
      model.dispose();
      pixels.dispose();
    },
  };
}
