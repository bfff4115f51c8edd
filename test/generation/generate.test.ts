// KV-cached generation against the reference models: golden greedy tokens, cached = uncached logits, batching,
// sampling reproducibility, stopping, streaming, cancellation and beam search.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { IMAGE_PLACEHOLDER } from "../../src/config/index.js";
import {
  type GenerateOptions,
  type GenerateRequest,
  GenerationRun,
  generate,
  streamGenerate,
} from "../../src/generation/generate.js";
import { greedyGenerate } from "../../src/generation/greedy.js";
import type { TinyLlava } from "../../src/models/tinyllava.js";
import { TinyTokenizer } from "../../src/processing/tokenizer.js";
import { noGrad, type Tensor, tensor, tidy } from "../../src/torch/index.js";
import { type Case, loadCase, modelNames } from "./cases.js";

const names = modelNames();

describe("KV-cached greedy decoding (float64) returns the golden tokens", () => {
  let checked = 0;
  for (const name of names) {
    test(name, () => {
      const c = loadCase(name);
      try {
        const [out] = generate(c.model, [{ inputIds: c.ids, pixelValues: c.pixels }], {
          maxNewTokens: c.golden.greedy_ids.length,
        });
        assert.deepEqual(out?.tokens, c.golden.greedy_ids);
        assert.equal(out?.finishReason, "length");
        checked++;
      } finally {
        c.close();
      }
    });
  }
  test("every reference model was checked", () => assert.equal(checked, names.length));
});

/** Last-position logits of the whole sequence, without a cache (the reference path). */
function uncachedLast(model: TinyLlava, ids: number[], pixels: Tensor): number[] {
  return tidy(() =>
    noGrad(() => {
      const { logits } = model.forward({ inputIds: tensor([ids], { dtype: "int64" }), pixelValues: pixels });
      return logits.select(1, logits.size(1) - 1).toArray();
    }),
  );
}

describe("cached and uncached logits agree to 1e-12 (float64)", () => {
  for (const name of names) {
    test(name, () => {
      const c = loadCase(name);
      const lm = c.model.languageModel;
      try {
        noGrad(() => {
          const emb = c.model.embedInputs({
            inputIds: tensor([c.ids], { dtype: "int64" }),
            pixelValues: c.pixels,
          });
          const L = emb.inputsEmbeds.size(1);
          const cache = lm.newCache(1, L + 8);
          let logits = tidy(() =>
            lm
              .logits(
                lm.hidden({ inputsEmbeds: emb.inputsEmbeds, embedsScaled: emb.embedsScaled, cache, lastOnly: true }),
              )
              .select(1, 0),
          );
          const seq = [...c.ids];
          let worst = 0;
          for (let step = 0; step < 6; step++) {
            const ours = logits.toArray();
            const ref = uncachedLast(c.model, seq, c.pixels);
            const scale = Math.max(...ref.map(Math.abs));
            for (let i = 0; i < ref.length; i++)
              worst = Math.max(worst, Math.abs((ours[i] as number) - (ref[i] as number)) / scale);
            const next = ref.indexOf(Math.max(...ref));
            seq.push(next);
            logits.dispose();
            logits = tidy(() =>
              lm
                .logits(lm.hidden({ inputsEmbeds: lm.embed(tensor([[next]], { dtype: "int64" })), cache }))
                .select(1, 0),
            );
          }
          assert.equal(cache.length, L + 6);
          logits.dispose();
          cache.dispose();
          emb.inputsEmbeds.dispose();
          assert.ok(worst <= 1e-12, `cached vs uncached logits differ by ${worst} of the logit scale`);
        });
      } finally {
        c.close();
      }
    });
  }
});

describe("batching, sampling, stopping", () => {
  let c: Case;
  let tok: TinyTokenizer;
  before(() => {
    c = loadCase("tinyllava-siglip-qwen2");
    tok = TinyTokenizer.fromFolder(c.dir);
  });
  after(() => c.close());

  const single = (r: GenerateRequest, o: GenerateOptions) => generate(c.model, [r], o)[0]!;

  test("batched greedy equals one-by-one greedy (different lengths, with and without images)", () => {
    const text = tok.encode("The quick brown fox jumps over the lazy dog.");
    const reqs: GenerateRequest[] = [
      { inputIds: c.ids, pixelValues: c.pixels },
      { inputIds: text },
      { inputIds: [...c.ids.slice(0, 3), ...text.slice(0, 4), ...c.ids.slice(3)], pixelValues: c.pixels },
      { inputIds: text.slice(0, 3) },
    ];
    const batched = generate(c.model, reqs, { maxNewTokens: 10 });
    const alone = reqs.map((r) => single(r, { maxNewTokens: 10 }));
    assert.deepEqual(
      batched.map((o) => o.tokens),
      alone.map((o) => o.tokens),
    );
    // and both equal the uncached reference decoder
    for (const [i, r] of reqs.entries()) {
      const ref = tidy(() => greedyGenerate(c.model, r.inputIds, r.pixelValues ?? null, { maxNewTokens: 10 }));
      assert.deepEqual(alone[i]?.tokens, ref, `request ${i}`);
    }
  });

  test("each sequence stops on its own (EOS ids end one row, the others go on)", () => {
    const free = single({ inputIds: c.ids, pixelValues: c.pixels }, { maxNewTokens: 8 });
    const text = tok.encode("Hello there, how are you?");
    const other = single({ inputIds: text }, { maxNewTokens: 8 });
    const eos = free.tokens[2] as number;
    assert.ok(
      !other.tokens.includes(eos) || other.tokens.indexOf(eos) > 2,
      "test needs an id the other row avoids early",
    );
    const [a, b] = generate(c.model, [{ inputIds: c.ids, pixelValues: c.pixels }, { inputIds: text }], {
      maxNewTokens: 8,
      eosTokenIds: [eos],
    });
    assert.deepEqual(a?.tokens, free.tokens.slice(0, free.tokens.indexOf(eos)));
    assert.equal(a?.finishReason, "stop");
    const cut = other.tokens.indexOf(eos);
    assert.deepEqual(b?.tokens, cut >= 0 ? other.tokens.slice(0, cut) : other.tokens);
  });

  test("sampling is reproducible with a seed; top-k 1 is greedy", () => {
    const o: GenerateOptions = { maxNewTokens: 12, temperature: 1.3, topP: 0.95, topK: 50, seed: 1234 };
    const a = single({ inputIds: c.ids, pixelValues: c.pixels }, o);
    const b = single({ inputIds: c.ids, pixelValues: c.pixels }, o);
    assert.deepEqual(a.tokens, b.tokens);
    const seeds = [1, 2, 3, 4, 5].map((seed) =>
      single({ inputIds: c.ids, pixelValues: c.pixels }, { ...o, seed }).tokens.join(","),
    );
    assert.ok(new Set(seeds).size > 1, "different seeds give different samples");
    const greedy = single({ inputIds: c.ids, pixelValues: c.pixels }, { maxNewTokens: 12 });
    const k1 = single(
      { inputIds: c.ids, pixelValues: c.pixels },
      { maxNewTokens: 12, temperature: 0.7, topK: 1, seed: 9 },
    );
    assert.deepEqual(k1.tokens, greedy.tokens);
  });

  test("repetition penalty changes a repetitive greedy continuation", () => {
    const plain = single({ inputIds: c.ids, pixelValues: c.pixels }, { maxNewTokens: 16 });
    const pen = single({ inputIds: c.ids, pixelValues: c.pixels }, { maxNewTokens: 16, repetitionPenalty: 5 });
    const repeats = (xs: number[]) => xs.length - new Set(xs).size;
    assert.ok(repeats(pen.tokens) < repeats(plain.tokens), `${pen.tokens} vs ${plain.tokens}`);
  });

  test("stop strings cut the text and are never streamed in part", async () => {
    const full = single({ inputIds: c.ids, pixelValues: c.pixels }, { maxNewTokens: 16, tokenizer: tok });
    assert.ok(full.text.length >= 4, `need some text: ${JSON.stringify(full.text)}`);
    const stop = full.text.slice(2, 4);
    const cut = single(
      { inputIds: c.ids, pixelValues: c.pixels },
      { maxNewTokens: 16, tokenizer: tok, stopStrings: [stop] },
    );
    assert.equal(cut.text, full.text.slice(0, full.text.indexOf(stop)));
    assert.equal(cut.finishReason, "stop");
    let streamed = "";
    for await (const e of streamGenerate(c.model, [{ inputIds: c.ids, pixelValues: c.pixels }], {
      maxNewTokens: 16,
      tokenizer: tok,
      stopStrings: [stop],
    }))
      streamed += e.delta;
    assert.equal(streamed, cut.text);
  });

  test("the context length: a prompt that does not fit is an error; generation stops at the limit", () => {
    const run = () => single({ inputIds: c.ids, pixelValues: c.pixels }, { maxNewTokens: 4, contextLength: 10 });
    assert.throws(run, /takes \d+ positions \(image features included\); the model's context is 10/);
    const L = c.model.embedInputs({ inputIds: tensor([c.ids], { dtype: "int64" }), pixelValues: c.pixels });
    const len = L.inputsEmbeds.size(1);
    L.inputsEmbeds.dispose();
    const o = single({ inputIds: c.ids, pixelValues: c.pixels }, { maxNewTokens: 20, contextLength: len + 3 });
    assert.equal(o.tokens.length, 3);
    assert.equal(o.finishReason, "length");
  });

  test("bad options are clear errors", () => {
    const r = { inputIds: c.ids, pixelValues: c.pixels };
    assert.throws(() => single(r, { maxNewTokens: 0 }), /maxNewTokens 0: expected an integer ≥ 1/);
    assert.throws(() => single(r, { temperature: -1 }), /temperature -1/);
    assert.throws(() => single(r, { topP: 0 }), /topP 0/);
    assert.throws(() => single(r, { repetitionPenalty: 0 }), /repetitionPenalty 0/);
    assert.throws(() => single({ inputIds: [] }, {}), /no tokens/);
    assert.throws(() => single({ inputIds: [IMAGE_PLACEHOLDER, 5] }, {}), /no pixel values/);
  });
});

describe("streaming and cancellation", () => {
  let c: Case;
  let tok: TinyTokenizer;
  before(() => {
    c = loadCase("siglip-qwen2");
    tok = TinyTokenizer.fromFolder(c.dir);
  });
  after(() => c.close());

  test("deltas concatenate to the full text", async () => {
    const [full] = generate(c.model, [{ inputIds: c.ids, pixelValues: c.pixels }], {
      maxNewTokens: 16,
      tokenizer: tok,
    });
    let streamed = "";
    let events = 0;
    for await (const e of streamGenerate(c.model, [{ inputIds: c.ids, pixelValues: c.pixels }], {
      maxNewTokens: 16,
      tokenizer: tok,
    })) {
      streamed += e.delta;
      events++;
    }
    assert.equal(streamed, full?.text);
    assert.equal(full?.text, tok.decode(full?.tokens ?? [], { skipSpecialTokens: true }));
    assert.equal(events, 16);
  });

  test("an AbortSignal stops the work within one step", async () => {
    const ac = new AbortController();
    const run = new GenerationRun(c.model, [{ inputIds: c.ids, pixelValues: c.pixels }], {
      maxNewTokens: 200,
      tokenizer: tok,
      signal: ac.signal,
    });
    let steps = 0;
    let last = "";
    for await (const e of streamGenerate(c.model, [], {}, run)) {
      steps++;
      if (steps === 3) ac.abort();
      last = e.finishReason ?? last;
    }
    const [out] = run.outputs();
    assert.equal(out?.finishReason, "abort");
    assert.equal(last, "abort");
    assert.equal(out?.tokens.length, 3, "no token after the one being computed when the signal fired");
  });

  test("an aborted signal before the start stops before the prefill", () => {
    const ac = new AbortController();
    ac.abort();
    assert.throws(
      () => generate(c.model, [{ inputIds: c.ids, pixelValues: c.pixels }], { signal: ac.signal }),
      /abort/i,
    );
  });
});

/** An independent beam search over uncached forwards (HF's rules, written plainly) to check ours against. */
function referenceBeams(
  model: TinyLlava,
  ids: number[],
  pixels: Tensor,
  nb: number,
  steps: number,
  eos: number[],
): number[] {
  type Beam = { tokens: number[]; score: number };
  let beams: Beam[] = [{ tokens: [], score: 0 }];
  const done: { tokens: number[]; score: number }[] = [];
  for (let step = 0; step < steps; step++) {
    const cand: { tokens: number[]; score: number; token: number }[] = [];
    for (const b of beams) {
      const logp = tidy(() =>
        noGrad(() => {
          const { logits } = model.forward({
            inputIds: tensor([[...ids, ...b.tokens]], { dtype: "int64" }),
            pixelValues: pixels,
          });
          return logits
            .select(1, logits.size(1) - 1)
            .to("float32")
            .logSoftmax(-1)
            .toArray();
        }),
      );
      for (const [t, lp] of logp.entries()) cand.push({ tokens: b.tokens, score: b.score + Math.fround(lp), token: t });
    }
    cand.sort((a, b) => b.score - a.score);
    const next: Beam[] = [];
    for (const [rank, x] of cand.entries()) {
      if (next.length === nb) break;
      if (eos.includes(x.token)) {
        if (rank < nb) done.push({ tokens: x.tokens, score: x.score / x.tokens.length });
      } else next.push({ tokens: [...x.tokens, x.token], score: x.score });
    }
    beams = next;
  }
  for (const b of beams) done.push({ tokens: b.tokens, score: b.score / b.tokens.length });
  done.sort((a, b) => b.score - a.score);
  return done[0]?.tokens ?? [];
}

describe("beam search", () => {
  let c: Case;
  before(() => {
    c = loadCase("siglip-phi");
  });
  after(() => c.close());

  test("one beam is greedy decoding", () => {
    const [a] = generate(c.model, [{ inputIds: c.ids, pixelValues: c.pixels }], { maxNewTokens: 8, numBeams: 1 });
    assert.deepEqual(a?.tokens, c.golden.greedy_ids.slice(0, 8));
  });

  test("three beams equal an independent (uncached) beam search", () => {
    const [a] = generate(c.model, [{ inputIds: c.ids, pixelValues: c.pixels }], { maxNewTokens: 5, numBeams: 3 });
    const ref = referenceBeams(c.model, c.ids, c.pixels, 3, 5, []);
    assert.deepEqual(a?.tokens, ref);
  });

  test("beams that end in EOS are scored by their length", () => {
    const free = generate(c.model, [{ inputIds: c.ids, pixelValues: c.pixels }], { maxNewTokens: 5, numBeams: 3 })[0]!;
    const eos = [free.tokens[1] as number];
    const [a] = generate(c.model, [{ inputIds: c.ids, pixelValues: c.pixels }], {
      maxNewTokens: 5,
      numBeams: 3,
      eosTokenIds: eos,
    });
    const ref = referenceBeams(c.model, c.ids, c.pixels, 3, 5, eos);
    assert.deepEqual(a?.tokens, ref);
  });
});

test("a cache planned too small grows once and keeps its contents", () => {
  const c = loadCase("siglip-qwen3");
  try {
    const lm = c.model.languageModel;
    noGrad(() => {
      const emb = c.model.embedInputs({ inputIds: tensor([c.ids], { dtype: "int64" }), pixelValues: c.pixels });
      const L = emb.inputsEmbeds.size(1);
      const small = lm.newCache(1, 2);
      const big = lm.newCache(1, L + 4);
      const a = tidy(() =>
        lm.logits(lm.hidden({ inputsEmbeds: emb.inputsEmbeds, cache: small, lastOnly: true })).toArray(),
      );
      const b = tidy(() =>
        lm.logits(lm.hidden({ inputsEmbeds: emb.inputsEmbeds, cache: big, lastOnly: true })).toArray(),
      );
      assert.deepEqual(a, b);
      assert.ok(small.capacity >= L);
      const step = (cache: typeof small) =>
        tidy(() =>
          lm.logits(lm.hidden({ inputsEmbeds: lm.embed(tensor([[3]], { dtype: "int64" })), cache })).toArray(),
        );
      assert.deepEqual(step(small), step(big));
      small.dispose();
      big.dispose();
      emb.inputsEmbeds.dispose();
    });
  } finally {
    c.close();
  }
});
