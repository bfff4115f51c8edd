// An image of a request → checked bytes, before the request may queue: base64 decoded strictly, http(s) fetched
// (only when the server allows it) with a byte limit and a timeout, then the header read with sharp's metadata (a
// decompression bomb is refused by its declared size before any pixel is decoded) and the image decoded once with the
// options the model's preprocessing uses (src/processing/image.ts decodeImage), so that a truncated or corrupt file is
// refused here with a 400 — not later inside a batch, where it would fail the other requests.
import sharp, { type Metadata } from "sharp";
import { MAX_PIXELS } from "../processing/image.js";
import { ApiError, badParam } from "./errors.js";
import type { ImageRef } from "./protocol.js";

export interface ImageLimits {
  /** most bytes of an encoded image */
  maxBytes: number;
  /** most pixels (width × height) of an image */
  maxPixels: number;
  /** fetch http(s) image URLs (off by default) */
  allowRemote: boolean;
  /** timeout of a remote fetch in ms */
  fetchTimeoutMs: number;
}

export const DEFAULT_IMAGE_LIMITS: ImageLimits = {
  maxBytes: 20 * 2 ** 20,
  maxPixels: 50_000_000,
  allowRemote: false,
  fetchTimeoutMs: 10_000,
};

/** The formats the preprocessing decodes (sharp knows more — SVG, TIFF, HEIF … — which are refused). */
const FORMATS = new Set(["png", "jpeg", "webp", "gif"]);

const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

function tooLarge(param: string, message: string): ApiError {
  return badParam(param, message, "image_too_large");
}

function decodeBase64(data: string, param: string, maxBytes: number): Buffer {
  const s = data.replace(/\s+/g, "");
  if (s.length === 0) throw badParam(param, "The image data is empty.", "invalid_image");
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(s))
    throw badParam(param, "The image is not valid base64 (expected a data: URL or a base64 string).", "invalid_image");
  // the decoded size from the text length, before decoding anything
  const bytes = Math.floor((s.replace(/=+$/, "").length * 3) / 4);
  if (bytes > maxBytes) throw tooLarge(param, `The image is ${mb(bytes)}; the limit is ${mb(maxBytes)}.`);
  return Buffer.from(s, s.includes("-") || s.includes("_") ? "base64url" : "base64");
}

async function fetchImage(url: string, param: string, limits: ImageLimits, signal?: AbortSignal): Promise<Buffer> {
  if (!limits.allowRemote)
    throw badParam(
      param,
      "Remote image URLs are disabled on this server (start it with --allow-remote-images); send the image as a data: URL.",
      "remote_images_disabled",
    );
  const timeout = AbortSignal.timeout(limits.fetchTimeoutMs);
  const sig = signal ? AbortSignal.any([signal, timeout]) : timeout;
  const failed = (why: string) => badParam(param, `Could not fetch the image ${url}: ${why}.`, "image_fetch_failed");
  let res: Response;
  try {
    res = await fetch(url, { signal: sig, redirect: "follow" });
  } catch (e) {
    throw failed(timeout.aborted ? `no answer within ${limits.fetchTimeoutMs} ms` : (e as Error).message);
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw failed(`HTTP ${res.status}`);
  }
  const declared = Number(res.headers.get("content-length") ?? Number.NaN);
  if (declared > limits.maxBytes) {
    await res.body?.cancel();
    throw tooLarge(param, `The image at ${url} is ${mb(declared)}; the limit is ${mb(limits.maxBytes)}.`);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for await (const chunk of res.body ?? []) {
      total += chunk.byteLength;
      if (total > limits.maxBytes) {
        await res.body?.cancel().catch(() => {});
        throw tooLarge(param, `The image at ${url} is larger than the ${mb(limits.maxBytes)} limit.`);
      }
      chunks.push(chunk);
    }
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw failed(timeout.aborted ? `no complete answer within ${limits.fetchTimeoutMs} ms` : (e as Error).message);
  }
  return Buffer.concat(chunks);
}

/** Full decodes hold width × height × channels bytes: at most two at a time, so concurrent uploads stay bounded. */
class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}
const decodes = new Semaphore(2);

export interface CheckedImage {
  bytes: Buffer;
  format: string;
  width: number;
  height: number;
}

/** Checks encoded image bytes: a supported format, within the byte and pixel limits, fully decodable. */
export async function checkImageBytes(bytes: Buffer, param: string, limits: ImageLimits): Promise<CheckedImage> {
  if (bytes.length === 0) throw badParam(param, "The image is empty.", "invalid_image");
  if (bytes.length > limits.maxBytes)
    throw tooLarge(param, `The image is ${mb(bytes.length)}; the limit is ${mb(limits.maxBytes)}.`);
  let meta: Metadata;
  try {
    // the header only: no pixels are decoded here
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw badParam(
      param,
      `The image could not be read: not a supported image (${(e as Error).message}).`,
      "invalid_image",
    );
  }
  const format = meta.format ?? "unknown";
  if (!FORMATS.has(format))
    throw badParam(param, `Unsupported image format '${format}': send PNG, JPEG, WebP or GIF.`, "invalid_image_format");
  const { width, height } = meta;
  if (!width || !height) throw badParam(param, "The image has no size.", "invalid_image");
  const maxPixels = Math.min(limits.maxPixels, MAX_PIXELS);
  if (width * height > maxPixels)
    throw tooLarge(
      param,
      `The image is ${width}×${height} = ${width * height} pixels; the limit is ${maxPixels} pixels.`,
    );
  await decodes.run(async () => {
    try {
      // as decodeImage decodes it: a truncated or corrupt image fails here, not in the model's batch
      await sharp(bytes, { limitInputPixels: maxPixels, failOn: "error", pages: 1 }).raw({ depth: "uchar" }).toBuffer();
    } catch (e) {
      throw badParam(
        param,
        `The image could not be decoded (truncated or corrupt ${format}: ${(e as Error).message}).`,
        "invalid_image",
      );
    }
  });
  return { bytes, format, width, height };
}

/** The request's image → checked bytes. */
export async function resolveImage(ref: ImageRef, limits: ImageLimits, signal?: AbortSignal): Promise<CheckedImage> {
  const bytes =
    ref.kind === "base64"
      ? decodeBase64(ref.data, ref.param, limits.maxBytes)
      : await fetchImage(ref.url, ref.param, limits, signal);
  return checkImageBytes(bytes, ref.param, limits);
}
