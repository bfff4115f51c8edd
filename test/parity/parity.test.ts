// Reference parity: discovers every model, tokenizer, preprocessing and connector case in the fixtures folder (the
// repo copy, or TINYLLAVA_REFERENCE_FIXTURES) and checks it against the PyTorch/transformers goldens. Everything is
// derived from the files; nothing is hard-coded per model. Ends with a summary line of what was checked.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { IMAGE_PLACEHOLDER } from "../../src/config/index.js";
import { canonicalKey } from "../../src/models/checkpoint.js";
import { buildConnector } from "../../src/models/connectors/index.js";
import { loadTinyLlava } from "../../src/models/load.js";
import type { TinyLlava } from "../../src/models/tinyllava.js";
import { ImageProcessor, preprocessorConfig } from "../../src/processing/image.js";
import { TinyTokenizer } from "../../src/processing/tokenizer.js";
import { AdamW, noGrad, SafetensorsFile, type Tensor, tensor, tidy, vmlInfo } from "../../src/torch/index.js";
import { diff, REFERENCE } from "../helpers.js";

// The tolerances. Reaching them in float64 needs PyTorch 2.x's float32 numerics where transformers computes in
// float32 (RoPE cos/sin via MKL's VML, RMSNorm sums in AVX2 order, softmax backward without FMA contraction): see
// native/src/reference.cpp and F.cosSin.
const TOL = {
  features: 1e-9,
  logits64: 1e-9,
  grads: 1e-6,
  trainLoss: 1e-6,
  stepFromReferenceGrads: 1e-12,
  afterStep: 1e-6,
  logits32Abs: 1e-4,
  pixels: 2 / 255,
  resampler: 1e-9,
  resamplerGrads: 1e-6,
};

/** Float64 parity needs PyTorch's own float32 cos/sin (MKL VML): say so when a mismatch may come from its absence. */
function vmlHint(): string {
  const v = vmlInfo();
  const hints: string[] = [];
  if (!v.available) hints.push(`MKL's VML is not available: ${v.info}; scripts/setup.sh installs it`);
  if (process.env.ATEN_CPU_CAPABILITY !== "avx512")
    hints.push("ATen is not on its AVX-512 kernels (as the reference's PyTorch 2.x was): this CPU lacks AVX-512?");
  return hints.length ? ` (${hints.join("; ")})` : "";
}

const counts = { models: 0, tokenizers: 0, preprocess: 0, connectors: 0 };
const worst: Record<string, number> = {};
function record(what: string, v: number): void {
  worst[what] = Math.max(worst[what] ?? 0, v);
}

const modelsDir = join(REFERENCE, "models");
const imagesDir = join(REFERENCE, "images");
const modelNames = existsSync(modelsDir)
  ? readdirSync(modelsDir)
      .filter((n) => existsSync(join(modelsDir, n, "golden.json")))
      .sort()
  : [];

/** golden input ids (image token repeated image_tokens times) in the form the model's own format uses. */
function idsFor(model: TinyLlava, golden: { image_token_id: number }, ids: number[]): number[] {
  if (model.config.source_format === "llava") return ids;
  const out: number[] = [];
  for (const id of ids) {
    if (id === golden.image_token_id) {
      if (out[out.length - 1] !== IMAGE_PLACEHOLDER) out.push(IMAGE_PLACEHOLDER);
    } else out.push(id);
  }
  return out;
}

function rows(t: Tensor): number[][] {
  return t.tolist() as number[][];
}

function greedy(model: TinyLlava, ids: number[], pixels: Tensor, steps: number): number[] {
  const out: number[] = [];
  const cur = [...ids];
  for (let s = 0; s < steps; s++) {
    const next = tidy(() => {
      const { logits } = model.forward({ inputIds: tensor([cur], { dtype: "int64" }), pixelValues: pixels });
      return logits
        .select(1, logits.size(1) - 1)
        .argmax(-1)
        .item();
    });
    out.push(next);
    cur.push(next);
  }
  return out;
}

describe("reference parity: models", () => {
  for (const name of modelNames) {
    const dir = join(modelsDir, name);
    test(name, async () => {
      const golden = JSON.parse(readFileSync(join(dir, "golden.json"), "utf8"));
      const g = new SafetensorsFile(join(dir, "golden.safetensors"));
      const model = loadTinyLlava(dir, { dtype: "float64" });
      try {
        // tokenizer: the prompt around the image
        const tok = TinyTokenizer.fromFolder(dir);
        const prompt = `${golden.prompt_before}<image>${golden.prompt_after}`;
        const goldIds = rows(g.get("input_ids"))[0] as number[];
        const ourIds =
          model.config.source_format === "llava" ? tok.encodeWithImageToken(prompt) : tok.encodeWithImages(prompt);
        const expandedGolden = idsFor(model, golden, goldIds).flatMap((id) =>
          model.config.source_format === "llava" && id === golden.image_token_id ? [IMAGE_PLACEHOLDER] : [id],
        );
        const collapse = (xs: number[]) =>
          xs.filter((x, i) => !(x === IMAGE_PLACEHOLDER && xs[i - 1] === IMAGE_PLACEHOLDER));
        assert.deepEqual(collapse(ourIds), collapse(expandedGolden), "prompt token ids");
        assert.equal(goldIds.filter((x) => x === golden.image_token_id).length, golden.image_tokens);

        // preprocessing of the example image, as the model's processor and aspect mode say
        const aspect = golden.image_aspect === "pad" ? "pad" : model.config.image_aspect_ratio;
        const proc = ImageProcessor.fromFolder(dir, model.config.vision, aspect);
        const px = (await proc.preprocess(join(imagesDir, golden.image))).unsqueeze(0);
        const pxErr = diff(px, g.get("pixel_values")).maxAbs * Math.max(...proc.config.std);
        record("model pixel error (of 1)", pxErr);
        assert.ok(pxErr <= TOL.pixels, `pixel values differ by ${pxErr}`);

        tidy(() => {
          const pixels = g.get("pixel_values");
          const inputIds = tensor([idsFor(model, golden, goldIds)], { dtype: "int64" });
          const feats = noGrad(() => model.encodeImages(pixels));
          const fe = diff(feats, g.get("image_features")).relToScale;
          record("image_features rel", fe);
          assert.ok(fe <= TOL.features, `image_features rel error ${fe}`);
          const sel = noGrad(() => model.selectedFeatures(pixels));
          assert.deepEqual(sel.shape, g.get("vision_selected").shape, "select strategy keeps the right tokens");
          const { logits } = noGrad(() => model.forward({ inputIds, pixelValues: pixels }));
          const le = diff(logits, g.get("logits")).relToScale;
          record("logits rel (float64)", le);
          assert.ok(le <= TOL.logits64, `logits rel error ${le}${vmlHint()}`);

          // batch with right padding: non-pad positions
          const bIds = rows(g.get("batch_input_ids")).map((r) => idsFor(model, golden, r));
          const bMask = rows(g.get("batch_attention_mask"));
          const maskFor = bIds.map((_r, b) => {
            if (model.config.source_format === "llava") return bMask[b] as number[];
            const orig = rows(g.get("batch_input_ids"))[b] as number[];
            const m: number[] = [];
            orig.forEach((id, j) => {
              if (id === golden.image_token_id && orig[j - 1] === golden.image_token_id) return;
              m.push((bMask[b] as number[])[j] as number);
            });
            return m;
          });
          const width = Math.max(...bIds.map((r) => r.length));
          const padded = bIds.map((r) => [...r, ...new Array(width - r.length).fill(0)]);
          const paddedMask = maskFor.map((r) => [...r, ...new Array(width - r.length).fill(0)]);
          const out = noGrad(() =>
            model.forward({
              inputIds: tensor(padded, { dtype: "int64" }),
              attentionMask: tensor(paddedMask, { dtype: "int64" }),
              pixelValues: g.get("batch_pixel_values"),
            }),
          );
          const ref = g.get("batch_logits");
          golden.batch_lengths.forEach((len: number, b: number) => {
            const e = diff(out.logits.select(0, b).narrow(0, 0, len), ref.select(0, b).narrow(0, 0, len)).relToScale;
            record("batch_logits rel (non-pad)", e);
            assert.ok(e <= TOL.logits64, `batch ${b} logits rel error ${e}${vmlHint()}`);
          });

          // greedy, no cache
          const tokens = noGrad(() => greedy(model, idsFor(model, golden, goldIds), pixels, golden.greedy_ids.length));
          assert.deepEqual(tokens, golden.greedy_ids, "greedy tokens");
        });

        // one training step: vision frozen, connector + LLM trained
        tidy(() => {
          model.visionTower.requiresGrad_(false);
          const tIds = rows(g.get("train_input_ids"))[0] as number[];
          const tLab = rows(g.get("train_labels"))[0] as number[];
          const keepIdx = tIds.map(
            (id, j) =>
              model.config.source_format === "llava" ||
              !(id === golden.image_token_id && tIds[j - 1] === golden.image_token_id),
          );
          const ids2 = idsFor(model, golden, tIds);
          const lab2 = tLab.filter((_, j) => keepIdx[j]);
          const { loss } = model.forward({
            inputIds: tensor([ids2], { dtype: "int64" }),
            labels: tensor([lab2], { dtype: "int64" }),
            pixelValues: g.get("pixel_values"),
          });
          const lossV = loss!.item();
          record("train_loss rel", Math.abs(lossV - golden.train_loss) / golden.train_loss);
          assert.ok(
            Math.abs(lossV - golden.train_loss) / golden.train_loss <= TOL.trainLoss,
            `train loss ${lossV} vs ${golden.train_loss}`,
          );
          // the AdamW step itself, from the reference's own gradients: exact
          const params = new Map(model.namedParameters());
          const o = golden.optimizer;
          const stepKeys = g.keys().filter((k) => k.startsWith("after_step."));
          const copies = stepKeys.map((key) => {
            const name = key.slice("after_step.".length);
            const c = params
              .get(canonicalKey(name) ?? "")!
              .detach()
              .clone()
              .requiresGrad_(true);
            c.grad = g.get(`grad.${name}`);
            return c;
          });
          const exact = new AdamW(copies, { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weight_decay });
          exact.step();
          exact.dispose();
          stepKeys.forEach((key, i) => {
            const e = diff(copies[i]!, g.get(key)).relToScale;
            record("after_step rel (reference grads)", e);
            assert.ok(e <= TOL.stepFromReferenceGrads, `${key} from the reference gradients: rel error ${e}`);
          });

          loss!.backward();
          for (const key of g.keys().filter((k) => k.startsWith("grad."))) {
            const internal = canonicalKey(key.slice(5));
            const p = params.get(internal ?? "");
            assert.ok(p, `no parameter for ${key}`);
            const ge = diff(p.grad!, g.get(key)).relToScale;
            record("grad rel", ge);
            assert.ok(ge <= TOL.grads, `${key}: rel error ${ge}`);
          }
          const trainable = model.parameters().filter((p) => p.requiresGrad);
          const opt = new AdamW(trainable, { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weight_decay });
          opt.step();
          for (const key of stepKeys) {
            const p = params.get(canonicalKey(key.slice("after_step.".length)) ?? "")!;
            const ae = diff(p, g.get(key)).relToScale;
            record("after_step rel", ae);
            assert.ok(ae <= TOL.afterStep, `${key}: rel error ${ae}`);
          }
          opt.dispose();
        });

        // float32: logits within 1e-4 absolute
        const m32 = loadTinyLlava(dir, { dtype: "float32" });
        tidy(() => {
          const { logits } = noGrad(() =>
            m32.forward({
              inputIds: tensor([idsFor(m32, golden, goldIds)], { dtype: "int64" }),
              pixelValues: g.get("pixel_values"),
            }),
          );
          const e = diff(logits, g.get("logits")).maxAbs;
          record("logits abs (float32)", e);
          assert.ok(e <= TOL.logits32Abs, `float32 logits abs error ${e}`);
        });
        m32.dispose();
        counts.models++;
      } finally {
        model.dispose();
        g.close();
      }
    });
  }
});

describe("reference parity: tokenizers", () => {
  const dir = join(REFERENCE, "tokenizers");
  const names = existsSync(dir) ? readdirSync(dir).sort() : [];
  for (const name of names) {
    test(name, () => {
      const tok = TinyTokenizer.fromFolder(join(dir, name));
      const golden = JSON.parse(readFileSync(join(dir, name, "golden.json"), "utf8"));
      for (const c of golden) {
        assert.deepEqual(tok.encode(c.text), c.ids, `ids of ${JSON.stringify(c.text)}`);
        assert.deepEqual(tok.encode(c.text, { addSpecialTokens: false }), c.ids_no_special);
        assert.deepEqual(tok.tokens(c.text), c.tokens);
        assert.equal(tok.decode(c.ids), c.decoded);
        assert.equal(tok.decode(c.ids, { skipSpecialTokens: false }), c.decoded_keep_special);
      }
      counts.tokenizers++;
    });
  }
});

describe("reference parity: preprocessing", () => {
  const dir = join(REFERENCE, "preprocess");
  const specs = existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith(".json"))
        .sort()
    : [];
  for (const file of specs) {
    const spec = JSON.parse(readFileSync(join(dir, file), "utf8"));
    const isClip = String(spec.processor).startsWith("CLIP");
    // the processor class's defaults at this size (as transformers builds it)
    const cfg = preprocessorConfig(
      isClip
        ? {
            image_processor_type: spec.processor,
            size: { shortest_edge: spec.size },
            crop_size: { height: spec.size, width: spec.size },
            do_center_crop: true,
          }
        : { image_processor_type: spec.processor, size: { height: spec.size, width: spec.size } },
      null,
    );
    for (const c of spec.cases) {
      test(`${file}: ${c.key}`, async () => {
        const ref = new SafetensorsFile(join(dir, file.replace(/\.json$/, ".safetensors")));
        const proc = new ImageProcessor(cfg, c.aspect === "pad" ? "pad" : "square");
        const px = await proc.preprocess(join(imagesDir, c.image));
        assert.deepEqual(px.shape, c.shape);
        // error in 0–1 pixel units: normalised difference × std
        const err = diff(px, ref.get(c.key)).maxAbs * Math.max(...cfg.std);
        record("preprocess max error (of 1)", err);
        assert.ok(err <= TOL.pixels, `${c.key}: ${err * 255}/255`);
        ref.close();
        counts.preprocess++;
      });
    }
  }
});

describe("reference parity: connectors", () => {
  const dir = join(REFERENCE, "connectors");
  const names = existsSync(dir) ? readdirSync(dir).sort() : [];
  for (const name of names) {
    test(name, () => {
      const golden = JSON.parse(readFileSync(join(dir, name, "golden.json"), "utf8"));
      const cfg = golden.config;
      const weights = new SafetensorsFile(join(dir, name, "connector.safetensors"));
      const g = new SafetensorsFile(join(dir, name, "golden.safetensors"));
      tidy(() => {
        const conn = buildConnector(
          cfg.connector_type,
          {
            visionHidden: cfg.vision_hidden_size,
            hidden: cfg.hidden_size,
            numQueries: cfg.num_queries ?? 0,
            numResamplerLayers: cfg.num_resampler_layers ?? 0,
          },
          { dtype: "float64" },
        );
        const sd = new Map(weights.keys().map((k) => [k.replace(/^connector\./, ""), weights.get(k)]));
        conn.loadStateDict(sd, { source: join(dir, name, "connector.safetensors") });
        const out = conn.forward(g.get("input"));
        const oe = diff(out, g.get("output")).relToScale;
        record("connector output rel", oe);
        assert.ok(oe <= TOL.resampler, `output rel error ${oe}`);
        const loss = out.mul(g.get("loss_weights")).sum();
        assert.ok(Math.abs(loss.item() - golden.loss) / Math.abs(golden.loss) < 1e-9);
        loss.backward();
        const params = new Map(conn.namedParameters());
        for (const key of g.keys().filter((k) => k.startsWith("grad."))) {
          const p = params.get(key.slice("grad.connector.".length));
          assert.ok(p, `no parameter for ${key}`);
          const ge = diff(p.grad!, g.get(key)).relToScale;
          record("connector grad rel", ge);
          assert.ok(ge <= TOL.resamplerGrads, `${key}: rel error ${ge}`);
        }
        conn.dispose();
      });
      weights.close();
      g.close();
      counts.connectors++;
    });
  }
});

describe("slow tokenizer folders (vocab.json + merges.txt)", () => {
  test("reproduce the tokenizer.json goldens", () => {
    const src = join(REFERENCE, "tokenizers", "bytelevel");
    if (!existsSync(src)) return;
    const json = JSON.parse(readFileSync(join(src, "tokenizer.json"), "utf8"));
    const d = mkdtempSync(join(tmpdir(), "tl-tok-"));
    writeFileSync(join(d, "vocab.json"), JSON.stringify(json.model.vocab));
    const merges = (json.model.merges as (string | string[])[]).map((m) => (Array.isArray(m) ? m.join(" ") : m));
    writeFileSync(join(d, "merges.txt"), `#version: 0.2\n${merges.join("\n")}\n`);
    const added = Object.fromEntries(
      (json.added_tokens as { id: number; content: string }[]).map((a) => [a.content, a.id]),
    );
    writeFileSync(join(d, "added_tokens.json"), JSON.stringify(added));
    writeFileSync(join(d, "tokenizer_config.json"), readFileSync(join(src, "tokenizer_config.json")));
    const tok = TinyTokenizer.fromFolder(d);
    for (const c of JSON.parse(readFileSync(join(src, "golden.json"), "utf8"))) {
      assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text));
      assert.equal(tok.decode(c.ids), c.decoded);
    }
  });
});

after(() => {
  const errs = Object.entries(worst)
    .map(([k, v]) => `${k} ${v.toExponential(2)}`)
    .join("; ");
  console.log(`parity: worst errors: ${errs}`);
  console.log(
    `parity: ${counts.models} models, ${counts.tokenizers} tokenizers, ${counts.preprocess} preprocess cases, ${counts.connectors} connector cases checked`,
  );
});
