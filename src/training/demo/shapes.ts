// Pictures of coloured shapes for the demo: 1–3 shapes, each in its own cell of a 3 × 3 grid (only the five cells
// with a one-word name: top, left, center, right, bottom), on a plain light background, rasterised with 4 × 4
// supersampling straight into RGB bytes. Everything is drawn from a seeded generator, so a seed gives the same scenes
// and the same bytes on every machine (plain float64 arithmetic, no platform maths beyond + − × ÷ and comparisons).
//
// Why this geometry: with patch_size = imageSize / 3 (16 px patches on 48 px pictures) every shape lies inside one
// vision patch, so the tower sees 9 tokens (8 after Factory's `patch` strategy drops the first — the top-left corner,
// which never holds a shape) and a shape's colour, form and place are all readable from a single token. That keeps
// the LLM's sequences short and the whole two-stage demo trainable in minutes on two CPU cores.
import sharp from "sharp";
import type { RgbImage } from "../../processing/image.js";
import type { Rng } from "../data/sampler.js";

export const COLORS = {
  red: [220, 38, 38],
  green: [34, 160, 60],
  blue: [37, 99, 235],
  yellow: [235, 200, 20],
  purple: [140, 60, 200],
  orange: [245, 130, 20],
} as const satisfies Record<string, readonly [number, number, number]>;
export type ColorName = keyof typeof COLORS;
export const COLOR_NAMES = Object.keys(COLORS) as ColorName[];

export const SHAPE_NAMES = ["circle", "square", "triangle", "cross"] as const;
export type ShapeName = (typeof SHAPE_NAMES)[number];
/** The shapes a default scene uses (the cross is available through SceneOptions.shapes). */
export const DEFAULT_SHAPES: readonly ShapeName[] = ["circle", "square", "triangle"];

/** The five one-word places and their grid cell [column, row] in the 3 × 3 grid. */
export const POSITIONS = {
  top: [1, 0],
  left: [0, 1],
  center: [1, 1],
  right: [2, 1],
  bottom: [1, 2],
} as const satisfies Record<string, readonly [number, number]>;
export type PositionName = keyof typeof POSITIONS;
export const POSITION_NAMES = Object.keys(POSITIONS) as PositionName[];

/** Mid grey, which SigLIP's normalisation ((x/255 − 0.5)/0.5) maps to ≈ 0: an empty patch then embeds to the conv
 * bias alone, so the vision tokens carry their position and their shape's colour and form with nothing constant on
 * top. Every palette colour differs from it by ≥ 70 in some channel. */
export const BACKGROUND: readonly [number, number, number] = [128, 128, 128];

export interface SceneObject {
  shape: ShapeName;
  color: ColorName;
  position: PositionName;
  /** centre in pixels (continuous coordinates: pixel (x, y) covers [x, x+1) × [y, y+1)) */
  cx: number;
  cy: number;
  /** half the shape's extent in pixels (circle radius; square, triangle and cross reach cx ± r) */
  r: number;
}

export interface Scene {
  size: number;
  background: readonly [number, number, number];
  /** no two objects share a position, nor the same (colour, shape) pair */
  objects: SceneObject[];
}

export interface SceneOptions {
  /** picture side in pixels, a multiple of 3 (default 48) */
  imageSize?: number;
  minShapes?: number;
  maxShapes?: number;
  shapes?: readonly ShapeName[];
  colors?: readonly ColorName[];
  /** background colour (default BACKGROUND) */
  background?: readonly [number, number, number];
  /** range of a shape's half-extent as a fraction of the cell side (default [0.36, 0.42]) */
  sizeRange?: readonly [number, number];
  /** largest shift of a shape's centre from its cell's centre, in pixels (default 1.5; always kept 1 px inside the
   * cell) */
  jitter?: number;
}

export interface ResolvedSceneOptions {
  imageSize: number;
  minShapes: number;
  maxShapes: number;
  shapes: readonly ShapeName[];
  colors: readonly ColorName[];
  background: readonly [number, number, number];
  sizeRange: readonly [number, number];
  jitter: number;
}

export function resolveSceneOptions(o: SceneOptions = {}): ResolvedSceneOptions {
  const r = {
    imageSize: o.imageSize ?? 48,
    minShapes: o.minShapes ?? 1,
    maxShapes: o.maxShapes ?? 3,
    shapes: o.shapes ?? DEFAULT_SHAPES,
    colors: o.colors ?? COLOR_NAMES,
    background: o.background ?? BACKGROUND,
    sizeRange: o.sizeRange ?? ([0.36, 0.42] as const),
    jitter: o.jitter ?? 1.5,
  };
  if (!Number.isInteger(r.imageSize) || r.imageSize < 12 || r.imageSize % 3 !== 0)
    throw new RangeError(`scene: imageSize must be a multiple of 3 and ≥ 12, got ${r.imageSize}`);
  if (!Number.isInteger(r.minShapes) || !Number.isInteger(r.maxShapes) || r.minShapes < 1 || r.maxShapes < r.minShapes)
    throw new RangeError(`scene: need 1 ≤ minShapes ≤ maxShapes, got ${r.minShapes}..${r.maxShapes}`);
  if (r.maxShapes > POSITION_NAMES.length)
    throw new RangeError(`scene: at most ${POSITION_NAMES.length} shapes fit (one per position), got ${r.maxShapes}`);
  for (const s of r.shapes)
    if (!(SHAPE_NAMES as readonly string[]).includes(s))
      throw new RangeError(`scene: unknown shape "${s}"; known: ${SHAPE_NAMES.join(", ")}`);
  for (const c of r.colors)
    if (!(c in COLORS)) throw new RangeError(`scene: unknown colour "${c}"; known: ${COLOR_NAMES.join(", ")}`);
  if (r.background.length !== 3 || r.background.some((v) => !Number.isInteger(v) || v < 0 || v > 255))
    throw new RangeError(`scene: background must be three integers 0–255, got ${JSON.stringify(r.background)}`);
  const [lo, hi] = r.sizeRange;
  if (!(lo > 0 && lo <= hi && hi <= 0.45))
    throw new RangeError(`scene: sizeRange must satisfy 0 < min ≤ max ≤ 0.45, got ${JSON.stringify(r.sizeRange)}`);
  if (!(r.jitter >= 0)) throw new RangeError(`scene: jitter must be ≥ 0, got ${r.jitter}`);
  if (new Set(r.shapes).size !== r.shapes.length || new Set(r.colors).size !== r.colors.length)
    throw new RangeError("scene: shapes and colors must not repeat");
  if (r.shapes.length * r.colors.length < r.maxShapes)
    throw new RangeError(
      `scene: ${r.shapes.length} shapes × ${r.colors.length} colours cannot give ${r.maxShapes} distinct objects`,
    );
  return r;
}

/** Uniform float in [0, 1) with 32 random bits. */
export function uniform(rng: Rng): number {
  return rng.nextUint32() / 2 ** 32;
}

export function pick<T>(rng: Rng, items: readonly T[]): T {
  if (items.length === 0) throw new RangeError("pick: no items");
  return items[rng.below(items.length)] as T;
}

/** A random scene: the number of shapes, distinct positions, distinct (colour, shape) pairs, and per shape a size
 * (half-extent, sizeRange of a cell) and a centre jittered by up to `jitter` px, the shape staying 1 px inside its
 * cell. */
export function randomScene(rng: Rng, opts: SceneOptions = {}): Scene {
  const o = resolveSceneOptions(opts);
  const cell = o.imageSize / 3;
  const [lo, hi] = o.sizeRange;
  const n = o.minShapes + rng.below(o.maxShapes - o.minShapes + 1);
  const places = rng.permutation(POSITION_NAMES.length).slice(0, n);
  const used = new Set<string>();
  const objects: SceneObject[] = [];
  for (const p of places) {
    let shape: ShapeName;
    let color: ColorName;
    do {
      shape = pick(rng, o.shapes);
      color = pick(rng, o.colors);
    } while (used.has(`${color} ${shape}`));
    used.add(`${color} ${shape}`);
    const position = POSITION_NAMES[p] as PositionName;
    const [col, row] = POSITIONS[position];
    const r = cell * (lo + (hi - lo) * uniform(rng));
    const slack = Math.max(0, Math.min(o.jitter, cell / 2 - r - 1));
    const cx = (col + 0.5) * cell + (2 * uniform(rng) - 1) * slack;
    const cy = (row + 0.5) * cell + (2 * uniform(rng) - 1) * slack;
    objects.push({ shape, color, position, cx, cy, r });
  }
  return { size: o.imageSize, background: [...o.background] as [number, number, number], objects };
}

/** A canonical description of what a scene shows (positions, colours, shapes; not the jitter): two scenes with the
 * same key are the same picture up to a pixel or two. Used to keep the eval scenes out of the training set. */
export function sceneKey(scene: Scene): string {
  return scene.objects
    .map((o) => `${o.position}:${o.color}:${o.shape}`)
    .sort()
    .join(",");
}

/** Is the point (x, y) inside the object? (x, y in pixels) */
export function insideShape(o: SceneObject, x: number, y: number): boolean {
  const dx = x - o.cx;
  const dy = y - o.cy;
  const r = o.r;
  switch (o.shape) {
    case "circle":
      return dx * dx + dy * dy <= r * r;
    case "square":
      // the circle's whole box: the shapes differ in area (square 4 r², circle 3.1 r², triangle 1.8 r²) as well as in
      // outline, which a 2-layer tower learns within the demo's minutes (with the square shrunk to the circle's area
      // it stayed at chance on shape questions after 2,300 steps)
      return Math.abs(dx) <= r && Math.abs(dy) <= r;
    case "triangle": {
      // apex up at (0, −r), base from (−r, 0.8r) to (r, 0.8r)
      const base = 0.8 * r;
      if (dy > base || dy < -r) return false;
      const halfWidth = (r * (dy + r)) / (base + r);
      return Math.abs(dx) <= halfWidth;
    }
    case "cross": {
      const t = 0.34 * r;
      return (Math.abs(dx) <= t && Math.abs(dy) <= r) || (Math.abs(dy) <= t && Math.abs(dx) <= r);
    }
  }
}

const SUPERSAMPLE = 4;

/** Draws the scene into RGB bytes: per pixel the covered fraction of 4 × 4 sample points blends the shape's colour
 * over the background (shapes never overlap: each stays inside its own cell). */
export function renderScene(scene: Scene): RgbImage {
  const S = scene.size;
  const data = new Uint8Array(S * S * 3);
  for (let i = 0; i < S * S; i++) data.set(scene.background, i * 3);
  const n2 = SUPERSAMPLE * SUPERSAMPLE;
  for (const o of scene.objects) {
    const color = COLORS[o.color];
    const x0 = Math.max(0, Math.floor(o.cx - o.r - 1));
    const x1 = Math.min(S - 1, Math.ceil(o.cx + o.r + 1));
    const y0 = Math.max(0, Math.floor(o.cy - o.r - 1));
    const y1 = Math.min(S - 1, Math.ceil(o.cy + o.r + 1));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        let hits = 0;
        for (let sy = 0; sy < SUPERSAMPLE; sy++)
          for (let sx = 0; sx < SUPERSAMPLE; sx++)
            if (insideShape(o, x + (sx + 0.5) / SUPERSAMPLE, y + (sy + 0.5) / SUPERSAMPLE)) hits++;
        if (hits === 0) continue;
        const a = hits / n2;
        const q = (y * S + x) * 3;
        for (let c = 0; c < 3; c++) {
          const bg = data[q + c] as number;
          data[q + c] = Math.round(bg + a * ((color[c] as number) - bg));
        }
      }
    }
  }
  return { width: S, height: S, data };
}

/** PNG bytes of an RGB image (lossless; sharp's encoder is deterministic for fixed options). */
export async function encodePng(img: RgbImage): Promise<Buffer> {
  return sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  })
    .png({ compressionLevel: 9, adaptiveFiltering: false, palette: false })
    .toBuffer();
}
