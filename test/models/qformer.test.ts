// Q-Former connector (no external reference yet): output shapes, Factory's parameter names, a finite-difference
// gradient check and a save → load round trip.
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { buildConnector } from "../../src/models/connectors/index.js";
import { BERT_BASE } from "../../src/models/connectors/qformer.js";
import * as torch from "../../src/torch/index.js";
import { loadSafetensors, noGrad, saveSafetensors, tidy } from "../../src/torch/index.js";

const dims = { visionHidden: 12, hidden: 10, numQueries: 3, numResamplerLayers: 0 };
const tiny = {
  hidden_size: 8,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 16,
  max_position_embeddings: 6,
};

test("Q-Former: BERT-base by default with Factory's parameter names", () => {
  const q = buildConnector("qformer", { ...dims, numQueries: 4 }, { dtype: "float32" });
  const names = [...q.stateDict().keys()];
  for (const n of [
    "_connector.query_tokens",
    "_connector.bert.embeddings.position_ids",
    "_connector.bert.encoder.layer.0.attention.self.query.weight",
    "_connector.bert.encoder.layer.0.attention.self.key.weight",
    "_connector.bert.encoder.layer.0.attention.output.dense.weight",
    "_connector.bert.encoder.layer.0.attention.output.LayerNorm.weight",
    "_connector.bert.encoder.layer.0.crossattention.self.key.weight",
    "_connector.bert.encoder.layer.0.crossattention.output.LayerNorm.bias",
    "_connector.bert.encoder.layer.0.intermediate_query.dense.weight",
    "_connector.bert.encoder.layer.0.output_query.dense.weight",
    "_connector.bert.encoder.layer.0.output_query.LayerNorm.weight",
    "_connector.bert.encoder.layer.11.attention.self.value.bias",
    "_connector.projector.weight",
  ]) {
    assert.ok(names.includes(n), `missing ${n}`);
  }
  assert.ok(!names.some((n) => n.includes("layer.1.crossattention")), "cross-attention only every 2nd layer");
  assert.ok(
    !names.some((n) => n.includes("word_embeddings") || n.includes(".intermediate.dense")),
    "removed as Factory does",
  );
  const sd = q.stateDict();
  assert.deepEqual(sd.get("_connector.query_tokens")?.shape, [1, 4, BERT_BASE.hidden_size]);
  assert.deepEqual(sd.get("_connector.bert.encoder.layer.0.crossattention.self.key.weight")?.shape, [768, 12]);
  tidy(() => {
    const out = noGrad(() => q.forward(torch.randn([2, 5, 12])));
    assert.deepEqual(out.shape, [2, 4, 10]);
  });
  q.dispose();
});

test("Q-Former: finite-difference gradients (float64) and save → load round trip", () => {
  tidy(() => {
    torch.manualSeed(0);
    const q = buildConnector("qformer", dims, { dtype: "float64", qformer: tiny });
    const x = torch.randn([1, 2, 12], { dtype: "float64", generator: new torch.Generator(1) }).requiresGrad_(true);
    const w = torch.randn([1, 3, 10], { dtype: "float64", generator: new torch.Generator(2) });
    const loss = () => q.forward(x).mul(w).sum();
    loss().backward();
    const checks: [torch.Tensor, torch.Tensor][] = [[x, x.grad!]];
    const params = new Map(q.namedParameters());
    for (const n of [
      "_connector.query_tokens",
      "_connector.bert.encoder.layer.0.crossattention.self.key.weight",
      "_connector.bert.encoder.layer.1.output_query.dense.bias",
      "_connector.projector.weight",
    ]) {
      const p = params.get(n)!;
      checks.push([p, p.grad!.clone()]);
    }
    const eps = 1e-6;
    for (const [t, grad] of checks) {
      const g = grad.toArray();
      const n = Math.min(t.numel(), 6);
      const flat = t.view(-1);
      for (let i = 0; i < n; i++) {
        const num = noGrad(() => {
          const orig = flat.select(0, i).item();
          flat.select(0, i).fill_(orig + eps);
          const up = loss().item();
          flat.select(0, i).fill_(orig - eps);
          const down = loss().item();
          flat.select(0, i).fill_(orig);
          return (up - down) / (2 * eps);
        });
        assert.ok(
          Math.abs(num - (g[i] as number)) <= 1e-6 + 1e-5 * Math.abs(num),
          `element ${i}: analytic ${g[i]} vs numeric ${num}`,
        );
      }
    }
    const path = join(mkdtempSync(join(tmpdir(), "tl-qf-")), "connector.safetensors");
    saveSafetensors(path, q.stateDict());
    const q2 = buildConnector("qformer", dims, { dtype: "float64", qformer: tiny });
    q2.loadStateDict(loadSafetensors(path));
    const a = noGrad(() => q.forward(x));
    const b = noGrad(() => q2.forward(x));
    assert.deepEqual(a.toArray(), b.toArray());
    q.dispose();
    q2.dispose();
  });
});
