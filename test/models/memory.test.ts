// Peak memory of a deep forward is weights + about one layer's activations (every module call frees its own
// temporaries): the activation peak does not grow with depth. Each measurement runs in a fresh process so the
// allocator's peak is its own.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT } from "../helpers.js";

function measure(kind: string, layers: number): { weights: number; peak: number; live: number } {
  const out = execFileSync(
    process.execPath,
    ["--import", "tsx", join(ROOT, "test/models/memory-child.ts"), kind, String(layers)],
    {
      encoding: "utf8",
    },
  );
  return JSON.parse(out.trim().split("\n").pop() as string);
}

const MB = 2 ** 20;

for (const [kind, what, perLayerBound] of [
  // 768 tokens, hidden 256, MLP 1024, 8 heads: scores 8·768²·4 B = 18.9 MB (×2 with the float32 softmax), MLP 3 MB each
  ["llm", "decoder, 768 tokens", 64 * MB],
  // 729 tokens, hidden 192, MLP 768, 6 heads: scores 12.8 MB (×2)
  ["vision", "SigLIP tower at 384/14 (729 tokens)", 48 * MB],
] as const) {
  test(`${what}: peak − weights stays one layer's activations from 4 to 16 layers`, () => {
    const shallow = measure(kind, 4);
    const deep = measure(kind, 16);
    const actShallow = shallow.peak - shallow.weights;
    const actDeep = deep.peak - deep.weights;
    assert.ok(deep.weights > 3 * shallow.weights, "the deep model is bigger");
    assert.ok(
      actDeep <= actShallow * 1.25 + 4 * MB,
      `activation peak grows with depth: ${(actShallow / MB).toFixed(1)} MB at 4 layers, ${(actDeep / MB).toFixed(1)} MB at 16`,
    );
    assert.ok(actDeep <= perLayerBound, `activation peak ${(actDeep / MB).toFixed(1)} MB is more than one layer's`);
    // nothing is left behind after the forward
    assert.ok(deep.live - deep.weights < 1 * MB, `${((deep.live - deep.weights) / MB).toFixed(1)} MB still live`);
  });
}
