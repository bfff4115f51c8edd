// Reference parity: discovers every model, tokenizer, preprocessing and connector case in the fixtures folder (the
// repo copy, or TINYLLAVA_REFERENCE_FIXTURES) and checks it against the PyTorch/transformers goldens. Everything is
// derived from the files; nothing is hard-coded per model. Discovery fails loudly on a missing, empty or incomplete
// fixtures folder, and the last test asserts that every discovered case was checked (then prints the summary line).
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { IMAGE_PLACEHOLDER } from "../../src/config/index.js";
import { canonicalKey } from "../../src/models/checkpoint.js";
import { buildConnector } from "../../src/models/connectors/index.js";
import { loadTinyLlava } from "../../src/models/load.js";
import type { TinyLlava } from "../../src/models/tinyllava.js";
import { decodeImage, ImageProcessor, preprocessorConfig } from "../../src/processing/image.js";
import { TinyTokenizer } from "../../src/processing/tokenizer.js";
import { AdamW, F, noGrad, SafetensorsFile, type Tensor, tensor, tidy, vmlInfo } from "../../src/torch/index.js";
import { byteDiff, diff, REFERENCE, uint8FromPixelValues } from "../helpers.js";
import { discoverFixtures } from "./discover.js";

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
  /** on the 8-bit image before rescale/normalise: none */
  pixelLevels: 0,
  /** normalised float32 values: our rescale-then-normalise vs transformers 5's fused (x − 255·mean) / (255·std) */
  pixelValues: 0,
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

/** Whether HF's vision last_hidden_state has post_layernorm applied (SiglipVisionTransformer: yes;
 * CLIPVisionTransformer: no, it normalises only the pooled CLS token). */
const POST_LAYERNORM_IN_LAST_HIDDEN: Record<string, boolean> = {
  siglip_vision_model: true,
  clip_vision_model: false,
};

const counts = { models: 0, tokenizers: 0, preprocess: 0, connectors: 0, slowTokenizers: 0 };
const worst: Record<string, number> = {};
function record(what: string, v: number): void {
  worst[what] = Math.max(worst[what] ?? 0, v);
}

/** Our preprocessing of `image` vs the reference's pixel values: the 8-bit image identical, then the floats. */
async function checkPixels(proc: ImageProcessor, image: string, want: Tensor, what: string): Promise<void> {
  const img = proc.transform(await decodeImage(image));
  const [h, w] = want.shape.slice(-2) as [number, number];
  assert.deepEqual([img.height, img.width], [h, w], `${what}: image size`);
  const { differ, max } = byteDiff(img.data, uint8FromPixelValues(want, proc.config.mean, proc.config.std, h, w));
  record(`${what} 8-bit values differing`, differ);
  assert.ok(max <= TOL.pixelLevels, `${what}: ${differ} of ${img.data.length} 8-bit values differ (by up to ${max})`);
  const px = await proc.preprocess(image);
  const e = diff(px, want).maxAbs;
  px.dispose();
  record(`${what} pixel values abs`, e);
  assert.ok(e <= TOL.pixelValues, `${what}: normalised pixel values differ by ${e}`);
}

const found = discoverFixtures(REFERENCE);
const modelsDir = join(REFERENCE, "models");
const imagesDir = join(REFERENCE, "images");

test("fixtures: the folder and every case in it are complete", () => {
  assert.ok(
    found.problems.length === 0,
    `incomplete reference fixtures at ${REFERENCE}:\n  ${found.problems.join("\n  ")}`,
  );
});

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
  for (const name of found.models) {
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

        // preprocessing of the example image, as the model's processor and aspect mode say
        const aspect = golden.image_aspect === "pad" ? "pad" : model.config.image_aspect_ratio;
        const proc = ImageProcessor.fromFolder(dir, model.config.vision, aspect);
        checkPixels(proc, join(imagesDir, golden.image), g.get("pixel_values"), "model");

        tidy(() => {
          const pixels = g.get("pixel_values");
          const inputIds = tensor([idsFor(model, golden, goldIds)], { dtype: "int64" });
          const feats = noGrad(() => model.encodeImages(pixels));
          const fe = diff(feats, g.get("image_features")).relToScale;
          record("image_features rel", fe);
          assert.ok(fe <= TOL.features, `image_features rel error ${fe}`);
          const sel = noGrad(() => model.selectedFeatures(pixels));
          const refSel = g.get("vision_selected");
          assert.deepEqual(sel.shape, refSel.shape, "select strategy keeps the right tokens");
          const se = diff(sel, refSel).relToScale;
          record("vision_selected rel", se);
          assert.ok(se <= TOL.features, `vision_selected rel error ${se}`);
          // vision_hidden_last is the tower's hidden_states[-1] (the last encoder layer's output): for SigLIP that is
          // before post_layernorm (0.57 relative from it), for CLIP it is HF's last_hidden_state itself
          const vision = model.config.vision;
          const refLast = g.get("vision_hidden_last");
          const hsLast = noGrad(() => model.visionTower.hiddenState(pixels, vision.num_hidden_layers));
          const he = diff(hsLast, refLast).relToScale;
          record("vision_hidden_last rel", he);
          assert.ok(he <= TOL.features, `vision_hidden_last (hidden_states[-1]) rel error ${he}`);
          // lastHiddenState is HF's last_hidden_state: post_layernorm applied for SigLIP, not for CLIP (there it only
          // normalises the pooled output)
          const postLn = POST_LAYERNORM_IN_LAST_HIDDEN[vision.model_type];
          assert.ok(postLn !== undefined, `no rule for the last hidden state of ${vision.model_type}`);
          const sd = model.visionTower.stateDict();
          const want = postLn
            ? F.layerNorm(
                refLast,
                [vision.hidden_size],
                sd.get("vision_model.post_layernorm.weight"),
                sd.get("vision_model.post_layernorm.bias"),
                vision.layer_norm_eps,
              )
            : refLast;
          const last = noGrad(() => model.visionTower.lastHiddenState(pixels));
          const lle = diff(last, want).relToScale;
          record("last_hidden_state rel", lle);
          assert.ok(lle <= TOL.features, `lastHiddenState rel error ${lle}`);
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
  for (const name of found.tokenizers) {
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
  for (const file of found.preprocess) {
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
        try {
          const proc = new ImageProcessor(cfg, c.aspect === "pad" ? "pad" : "square");
          const want = ref.get(c.key);
          assert.deepEqual(want.shape, c.shape, `${c.key}: shape in the safetensors vs the .json`);
          await checkPixels(proc, join(imagesDir, c.image), want, "preprocess");
        } finally {
          ref.close();
        }
        counts.preprocess++;
      });
    }
  }
});

describe("reference parity: connectors", () => {
  const dir = join(REFERENCE, "connectors");
  for (const name of found.connectors) {
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
  for (const name of found.byteLevelTokenizers) {
    test(`${name}: vocab.json + merges.txt reproduce the tokenizer.json goldens`, () => {
      slowTokenizer(join(REFERENCE, "tokenizers", name));
      counts.slowTokenizers++;
    });
  }
});

function slowTokenizer(src: string): void {
  {
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
  }
}

// Runs last (tests of a file run in order): a case that silently returned early, or a folder that discovery found
// but no test covered, fails here.
test("summary: every discovered case was checked", () => {
  const want = {
    models: found.models.length,
    tokenizers: found.tokenizers.length,
    preprocess: found.preprocessCases,
    connectors: found.connectors.length,
    slowTokenizers: found.byteLevelTokenizers.length,
  };
  assert.deepEqual(counts, want, "cases checked vs cases discovered");
  for (const [what, n] of Object.entries(want)) assert.ok(n >= 1, `no ${what} cases discovered`);
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
