// Image preprocessing as the reference does it: decode (PNG/JPEG/WebP/GIF first frame, via sharp/libvips), convert
// to RGB as PIL's convert("RGB") (alpha dropped, grey expanded), optional expand2square with the mean colour
// (Factory's image_aspect_ratio "pad"), bicubic resize (transformers 5's torchvision kernel by default, or PIL's; both
// reimplemented exactly: same filter, support, fixed-point coefficients and 8-bit rounding between passes), centre
// crop, rescale, normalise → float32 [3, H, W].
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import sharp, { type Metadata, type OutputInfo } from "sharp";
import { Fields, type Json, type VisionConfig } from "../config/index.js";
import { ConfigError, ImageError } from "../errors.js";
import { tensor } from "../torch/creation.js";
import type { Tensor } from "../torch/tensor.js";

export interface RgbImage {
  width: number;
  height: number;
  /** interleaved RGB bytes, row-major */
  data: Uint8Array;
}

export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711];

/** Largest image accepted (pixels), to refuse decompression bombs before decoding. */
export const MAX_PIXELS = 100_000_000;

/** Decodes an image file or buffer to RGB. Throws ImageError for corrupt, truncated, empty or huge images. */
export async function decodeImage(
  input: string | Buffer,
  name = typeof input === "string" ? input : "image",
): Promise<RgbImage> {
  let bytes: Buffer;
  if (typeof input === "string") {
    if (!existsSync(input)) throw new ImageError(`${name}: file not found`);
    bytes = readFileSync(input);
  } else {
    bytes = input;
  }
  if (bytes.length === 0) throw new ImageError(`${name}: empty file`);
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw new ImageError(`${name}: not a decodable image (${(e as Error).message})`);
  }
  const { width, height } = meta;
  if (!width || !height) throw new ImageError(`${name}: image has no size (${width ?? 0}×${height ?? 0})`);
  if (width * height > MAX_PIXELS) {
    throw new ImageError(`${name}: ${width}×${height} pixels is larger than the ${MAX_PIXELS}-pixel limit`);
  }
  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await sharp(bytes, { limitInputPixels: MAX_PIXELS, failOn: "error", pages: 1 })
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new ImageError(`${name}: could not decode (${(e as Error).message})`);
  }
  const { channels, width: w, height: h } = raw.info;
  const src = raw.data;
  const out = new Uint8Array(w * h * 3);
  for (let i = 0, p = 0; i < w * h; i++, p += channels) {
    if (channels >= 3) {
      out[i * 3] = src[p] as number;
      out[i * 3 + 1] = src[p + 1] as number;
      out[i * 3 + 2] = src[p + 2] as number;
    } else {
      const g = src[p] as number;
      out[i * 3] = g;
      out[i * 3 + 1] = g;
      out[i * 3 + 2] = g;
    }
  }
  return { width: w, height: h, data: out };
}

/** TinyLLaVA's expand2square: centre the image on a square canvas of the background colour. */
export function expandToSquare(img: RgbImage, background: [number, number, number]): RgbImage {
  const { width: w, height: h } = img;
  if (w === h) return img;
  const side = Math.max(w, h);
  const out = new Uint8Array(side * side * 3);
  for (let i = 0; i < side * side; i++) out.set(background, i * 3);
  const x0 = w < h ? Math.floor((side - w) / 2) : 0;
  const y0 = w < h ? 0 : Math.floor((side - h) / 2);
  for (let y = 0; y < h; y++) out.set(img.data.subarray(y * w * 3, (y + 1) * w * 3), ((y + y0) * side + x0) * 3);
  return { width: side, height: side, data: out };
}

// ---- Bicubic resampling (a = −0.5, antialiased: the filter widens by the scale when shrinking) ----
// Two integer implementations of the same separable filter exist and the reference stacks use both:
// - "torchvision": what transformers ≥ 5 runs (its default TorchvisionBackend image processors, e.g.
//   CLIPImageProcessor/SiglipImageProcessor, call torchvision's resize on a uint8 tensor → ATen's
//   _upsample_bicubic2d_aa for uint8, UpSampleKernel.cpp + UpSampleKernelAVXAntialias.h). The float weights are
//   quantised to int16 with a per-pass precision: the largest p ≤ 22 with round(max weight · 2^(p+1)) < 2^15.
//   The reference fixtures (transformers 5.17) are reproduced exactly by this one.
// - "pil": Pillow's ImagingResample (Resample.c; the PilBackend/…ImageProcessorPil of transformers ≥ 5, and the slow
//   image processors of transformers 4.x that TinyLLaVA Factory ran): int32 weights with a fixed
//   PRECISION_BITS = 32 − 8 − 2 = 22.
// The weights before quantisation, the bounds, the pass order (horizontal then vertical, a pass skipped when its size
// is unchanged) and the 8-bit rounding between passes ((Σ pixel·k + 2^(p−1)) >> p, clamped to 0..255) are the same in
// both; the coarser int16 weights round some pixels one level differently (130 of the 61,440 reference values).
// Pillow crops the intermediate image to the rows the vertical pass reads (ybox_first/ybox_last): no numeric effect.
export type BicubicKernel = "torchvision" | "pil";

const PIL_PRECISION_BITS = 32 - 8 - 2;

function bicubic(x: number): number {
  const a = -0.5;
  const ax = Math.abs(x);
  if (ax < 1) return ((a + 2) * ax - (a + 3)) * ax * ax + 1;
  if (ax < 2) return (((ax - 5) * ax + 8) * ax - 4) * a;
  return 0;
}

interface Coeffs {
  bounds: Int32Array; // [first input index, count] per output pixel
  k: Int32Array; // fixed-point coefficients, ksize per output pixel
  ksize: number;
  precision: number; // fractional bits of k
}

/** Pillow's precompute_coeffs (= ATen's _compute_indices_weights_aa with antialias, align_corners=False): normalised
 * float64 weights per output pixel, then quantised as the chosen implementation does. */
function precomputeCoeffs(inSize: number, outSize: number, kernel: BicubicKernel): Coeffs {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const w = new Float64Array(outSize * ksize);
  const ss = 1 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // (int) casts: truncation toward zero
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const v = bicubic((x + xmin - center + 0.5) * ss);
      w[xx * ksize + x] = v;
      ww += v;
    }
    if (ww !== 0) for (let x = 0; x < xmax; x++) w[xx * ksize + x] = (w[xx * ksize + x] as number) / ww;
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  let precision = PIL_PRECISION_BITS;
  if (kernel === "torchvision") {
    // ATen's _compute_indices_int16_weights_aa: the maximum over every weight slot (unused slots are 0)
    let wMax = w[0] as number;
    for (const v of w) if (wMax < v) wMax = v;
    for (precision = 0; precision < 22; precision++) {
      if (Math.trunc(0.5 + wMax * 2 ** (precision + 1)) >= 1 << 15) break;
    }
  }
  const k = new Int32Array(w.length);
  const one = 2 ** precision;
  // (int)(±0.5 + v · 2^p), truncation toward zero; int16 storage in ATen cannot overflow by the choice of p
  for (let i = 0; i < w.length; i++) {
    const v = w[i] as number;
    k[i] = Math.trunc(v < 0 ? -0.5 + v * one : 0.5 + v * one);
  }
  return { bounds, k, ksize, precision };
}

/** One resampling pass along x (horizontal) or y, rounding to 8 bits: (Σ pixel·k + 2^(p−1)) >> p, clamped. Integer
 * sums stay below 2^31 (255 · Σ|k| < 2^31 for both quantisations), so JS doubles hold them exactly. */
function resamplePass(img: RgbImage, outSize: number, horizontal: boolean, kernel: BicubicKernel): RgbImage {
  const { width: w, height: h, data } = img;
  const c = precomputeCoeffs(horizontal ? w : h, outSize, kernel);
  const p = c.precision;
  const half = 2 ** (p - 1);
  const clip8 = (v: number) => {
    const r = v >> p; // arithmetic shift on int32, as the C code
    return r < 0 ? 0 : Math.min(r, 255);
  };
  const outW = horizontal ? outSize : w;
  const outH = horizontal ? h : outSize;
  // pixel (line, pos) sits at line·lineStride + pos·posStride, in the input and in the output
  const lines = horizontal ? h : w;
  const [inLine, inPos] = horizontal ? [w, 1] : [1, w];
  const [outLine, outPos] = horizontal ? [outW, 1] : [1, outW];
  const out = new Uint8Array(outW * outH * 3);
  for (let line = 0; line < lines; line++) {
    for (let o = 0; o < outSize; o++) {
      const min = c.bounds[o * 2] as number;
      const n = c.bounds[o * 2 + 1] as number;
      let s0 = half;
      let s1 = half;
      let s2 = half;
      for (let i = 0; i < n; i++) {
        const kk = c.k[o * c.ksize + i] as number;
        const q = (line * inLine + (i + min) * inPos) * 3;
        s0 += (data[q] as number) * kk;
        s1 += (data[q + 1] as number) * kk;
        s2 += (data[q + 2] as number) * kk;
      }
      const q = (line * outLine + o * outPos) * 3;
      out[q] = clip8(s0);
      out[q + 1] = clip8(s1);
      out[q + 2] = clip8(s2);
    }
  }
  return { width: outW, height: outH, data: out };
}

/** Bicubic resize to outW × outH: horizontal pass then vertical, each skipped when that size is unchanged.
 * `kernel` "torchvision" (default) = transformers ≥ 5's image processors, bit for bit; "pil" = PIL's
 * Image.resize((w, h), BICUBIC) (reducing_gap None), bit for bit. */
export function resizeBicubic(
  img: RgbImage,
  outW: number,
  outH: number,
  kernel: BicubicKernel = "torchvision",
): RgbImage {
  if (!Number.isInteger(outW) || !Number.isInteger(outH) || outW < 1 || outH < 1)
    throw new ImageError(`cannot resize to ${outW}×${outH}`);
  if (kernel !== "torchvision" && kernel !== "pil")
    throw new ImageError(`unknown bicubic kernel "${String(kernel)}" (expected "torchvision" or "pil")`);
  let cur = img;
  if (outW !== cur.width) cur = resamplePass(cur, outW, true, kernel);
  if (outH !== cur.height) cur = resamplePass(cur, outH, false, kernel);
  return cur;
}

export function centerCrop(img: RgbImage, cw: number, ch: number): RgbImage {
  const top = Math.floor((img.height - ch) / 2);
  const left = Math.floor((img.width - cw) / 2);
  const out = new Uint8Array(cw * ch * 3);
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) {
      const sy = y + top;
      const sx = x + left;
      if (sy < 0 || sx < 0 || sy >= img.height || sx >= img.width) continue; // HF pads with zeros
      const s = (sy * img.width + sx) * 3;
      out.set(img.data.subarray(s, s + 3), (y * cw + x) * 3);
    }
  }
  return { width: cw, height: ch, data: out };
}

export interface PreprocessorConfig {
  kind: "siglip" | "clip";
  /** resize target: exact size (SigLIP) or shortest edge (CLIP) */
  size: { height: number; width: number } | { shortest_edge: number };
  crop: { height: number; width: number } | null;
  mean: [number, number, number];
  std: [number, number, number];
  rescaleFactor: number;
  doResize: boolean;
  doNormalize: boolean;
}

function triple(f: Fields, k: string, dflt: number[]): [number, number, number] {
  const v = f.obj[k] ?? dflt;
  const arr = typeof v === "number" ? [v, v, v] : v;
  if (!Array.isArray(arr) || arr.length !== 3 || !arr.every((x) => typeof x === "number")) {
    throw new ConfigError(`${f.where}: field "${k}" is ${JSON.stringify(v)}; expected 3 numbers`);
  }
  return arr as [number, number, number];
}

/** From preprocessor_config.json; when absent, from the vision config (SigLIP: resize to image_size, mean/std 0.5;
 * CLIP: shortest edge + centre crop to image_size, OpenAI mean/std). */
export function preprocessorConfig(
  raw: Json | null,
  vision: VisionConfig | null,
  where = "preprocessor_config.json",
): PreprocessorConfig {
  if (raw) {
    const f = new Fields(raw, where);
    const cls = f.str("image_processor_type", f.str("feature_extractor_type", ""));
    const isClip = cls.startsWith("CLIP") || (f.has("crop_size") && f.bool("do_center_crop", true));
    const sizeRaw = f.obj.size;
    let size: PreprocessorConfig["size"];
    if (typeof sizeRaw === "number") size = isClip ? { shortest_edge: sizeRaw } : { height: sizeRaw, width: sizeRaw };
    else {
      const s = f.obj_("size");
      size = s.has("shortest_edge")
        ? { shortest_edge: s.int("shortest_edge", undefined, { min: 1 }) }
        : { height: s.int("height", undefined, { min: 1 }), width: s.int("width", undefined, { min: 1 }) };
    }
    let crop: PreprocessorConfig["crop"] = null;
    if (f.bool("do_center_crop", isClip) && f.has("crop_size")) {
      const c = f.obj.crop_size;
      crop =
        typeof c === "number"
          ? { height: c, width: c }
          : { height: f.obj_("crop_size").int("height"), width: f.obj_("crop_size").int("width") };
    }
    const resample = f.int("resample", 3);
    if (resample !== 3)
      throw new ConfigError(
        `${where}: resample ${resample} is not supported (only 3 = bicubic, what SigLIP and CLIP use)`,
      );
    return {
      kind: isClip ? "clip" : "siglip",
      size,
      crop,
      mean: triple(f, "image_mean", isClip ? CLIP_MEAN : [0.5, 0.5, 0.5]),
      std: triple(f, "image_std", isClip ? CLIP_STD : [0.5, 0.5, 0.5]),
      rescaleFactor: f.bool("do_rescale", true) ? f.num("rescale_factor", 1 / 255) : 1,
      doResize: f.bool("do_resize", true),
      doNormalize: f.bool("do_normalize", true),
    };
  }
  if (!vision) throw new ConfigError(`${where}: missing, and no vision config to derive the preprocessing from`);
  const s = vision.image_size;
  if (vision.model_type === "clip_vision_model") {
    return {
      kind: "clip",
      size: { shortest_edge: s },
      crop: { height: s, width: s },
      mean: [...CLIP_MEAN] as [number, number, number],
      std: [...CLIP_STD] as [number, number, number],
      rescaleFactor: 1 / 255,
      doResize: true,
      doNormalize: true,
    };
  }
  return {
    kind: "siglip",
    size: { height: s, width: s },
    crop: null,
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
    rescaleFactor: 1 / 255,
    doResize: true,
    doNormalize: true,
  };
}

export class ImageProcessor {
  constructor(
    readonly config: PreprocessorConfig,
    readonly aspect: "square" | "pad" = "square",
  ) {}

  /** Reads preprocessor_config.json from a model folder (or derives it from the vision config). */
  static fromFolder(dir: string, vision: VisionConfig | null, aspect: "square" | "pad" = "square"): ImageProcessor {
    const p = join(dir, "preprocessor_config.json");
    let raw: Json | null = null;
    if (existsSync(p)) {
      try {
        raw = JSON.parse(readFileSync(p, "utf8"));
      } catch (e) {
        throw new ConfigError(`${p}: not valid JSON (${(e as Error).message})`);
      }
    }
    return new ImageProcessor(preprocessorConfig(raw, vision, p), aspect);
  }

  /** RGB image → the resized/cropped RGB image the model sees (before rescale/normalise). */
  transform(img: RgbImage): RgbImage {
    const c = this.config;
    let cur = img;
    if (this.aspect === "pad") {
      cur = expandToSquare(cur, c.mean.map((m) => Math.trunc(m * 255)) as [number, number, number]);
    }
    if (c.doResize) {
      if ("shortest_edge" in c.size) {
        const short = Math.min(cur.width, cur.height);
        const long = Math.max(cur.width, cur.height);
        const newShort = c.size.shortest_edge;
        const newLong = Math.trunc((newShort * long) / short);
        const [w, h] = cur.width <= cur.height ? [newShort, newLong] : [newLong, newShort];
        cur = resizeBicubic(cur, w, h);
      } else {
        cur = resizeBicubic(cur, c.size.width, c.size.height);
      }
    }
    if (c.crop) cur = centerCrop(cur, c.crop.width, c.crop.height);
    return cur;
  }

  /** RGB image → pixel values [3, H, W] float32, rescaled and normalised in float32 as transformers does. */
  toPixelValues(img: RgbImage): Tensor {
    const t = this.transform(img);
    const { width: w, height: h } = t;
    const c = this.config;
    const out = new Float32Array(3 * w * h);
    // transformers 5 fuses rescale + normalise into one normalise with mean/std scaled by 1/rescale_factor (float32
    // tensors: fround(fround(mean) · 255)), so the float32 values match it exactly that way
    const fused = c.doNormalize && Math.abs(c.rescaleFactor * 255 - 1) < 1e-12;
    for (let ch = 0; ch < 3; ch++) {
      const mean = Math.fround(c.mean[ch] as number);
      const std = Math.fround(c.std[ch] as number);
      const mean255 = Math.fround(mean * Math.fround(1 / c.rescaleFactor));
      const std255 = Math.fround(std * Math.fround(1 / c.rescaleFactor));
      for (let i = 0; i < w * h; i++) {
        const x = t.data[i * 3 + ch] as number;
        let v: number;
        if (fused) v = Math.fround(Math.fround(x - mean255) / std255);
        else {
          v = Math.fround(x * c.rescaleFactor);
          if (c.doNormalize) v = Math.fround(Math.fround(v - mean) / std);
        }
        out[ch * w * h + i] = v;
      }
    }
    return tensor(out, { shape: [3, h, w] });
  }

  async preprocess(input: string | Buffer, name?: string): Promise<Tensor> {
    return this.toPixelValues(await decodeImage(input, name));
  }
}
