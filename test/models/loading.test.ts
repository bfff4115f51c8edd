// Checkpoint layouts and loading paths (sharded, Factory component folders, built from parts, dtypes), and the
// clear errors for malformed checkpoints, configs and images.
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { deflateSync } from "node:zlib";
import { IMAGE_PLACEHOLDER } from "../../src/config/index.js";
import { CheckpointError, ConfigError, ImageError } from "../../src/errors.js";
import { loadTinyLlava, tinyLlavaFromParts } from "../../src/models/load.js";
import { decodeImage, ImageProcessor } from "../../src/processing/image.js";
import { promptFor, renderConversation, SYSTEM } from "../../src/processing/templates.js";
import { TinyTokenizer } from "../../src/processing/tokenizer.js";
import {
  loadSafetensors,
  noGrad,
  SafetensorsFile,
  saveSafetensors,
  saveShardedSafetensors,
  type Tensor,
  tensor,
  tidy,
} from "../../src/torch/index.js";
import { diff, REFERENCE } from "../helpers.js";

const M = join(REFERENCE, "models");
const tmp = () => mkdtempSync(join(tmpdir(), "tl-load-"));

function logitsOf(dir: string, dtype: "float32" | "float64" | "bfloat16" = "float64"): Tensor {
  const m = loadTinyLlava(dir, { dtype });
  const g = new SafetensorsFile(join(M, "tinyllava-siglip-qwen2", "golden.safetensors"));
  const ids = (g.get("input_ids").toArray() as number[])
    .filter((x, i, a) => !(x === 3 && a[i - 1] === 3))
    .map((x) => (x === 3 ? IMAGE_PLACEHOLDER : x));
  const out = noGrad(
    () => m.forward({ inputIds: tensor([ids], { dtype: "int64" }), pixelValues: g.get("pixel_values") }).logits,
  );
  g.close();
  return out;
}

describe("loading", () => {
  const src = join(M, "tinyllava-siglip-qwen2");

  test("sharded checkpoints and dtypes", () => {
    tidy(() => {
      const ref = logitsOf(src);
      const d = tmp();
      cpSync(join(src, "config.json"), join(d, "config.json"));
      saveShardedSafetensors(d, loadSafetensors(join(src, "model.safetensors")), 40_000);
      assert.ok(readFileSync(join(d, "model.safetensors.index.json"), "utf8").includes("weight_map"));
      assert.equal(diff(logitsOf(d), ref).maxAbs, 0);
      const bf = logitsOf(src, "bfloat16");
      assert.equal(bf.dtype, "bfloat16");
      assert.ok(diff(bf.to("float64"), ref).relToScale < 0.05);
    });
  });

  test("Factory stage-1 component folders and building from HF parts give the same model", () => {
    tidy(() => {
      const ref = logitsOf(src);
      const cfg = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
      const w = loadSafetensors(join(src, "model.safetensors"));
      const pick = (prefix: string, rename: (k: string) => string) =>
        new Map([...w].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [rename(k.slice(prefix.length)), v]));
      const d = tmp();
      for (const sub of ["language_model", "vision_tower", "connector"]) mkdirSync(join(d, sub));
      writeFileSync(join(d, "config.json"), JSON.stringify(cfg));
      writeFileSync(join(d, "language_model", "config.json"), JSON.stringify(cfg.text_config));
      saveSafetensors(
        join(d, "language_model", "model.safetensors"),
        pick("language_model.", (k) => k),
      );
      writeFileSync(join(d, "vision_tower", "config.json"), JSON.stringify(cfg.vision_config));
      saveSafetensors(
        join(d, "vision_tower", "model.safetensors"),
        pick("vision_tower._vision_tower.", (k) => `_vision_tower.${k}`),
      );
      saveSafetensors(
        join(d, "connector", "model.safetensors"),
        pick("connector.", (k) => k),
      );
      assert.ok(diff(logitsOf(d), ref).maxAbs < 1e-12);

      // parts: an HF LLM folder + an HF vision folder + a new connector
      const llm = join(d, "language_model");
      const vis = tmp();
      writeFileSync(join(vis, "config.json"), JSON.stringify(cfg.vision_config));
      saveSafetensors(
        join(vis, "model.safetensors"),
        pick("vision_tower._vision_tower.", (k) => k),
      );
      const m = tinyLlavaFromParts(llm, vis, { connectorType: "mlp2x_gelu", dtype: "float64" });
      const loaded = loadTinyLlava(src, { dtype: "float64" });
      const ids = tensor([[5, 6, 7, 8]], { dtype: "int64" });
      const a = noGrad(() => m.forward({ inputIds: ids }).logits);
      const b = noGrad(() => loaded.forward({ inputIds: ids }).logits);
      assert.ok(diff(a, b).maxAbs < 1e-12, "LLM weights came from the LLM folder");
      assert.equal(m.config.connector_type, "mlp2x_gelu");
      assert.deepEqual(
        m.encodeImages(tensor(new Float32Array(3 * 32 * 32), { shape: [1, 3, 32, 32] })).shape,
        [1, 15, 64],
      );
      for (const c of ["linear", "mlp3x_gelu", "resampler"]) {
        const mm = tinyLlavaFromParts(llm, vis, {
          connectorType: c,
          dtype: "float32",
          numQueries: 4,
          numResamplerLayers: 1,
        });
        const f = noGrad(() => mm.encodeImages(tensor(new Float32Array(3 * 32 * 32), { shape: [1, 3, 32, 32] })));
        assert.deepEqual(f.shape, [1, c === "resampler" ? 4 : 15, 64], c);
        mm.dispose();
      }
      m.dispose();
      loaded.dispose();
    });
  });
});

describe("splicing", () => {
  test("a batch mixing a sample with an image and one without, right-padded", () => {
    tidy(() => {
      const m = loadTinyLlava(join(M, "tinyllava-siglip-qwen2"), { dtype: "float64" });
      const g = new SafetensorsFile(join(M, "tinyllava-siglip-qwen2", "golden.safetensors"));
      const px = g.get("pixel_values");
      const withImage = [10, 11, IMAGE_PLACEHOLDER, 12, 13];
      const textOnly = [20, 21, 22];
      const batch = noGrad(() =>
        m.forward({
          inputIds: tensor([withImage, [...textOnly, 0, 0]], { dtype: "int64" }),
          attentionMask: tensor(
            [
              [1, 1, 1, 1, 1],
              [1, 1, 1, 0, 0],
            ],
            { dtype: "int64" },
          ),
          pixelValues: px,
        }),
      );
      const T = 15; // 16 patches, first dropped (patch strategy)
      assert.deepEqual(batch.logits.shape, [2, 4 + T, 380]);
      assert.deepEqual(batch.attentionMask.toArray().slice(4 + T, 4 + T + 5), [1, 1, 1, 0, 0]);
      const single = noGrad(() => m.forward({ inputIds: tensor([textOnly], { dtype: "int64" }) }));
      // the attention softmax runs in float32 (as transformers), whose sums depend on the padded row length
      assert.ok(diff(batch.logits.select(0, 1).narrow(0, 0, 3), single.logits.select(0, 0)).relToScale < 1e-6);
      const alone = noGrad(() => m.forward({ inputIds: tensor([withImage], { dtype: "int64" }), pixelValues: px }));
      assert.ok(diff(batch.logits.select(0, 0), alone.logits.select(0, 0)).maxAbs < 1e-12);
      assert.throws(
        () => m.forward({ inputIds: tensor([textOnly], { dtype: "int64" }), pixelValues: px }),
        /1 image\(s\) given but input_ids has no image token/,
      );
      assert.throws(
        () => m.forward({ inputIds: tensor([withImage], { dtype: "int64" }) }),
        /no pixel values were given/,
      );
      g.close();
      m.dispose();
    });
  });

  // Factory's format: each −200 is one image, also in a run of exactly T (the feature rows per image), which the
  // old code took for one already-expanded image
  test("a run of T Factory placeholders is T images, not one expanded image", () => {
    tidy(() => {
      const m = loadTinyLlava(join(M, "tinyllava-siglip-qwen2"), { dtype: "float64" });
      const g = new SafetensorsFile(join(M, "tinyllava-siglip-qwen2", "golden.safetensors"));
      const px = g.get("pixel_values");
      const T = 15;
      const run = Array.from({ length: T }, () => IMAGE_PLACEHOLDER);
      const pixels = px.expand([T, ...(px.shape.slice(1) as number[])]).contiguous();
      const out = noGrad(() =>
        m.forward({ inputIds: tensor([[10, ...run, 11]], { dtype: "int64" }), pixelValues: pixels }),
      );
      assert.deepEqual(out.logits.shape, [1, 2 + T * T, 380]);
      assert.throws(
        () => m.forward({ inputIds: tensor([[10, ...run, 11]], { dtype: "int64" }), pixelValues: px }),
        /more image placeholders than the 1 image\(s\) given/,
      );
      g.close();
      m.dispose();
    });
  });
});

describe("clear errors", () => {
  const src = join(M, "siglip-qwen2");
  function variant(edit: (d: string) => void): string {
    const d = tmp();
    cpSync(src, d, { recursive: true });
    edit(d);
    return d;
  }
  const weights = () => loadSafetensors(join(src, "model.safetensors"));

  test("missing, surplus and mis-shaped weights name the key (and both shapes)", () => {
    tidy(() => {
      const missing = variant((d) => {
        const w = weights();
        w.delete("language_model.model.layers.1.mlp.up_proj.weight");
        saveSafetensors(join(d, "model.safetensors"), w);
      });
      assert.throws(
        () => loadTinyLlava(missing),
        (e: Error) =>
          e instanceof CheckpointError &&
          /missing weights \(1\): language_model.model.layers.1.mlp.up_proj.weight/.test(e.message),
      );
      const surplus = variant((d) => {
        const w = weights();
        w.set("language_model.model.layers.7.extra.weight", tensor([1]));
        saveSafetensors(join(d, "model.safetensors"), w);
      });
      assert.throws(
        () => loadTinyLlava(surplus),
        /unexpected weights \(1\): language_model.model.layers.7.extra.weight/,
      );
      const shaped = variant((d) => {
        const w = weights();
        w.set("multi_modal_projector.linear_1.weight", tensor(new Float32Array(48 * 63), { shape: [63, 48] }));
        saveSafetensors(join(d, "model.safetensors"), w);
      });
      assert.throws(
        () => loadTinyLlava(shaped),
        /shape mismatch for "multi_modal_projector.linear_1.weight": checkpoint has \[63, 48\], model expects \[64, 48\]/,
      );
      const none = variant((d) => rmSync(join(d, "model.safetensors")));
      assert.throws(() => loadTinyLlava(none), /no model.safetensors or model.safetensors.index.json/);
      const pickle = variant((d) => {
        rmSync(join(d, "model.safetensors"));
        writeFileSync(join(d, "pytorch_model.bin"), "x");
      });
      assert.throws(() => loadTinyLlava(pickle), /only PyTorch pickle weights/);
    });
  });

  test("configs: unknown model types, bad fields, bad JSON", () => {
    const cfg = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
    const withCfg = (c: unknown) =>
      variant((d) => writeFileSync(join(d, "config.json"), typeof c === "string" ? c : JSON.stringify(c)));
    assert.throws(
      () => loadTinyLlava(withCfg({ ...cfg, model_type: "blip" })),
      (e: Error) => e instanceof ConfigError && /model_type "blip" is not a TinyLLaVA model/.test(e.message),
    );
    assert.throws(
      () => loadTinyLlava(withCfg({ ...cfg, text_config: { ...cfg.text_config, model_type: "mamba" } })),
      /unknown LLM model_type "mamba"; supported: llama, qwen2, qwen3, phi, gemma, stablelm/,
    );
    assert.throws(
      () => loadTinyLlava(withCfg({ ...cfg, vision_config: { ...cfg.vision_config, model_type: "dinov2" } })),
      /unknown vision model_type "dinov2"/,
    );
    assert.throws(
      () => loadTinyLlava(withCfg({ ...cfg, text_config: { ...cfg.text_config, hidden_size: "64" } })),
      /config.json.text_config: field "hidden_size" is "64"; expected an integer/,
    );
    assert.throws(
      () => loadTinyLlava(withCfg({ ...cfg, text_config: { ...cfg.text_config, num_key_value_heads: 3 } })),
      /must be a multiple of num_key_value_heads \(3\)/,
    );
    assert.throws(
      () => loadTinyLlava(withCfg({ ...cfg, vision_feature_select_strategy: "cls" })),
      /field "vision_feature_select_strategy" is "cls"; expected one of/,
    );
    assert.throws(
      () => loadTinyLlava(withCfg({ ...cfg, model_type: "tinyllava", connector_type: "mlp2x_relu" })),
      /unknown connector_type "mlp2x_relu"/,
    );
    assert.throws(() => loadTinyLlava(withCfg("{oops")), /config.json: not valid JSON/);
  });

  test("images: corrupt, truncated, zero-sized and absurdly large", async () => {
    const d = tmp();
    const png = readFileSync(join(REFERENCE, "images", "shapes_64x64.png"));
    writeFileSync(join(d, "corrupt.png"), Buffer.from("definitely not an image"));
    writeFileSync(join(d, "truncated.png"), png.subarray(0, Math.floor(png.length / 2)));
    writeFileSync(join(d, "empty.png"), Buffer.alloc(0));
    writeFileSync(join(d, "huge.png"), pngHeader(30000, 30000));
    await assert.rejects(
      decodeImage(join(d, "corrupt.png")),
      (e: Error) => e instanceof ImageError && /corrupt.png: not a decodable image/.test(e.message),
    );
    await assert.rejects(
      decodeImage(join(d, "truncated.png")),
      (e: Error) => e instanceof ImageError && /truncated.png: could not decode/.test(e.message),
    );
    await assert.rejects(decodeImage(join(d, "empty.png")), /empty.png: empty file/);
    await assert.rejects(
      decodeImage(join(d, "huge.png")),
      /30000×30000 pixels is larger than the 100000000-pixel limit/,
    );
    await assert.rejects(decodeImage(join(d, "missing.png")), /missing.png: file not found/);
    const before = process.memoryUsage().rss;
    await assert.rejects(decodeImage(join(d, "huge.png")));
    assert.ok(process.memoryUsage().rss - before < 200 * 2 ** 20, "no giant allocation");
    // RGBA and greyscale become RGB; GIF/WebP/JPEG decode through the same path
    const rgba = await decodeImage(join(REFERENCE, "images", "rgba_24x20.png"));
    assert.equal(rgba.data.length, 24 * 20 * 3);
    const gray = await decodeImage(join(REFERENCE, "images", "gray_50x50.png"));
    assert.equal(gray.data[0], gray.data[1]);
    const sharp = (await import("sharp")).default;
    for (const fmt of ["jpeg", "webp", "gif"] as const) {
      const buf = await sharp(png)[fmt]().toBuffer();
      const img = await decodeImage(buf, `shapes.${fmt}`);
      assert.deepEqual([img.width, img.height], [64, 64], fmt);
    }
    const proc = ImageProcessor.fromFolder(join(M, "siglip-qwen2"), null);
    assert.deepEqual((await proc.preprocess(join(REFERENCE, "images", "noise_33x90.png"))).shape, [3, 32, 32]);
  });
});

/** A PNG whose IHDR declares width×height (and an empty, bogus IDAT): a decompression bomb's header. */
function pngHeader(w: number, h: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = (crcTable[(c ^ x) & 0xff] as number) ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.alloc(10))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

describe("templates and prompts", () => {
  test("Factory's templates", () => {
    assert.equal(
      promptFor("phi", "What is it?", { hasImage: true }),
      `${SYSTEM} USER: <image>\nWhat is it? ASSISTANT:`,
    );
    const segs = renderConversation("llama", [
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello" },
      { role: "user", content: "Bye" },
      { role: "assistant", content: "Ciao" },
    ]);
    assert.equal(
      segs.map((s) => s.text).join(""),
      `${SYSTEM} USER: Hi ASSISTANT: Hello</s>USER: Bye ASSISTANT: Ciao</s>`,
    );
    assert.deepEqual(
      segs.filter((s) => s.target).map((s) => s.text),
      ["Hello</s>", "Ciao</s>"],
    );
    assert.equal(
      renderConversation("gemma", [
        { role: "user", content: "q" },
        { role: "assistant", content: "a" },
      ]).at(-1)?.text,
      "a<eos>",
    );
    assert.equal(
      renderConversation("qwen2_instruct", [
        { role: "user", content: "q" },
        { role: "assistant", content: "a" },
      ]).at(-1)?.text,
      "a<|im_end|>",
    );
    assert.equal(
      renderConversation("qwen2_base", [
        { role: "user", content: "q" },
        { role: "assistant", content: "a" },
      ]).at(-1)?.text,
      "a<|endoftext|>",
    );
    assert.equal(
      renderConversation(
        "pretrain",
        [
          { role: "user", content: "" },
          { role: "assistant", content: "A cat." },
        ],
        { hasImage: true },
      )
        .map((s) => s.text)
        .join(""),
      "<image>A cat.\n",
    );
    assert.throws(() => promptFor("vicuna" as never, "q"), /unknown conversation template "vicuna"/);
  });
  test("Factory's image tokenisation keeps one BOS and inserts −200", () => {
    const tok = TinyTokenizer.fromFolder(join(M, "clip-llama"));
    const ids = tok.encodeWithImages("USER: <image>\nWhat?");
    assert.equal(ids[0], tok.bosTokenId);
    assert.equal(ids.filter((x) => x === tok.bosTokenId).length, 1);
    assert.equal(ids.filter((x) => x === IMAGE_PLACEHOLDER).length, 1);
  });
});
