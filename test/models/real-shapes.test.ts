// The released TinyLLaVA shapes: SigLIP-so400m/384 (patch 14 → 27×27 = 729 patches, HF's floor division), CLIP with a
// size that is not a multiple of the patch, Gemma's √hidden normalizer as transformers rounds it.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  Fields,
  parseTextConfig,
  parseTinyLlavaConfig,
  parseVisionConfig,
  patchesPerSide,
} from "../../src/config/index.js";
import { buildGemma } from "../../src/models/llm/gemma.js";
import { PRESETS, presetConfig, SIGLIP_SO400M_384 } from "../../src/models/presets.js";
import { TinyLlava } from "../../src/models/tinyllava.js";
import { ClipVisionTower } from "../../src/models/vision/clip.js";
import { SiglipVisionTower } from "../../src/models/vision/siglip.js";
import { noGrad, randn, tidy } from "../../src/torch/index.js";

test("SigLIP-so400m-patch14-384 parses: 729 patches; a 384×384 image gives 729 tokens (728 after `patch`)", () => {
  const cfg = parseVisionConfig(new Fields(structuredClone(SIGLIP_SO400M_384), "vision_config"));
  assert.equal(patchesPerSide(cfg), 27);
  // the real geometry with a narrow, shallow encoder (the weights' size does not change the arithmetic)
  const small = { ...cfg, hidden_size: 32, intermediate_size: 64, num_attention_heads: 4, num_hidden_layers: 2 };
  const tower = new SiglipVisionTower(small, "float32");
  tidy(() =>
    noGrad(() => {
      const h = tower.hiddenState(randn([1, 3, 384, 384]), 1);
      assert.deepEqual(h.shape, [1, 729, 32]);
    }),
  );
  tower.dispose();
  for (const name of Object.keys(PRESETS)) {
    const c = presetConfig(name);
    assert.equal(c.vision.image_size, 384);
    assert.equal(c.vision.patch_size, 14);
  }
});

test("the released preset configs build a TinyLLaVA whose image takes 728 positions", () => {
  const c = presetConfig("qwen2-0.5b-siglip");
  const raw = structuredClone(c.raw) as Record<string, unknown>;
  const v = raw.vision_config as Record<string, unknown>;
  const t = raw.text_config as Record<string, unknown>;
  Object.assign(v, { hidden_size: 32, intermediate_size: 64, num_attention_heads: 4, num_hidden_layers: 2 });
  Object.assign(t, {
    hidden_size: 32,
    intermediate_size: 64,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    num_hidden_layers: 1,
    vocab_size: 64,
  });
  const model = new TinyLlava(parseTinyLlavaConfig(raw), "float32");
  tidy(() => noGrad(() => assert.deepEqual(model.encodeImages(randn([1, 3, 384, 384])).shape, [1, 728, 32])));
  model.dispose();
});

test("CLIP: image 230, patch 14 → 16×16 patches + class token (floor division)", () => {
  const cfg = parseVisionConfig(
    new Fields(
      {
        model_type: "clip_vision_model",
        hidden_size: 16,
        intermediate_size: 32,
        num_attention_heads: 2,
        num_hidden_layers: 1,
        image_size: 230,
        patch_size: 14,
      },
      "vision_config",
    ),
  );
  assert.equal(patchesPerSide(cfg), 16);
  const tower = new ClipVisionTower(cfg, "float32");
  tidy(() => noGrad(() => assert.deepEqual(tower.hiddenState(randn([2, 3, 230, 230]), 1).shape, [2, 257, 16])));
  tower.dispose();
  assert.throws(
    () =>
      parseVisionConfig(
        new Fields(
          {
            model_type: "clip_vision_model",
            hidden_size: 16,
            num_attention_heads: 2,
            num_hidden_layers: 1,
            image_size: 10,
            patch_size: 14,
          },
          "vision_config",
        ),
      ),
    /patch_size 14 is larger than image_size 10/,
  );
});

test("Gemma's normalizer: √hidden rounded to float32, then to the model dtype (as transformers' buffer)", () => {
  const text = (hidden: number) =>
    parseTextConfig(
      new Fields(
        {
          model_type: "gemma",
          vocab_size: 10,
          hidden_size: hidden,
          intermediate_size: 8,
          num_hidden_layers: 1,
          num_attention_heads: 2,
          num_key_value_heads: 1,
          head_dim: 8,
        },
        "text_config",
      ),
    );
  const scale = (hidden: number, dtype: "float64" | "float32" | "bfloat16") => {
    const lm = buildGemma(text(hidden), { dtype });
    const s = lm.embedScale;
    lm.dispose();
    return s;
  };
  assert.equal(scale(96, "float64"), Math.fround(Math.sqrt(96)));
  assert.notEqual(scale(96, "float64"), Math.sqrt(96)); // √96 is not exact in float32: the float64 root would differ
  assert.equal(scale(96, "float32"), Math.fround(Math.sqrt(96)));
  assert.equal(scale(96, "bfloat16"), 9.8125); // bf16(9.797959…) : 8 mantissa bits
  assert.equal(scale(64, "float64"), 8);
});
