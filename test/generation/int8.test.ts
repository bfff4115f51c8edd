// Weight-only int8 (per-row scales) on the reference models: logits stay within the stated error of float32's, greedy
// decoding agrees, and the fused decode kernel equals the dequantised product.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { generate } from "../../src/generation/generate.js";
import { loadTinyLlava } from "../../src/models/load.js";
import { linearSmall, quantizeInt8 as quantizeTensor } from "../../src/nn/lowp.js";
import { quantizeInt8 } from "../../src/nn/quant.js";
import * as F from "../../src/torch/functional.js";
import { noGrad, randn, tensor, tidy } from "../../src/torch/index.js";
import { diff } from "../helpers.js";
import { loadCase, modelNames } from "./cases.js";

/** The bound the README states: int8 logits within 5% of the float32 logit scale on the reference models. */
const INT8_LOGIT_REL = 0.05;

describe("int8 accuracy on the reference models", () => {
  const totals = { tokens: 0, agree: 0, worst: 0 };
  for (const name of modelNames()) {
    test(name, (t) => {
      const a = loadCase(name, "float32");
      const b = loadCase(name, "float32");
      try {
        const rep = quantizeInt8(b.model.languageModel);
        assert.ok(rep.linears > 0 && rep.bytesAfter < rep.bytesBefore / 3.5, JSON.stringify(rep));
        const logits = (c: typeof a) =>
          tidy(() =>
            noGrad(() =>
              c.model
                .forward({ inputIds: tensor([c.ids], { dtype: "int64" }), pixelValues: c.pixels })
                .logits.toArray(),
            ),
          );
        const rel = diff(logits(b), logits(a)).relToScale;
        const ga =
          generate(a.model, [{ inputIds: a.ids, pixelValues: a.pixels }], { maxNewTokens: 16 })[0]?.tokens ?? [];
        const gb =
          generate(b.model, [{ inputIds: b.ids, pixelValues: b.pixels }], { maxNewTokens: 16 })[0]?.tokens ?? [];
        let agree = 0;
        while (agree < 16 && ga[agree] === gb[agree]) agree++;
        totals.tokens += 16;
        totals.agree += agree;
        totals.worst = Math.max(totals.worst, rel);
        t.diagnostic(
          `int8 ${name}: logit error ${rel.toExponential(2)} of the scale, greedy agrees for ${agree}/16 tokens`,
        );
        assert.ok(rel <= INT8_LOGIT_REL, `int8 logits differ by ${rel} of the logit scale`);
        assert.ok(agree >= 8, `greedy agrees for only ${agree} tokens`);
      } finally {
        a.close();
        b.close();
      }
    });
  }
  test("summary", (t) => {
    assert.equal(totals.tokens, 16 * modelNames().length);
    t.diagnostic(
      `int8: ${totals.agree}/${totals.tokens} greedy tokens as float32, worst logit error ${totals.worst.toExponential(2)}`,
    );
  });
});

test("the fused decode kernel equals the dequantised product (and float/bf16/f16 weights)", () => {
  tidy(() => {
    for (const [m, k, n] of [
      [1, 37, 19],
      [3, 64, 130],
      [8, 200, 9],
    ] as const) {
      const x = randn([m, k]);
      const w = randn([n, k]);
      const bias = randn([n]);
      const { q, scale } = quantizeTensor(w);
      // q · scale reconstructs w within half a step per row
      const deq = q.to("float32").mul(scale.unsqueeze(1));
      const step = scale.toArray();
      const wv = w.toArray();
      const dv = deq.toArray();
      for (let i = 0; i < wv.length; i++)
        assert.ok(Math.abs((wv[i] as number) - (dv[i] as number)) <= (step[Math.floor(i / k)] as number) / 2 + 1e-7);
      const ref = F.linear(x, deq, bias).toArray();
      const got = linearSmall(x, q, scale, bias)?.toArray();
      assert.ok(got, "kernel available on this CPU");
      for (let i = 0; i < ref.length; i++) assert.ok(Math.abs((got[i] as number) - (ref[i] as number)) < 1e-4 * k);
      for (const dt of ["float32", "bfloat16", "float16"] as const) {
        const wd = w.to(dt);
        const r = F.linear(x, wd.to("float32"), bias).toArray();
        const g = linearSmall(x, wd, null, bias)?.toArray() ?? [];
        for (let i = 0; i < r.length; i++) assert.ok(Math.abs((g[i] as number) - (r[i] as number)) < 1e-4 * k, dt);
      }
    }
    // more than 8 rows, or float64: not the kernel's
    assert.equal(linearSmall(randn([9, 4]), randn([3, 4]), null, null), null);
    assert.equal(linearSmall(randn([1, 4]).to("float64"), randn([3, 4]).to("float64"), null, null), null);
  });
});

// int8 weights under a bfloat16 model: the prefill (more rows than the fused kernel takes) dequantises to float32 and
// must bring the bias and the input along (it failed with "self and mat2 must have the same dtype")
test("int8 with bfloat16 activations: prefill and decode run, and stay near float32 int8", () => {
  const name = modelNames()[0] as string;
  const a = loadCase(name, "float32");
  const b = loadCase(name, "bfloat16");
  try {
    quantizeInt8(a.model.languageModel);
    quantizeInt8(b.model.languageModel);
    const logits = (c: typeof a) =>
      tidy(() =>
        noGrad(() =>
          c.model
            .forward({ inputIds: tensor([c.ids], { dtype: "int64" }), pixelValues: c.pixels.to(c.model.dtype) })
            .logits.to("float32")
            .toArray(),
        ),
      );
    assert.ok(a.ids.length > 8, "the prompt must exceed the fused kernel's 8 rows");
    const rel = diff(logits(b), logits(a)).relToScale;
    assert.ok(rel < 0.05, `bfloat16 int8 logits differ from float32 int8 by ${rel} of the scale`);
    const out = generate(b.model, [{ inputIds: b.ids, pixelValues: b.pixels.to("bfloat16") }], { maxNewTokens: 4 });
    assert.equal(out[0]?.tokens.length, 4);
  } finally {
    a.close();
    b.close();
  }
});

// quantising while loading (layer by layer, for the memory) gives the model that load-then-quantise gives
test("loadTinyLlava({ quantize: 'int8' }) equals loading then quantising, with the same report", () => {
  const name = modelNames()[0] as string;
  const a = loadCase(name, "float32");
  try {
    const rep = quantizeInt8(a.model.languageModel);
    const b = loadTinyLlava(a.dir, { dtype: "float32", quantize: "int8" });
    b.eval();
    assert.deepEqual(b.quantization, rep);
    const sa = a.model.stateDict();
    const sb = b.stateDict();
    assert.deepEqual([...sb.keys()].sort(), [...sa.keys()].sort());
    for (const [k, t] of sa) {
      const u = sb.get(k) as typeof t;
      assert.equal(u.dtype, t.dtype, k);
      assert.ok(tidy(() => t.to("float64").sub(u.to("float64")).abs().max().item()) === 0, `${k} differs`);
    }
    b.dispose();
  } finally {
    a.close();
  }
});
