// One AdamW step reproducing PyTorch exactly: for each after_step.* in every reference model, start from the
// parameter in model.safetensors (float32 → float64), apply the recorded grad.* with the recorded settings.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { canonicalKey } from "../../src/models/checkpoint.js";
import { AdamW, SafetensorsFile, tidy } from "../../src/torch/index.js";
import { diff, REFERENCE } from "../helpers.js";

const modelsDir = join(REFERENCE, "models");

describe("AdamW step equals PyTorch's (1e-12, float64)", () => {
  for (const name of readdirSync(modelsDir).sort()) {
    test(name, () => {
      const golden = JSON.parse(readFileSync(join(modelsDir, name, "golden.json"), "utf8"));
      const o = golden.optimizer;
      assert.equal(o.name, "AdamW");
      const weights = new SafetensorsFile(join(modelsDir, name, "model.safetensors"));
      const ref = new SafetensorsFile(join(modelsDir, name, "golden.safetensors"));
      const byCanonical = new Map(weights.keys().map((k) => [canonicalKey(k), k]));
      const afterKeys = ref.keys().filter((k) => k.startsWith("after_step."));
      assert.ok(afterKeys.length > 0);
      tidy(() => {
        const params = afterKeys.map((k) => {
          const hf = k.slice("after_step.".length);
          const src = byCanonical.get(canonicalKey(hf));
          assert.ok(src, `${name}: no checkpoint weight for ${hf}`);
          const p = weights.get(src, "float64").requiresGrad_(true);
          p.grad = ref.get(`grad.${hf}`);
          return p;
        });
        const opt = new AdamW(params, { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weight_decay });
        opt.step();
        afterKeys.forEach((k, i) => {
          const d = diff(params[i]!, ref.get(k));
          assert.ok(d.maxAbs <= 1e-12, `${name} ${k}: max abs error ${d.maxAbs}`);
        });
        opt.dispose();
      });
      weights.close();
      ref.close();
    });
  }
});
