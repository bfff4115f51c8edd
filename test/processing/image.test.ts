// Bicubic resizing, bit for bit: the torchvision kernel against the reference fixtures (transformers 5.17's image
// processors), the PIL kernel against Pillow itself.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  decodeImage,
  ImageProcessor,
  type PreprocessorConfig,
  preprocessorConfig,
  resizeBicubic,
} from "../../src/processing/image.js";
import { SafetensorsFile } from "../../src/torch/index.js";
import { byteDiff, REFERENCE, uint8FromPixelValues } from "../helpers.js";

const PRE = join(REFERENCE, "preprocess");
const IMAGES = join(REFERENCE, "images");

interface Case {
  image: string;
  aspect: string;
  key: string;
  shape: number[];
}

function specs(): { file: string; cfg: PreprocessorConfig; cases: Case[] }[] {
  return ["clip_32.json", "siglip_32.json"].map((file) => {
    const spec = JSON.parse(readFileSync(join(PRE, file), "utf8"));
    const isClip = String(spec.processor).startsWith("CLIP");
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
    return { file, cfg, cases: spec.cases as Case[] };
  });
}

/** transformers 5's TorchvisionBackend normalisation, fused with the rescale: (x − mean·255) / (std·255) in float32,
 * with mean and std float32 tensors scaled by 1/rescale_factor (= 255). */
function fusedNormalise(bytes: Uint8Array, cfg: PreprocessorConfig, h: number, w: number): Float32Array {
  const out = new Float32Array(3 * h * w);
  for (let c = 0; c < 3; c++) {
    const m = Math.fround(Math.fround(cfg.mean[c] as number) * 255);
    const s = Math.fround(Math.fround(cfg.std[c] as number) * 255);
    for (let i = 0; i < h * w; i++) out[c * h * w + i] = Math.fround((bytes[i * 3 + c] as number) - m) / s;
  }
  return out;
}

describe("bicubic: the reference fixtures (transformers 5.17, torchvision kernel)", () => {
  test("every preprocessing case: the 8-bit image is identical (0 of 61,440 values differ)", async () => {
    let values = 0;
    let differ = 0;
    for (const { file, cfg, cases } of specs()) {
      const ref = new SafetensorsFile(join(PRE, file.replace(/\.json$/, ".safetensors")));
      try {
        for (const c of cases) {
          const [, h, w] = c.shape as [number, number, number];
          const want = uint8FromPixelValues(ref.get(c.key), cfg.mean, cfg.std, h, w);
          const proc = new ImageProcessor(cfg, c.aspect === "pad" ? "pad" : "square");
          const img = await decodeImage(join(IMAGES, c.image));
          const got = proc.transform(img);
          assert.deepEqual([got.height, got.width], [h, w], c.key);
          const d = byteDiff(got.data, want).differ;
          assert.equal(d, 0, `${file} ${c.key}: ${d} of ${want.length} 8-bit values differ`);
          // the fused float normalisation then reproduces the reference's float32 values exactly
          const px = fusedNormalise(got.data, cfg, h, w);
          const refPx = ref.get(c.key).toArray();
          px.forEach((v, i) => {
            assert.equal(v, refPx[i], `${c.key} float value ${i}`);
          });
          // ImageProcessor's own float path (rescale, then normalise: not fused) stays within 2.4e-7 of it
          const ours = (await proc.preprocess(join(IMAGES, c.image))).toArray();
          ours.forEach((v, i) => {
            assert.ok(Math.abs(v - (refPx[i] as number)) <= 0, `${c.key} pixel value ${i}: ${v}`);
          });
          values += want.length;
          differ += d;
        }
      } finally {
        ref.close();
      }
    }
    assert.equal(values, 61_440, "20 cases of 3×32×32");
    assert.equal(differ, 0);
  });
});

// SHA-256 (first 16 hex digits) of Pillow 9.4.0's Image.open(f).convert("RGB").resize((w, h), Image.BICUBIC).tobytes(),
// made with Debian's python3-pil: upscales and downscales along each axis, odd factors, one-pass and two-pass cases.
const SIZES: [number, number][] = [
  [32, 32],
  [49, 32],
  [32, 87],
  [17, 5],
  [90, 200],
  [7, 64],
];
const PILLOW: Record<string, string[]> = {
  "gradient_70x45.png": [
    "eba417b7d5d0ae36",
    "a8b90f0e638ed5f4",
    "cf6bf0480eb31797",
    "999169ef0e2e8957",
    "a05288e50a647255",
    "242ada85bfc2cc33",
  ],
  "gray_50x50.png": [
    "1345262797156382",
    "5e7c1235597f42ad",
    "4c8a03a7e4c76c20",
    "d6e18fbba682217e",
    "72fef760b2a0bcb0",
    "92826791e53cd7ba",
  ],
  "noise_33x90.png": [
    "732867a381144bf7",
    "6d1cf24788c16a9f",
    "014371dcfc649ff0",
    "d3244590ecceeec1",
    "f6e599167a48b55d",
    "92244e55fa340aa2",
  ],
  "rgba_24x20.png": [
    "acdc272e0a063303",
    "bcbc00d10abf0877",
    "2451c52cc65e7cf2",
    "1c6bf59045ceba1b",
    "bc3a7815477200d7",
    "14f0414c7397c11c",
  ],
  "shapes_64x64.png": [
    "7983f1e2988626aa",
    "2d5c988edfb2b1f9",
    "868b64d21fb1e607",
    "778cded3656f0b19",
    "cc783c00f48cf7e7",
    "5f9218a2b7296f5a",
  ],
};

describe("bicubic: the PIL kernel is Pillow's ImagingResample", () => {
  test("identical bytes to Pillow 9.4 on 30 resizes; the torchvision kernel differs from it", async () => {
    let torchDiffers = 0;
    for (const [file, hashes] of Object.entries(PILLOW)) {
      const img = await decodeImage(join(IMAGES, file));
      SIZES.forEach(([w, h], i) => {
        const pil = resizeBicubic(img, w, h, "pil");
        const digest = createHash("sha256").update(pil.data).digest("hex").slice(0, 16);
        assert.equal(digest, hashes[i], `${file} → ${w}×${h}`);
        const tv = resizeBicubic(img, w, h);
        if (createHash("sha256").update(tv.data).digest("hex").slice(0, 16) !== digest) torchDiffers++;
      });
    }
    assert.ok(torchDiffers > 0, "the two kernels round differently somewhere");
  });

  test("same size is a no-op; bad sizes and kernels are refused", async () => {
    const img = await decodeImage(join(IMAGES, "rgba_24x20.png"));
    assert.equal(resizeBicubic(img, 24, 20), img);
    assert.throws(() => resizeBicubic(img, 0, 5), /cannot resize to 0×5/);
    assert.throws(() => resizeBicubic(img, 2.5, 5), /cannot resize to 2.5×5/);
    assert.throws(() => resizeBicubic(img, 5, 5, "lanczos" as never), /unknown bicubic kernel "lanczos"/);
  });
});
