// Activation recomputation gives the gradients of the plain backward — with dropout too (each recomputed layer draws
// the masks it drew in the forward).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { IMAGE_PLACEHOLDER } from "../../src/config/index.js";
import { loadTinyLlava } from "../../src/models/load.js";
import { applyLora } from "../../src/nn/lora.js";
import { RecomputeTape } from "../../src/nn/recompute.js";
import { manualSeed, SafetensorsFile, type Tensor, tensor, tidy } from "../../src/torch/index.js";
import { REFERENCE } from "../helpers.js";

function grads(dropout: number, recompute: boolean): Map<string, number[]> {
  const dir = join(REFERENCE, "models", "tinyllava-siglip-qwen2");
  const model = loadTinyLlava(dir, { dtype: "float64" });
  const g = new SafetensorsFile(join(dir, "golden.safetensors"));
  applyLora(model, {
    r: 4,
    alpha: 8,
    dropout,
    seed: 3,
    targets: (p) => p.startsWith("language_model."),
    init: "gaussian",
  });
  model.train();
  model.visionTower.requiresGrad_(true); // the vision stack is recomputed too
  const ids = g.get("train_input_ids").toArray();
  const labels = g.get("train_labels").toArray();
  // Factory format: one −200 per image
  const goldenImageId = JSON.parse(readFileSync(join(dir, "golden.json"), "utf8")).image_token_id as number;
  const keepIdx = ids.map((x, i) => x !== goldenImageId || ids[i - 1] !== goldenImageId);
  const fIds = ids.filter((_, i) => keepIdx[i]).map((x) => (x === goldenImageId ? IMAGE_PLACEHOLDER : x));
  const fLab = labels.filter((_, i) => keepIdx[i]);
  manualSeed(11);
  tidy(() => {
    const run = () =>
      model.forward({
        inputIds: tensor([fIds], { dtype: "int64" }),
        labels: tensor([fLab], { dtype: "int64" }),
        pixelValues: g.get("pixel_values"),
      }).loss as Tensor;
    if (recompute) {
      const tape = new RecomputeTape();
      tape.backward(tape.record(run));
    } else run().backward();
  });
  const out = new Map<string, number[]>();
  for (const [n, p] of model.namedParameters()) if (p.grad) out.set(n, p.grad.toArray());
  g.close();
  model.dispose();
  return out;
}

for (const dropout of [0, 0.5]) {
  test(`recomputed gradients equal the plain ones (float64, LoRA dropout ${dropout})`, () => {
    const a = grads(dropout, false);
    const b = grads(dropout, true);
    assert.ok(a.size > 10);
    assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
    let worst = 0;
    for (const [n, ga] of a) {
      const gb = b.get(n) as number[];
      const scale = Math.max(1e-30, ...ga.map(Math.abs));
      for (let i = 0; i < ga.length; i++)
        worst = Math.max(worst, Math.abs((ga[i] as number) - (gb[i] as number)) / scale);
    }
    assert.ok(worst <= 1e-10, `gradients differ by ${worst} of their scale`);
  });
}
