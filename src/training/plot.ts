// The loss curve as a picture next to the checkpoint: an SVG line chart (self-contained), rendered to PNG by sharp
// (libvips' SVG loader), so it opens anywhere without a browser or Python.
import { writeFileSync } from "node:fs";
import sharp from "sharp";

export interface Series {
  name: string;
  points: [number, number][];
  color: string;
}

function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function lineChartSvg(title: string, xLabel: string, yLabel: string, series: Series[]): string {
  const W = 800;
  const H = 480;
  const m = { l: 70, r: 20, t: 40, b: 50 };
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const x0 = Math.min(...xs, 0);
  const x1 = Math.max(...xs, 1);
  let y0 = Math.min(...ys, 0);
  let y1 = Math.max(...ys, 1e-9);
  if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 1, y1 + 1];
  const px = (x: number) => m.l + ((x - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const py = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Arial, sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" font-size="16" text-anchor="middle">${esc(title)}</text>`,
  ];
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${py(t)}" y2="${py(t)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.l - 8}" y="${py(t) + 4}" font-size="11" text-anchor="end">${t}</text>`);
  }
  for (const t of niceTicks(x0, x1)) {
    parts.push(`<line x1="${px(t)}" x2="${px(t)}" y1="${H - m.b}" y2="${H - m.b + 5}" stroke="#333"/>`);
    parts.push(`<text x="${px(t)}" y="${H - m.b + 18}" font-size="11" text-anchor="middle">${t}</text>`);
  }
  parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" stroke="#333"/>`);
  parts.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}" stroke="#333"/>`);
  parts.push(`<text x="${W / 2}" y="${H - 12}" font-size="12" text-anchor="middle">${esc(xLabel)}</text>`);
  parts.push(
    `<text x="18" y="${H / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 18 ${H / 2})">${esc(yLabel)}</text>`,
  );
  series.forEach((s, i) => {
    const pts = s.points.filter(([, y]) => Number.isFinite(y));
    if (pts.length === 0) return;
    const d = pts.map(([x, y], j) => `${j ? "L" : "M"}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" ");
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"/>`);
    parts.push(
      `<text x="${W - m.r - 8}" y="${m.t + 16 + 16 * i}" font-size="12" text-anchor="end" fill="${s.color}">${esc(s.name)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

/** Moving average over `window` points (what a noisy per-step loss is plotted with). */
export function smooth(points: [number, number][], window: number): [number, number][] {
  if (window <= 1) return points;
  const out: [number, number][] = [];
  let sum = 0;
  for (let i = 0; i < points.length; i++) {
    sum += (points[i] as [number, number])[1];
    if (i >= window) sum -= (points[i - window] as [number, number])[1];
    out.push([(points[i] as [number, number])[0], sum / Math.min(i + 1, window)]);
  }
  return out;
}

/** Writes `<base>.svg` and `<base>.png` for a loss history. */
export async function writeLossCurve(base: string, title: string, losses: [number, number][]): Promise<string[]> {
  const series: Series[] = [{ name: "loss", points: losses, color: "#9ab8e0" }];
  if (losses.length > 20)
    series.push({
      name: `moving average (${Math.max(2, Math.round(losses.length / 20))})`,
      points: smooth(losses, Math.max(2, Math.round(losses.length / 20))),
      color: "#1f4e9c",
    });
  const svg = lineChartSvg(title, "step", "loss", series);
  writeFileSync(`${base}.svg`, svg);
  await sharp(Buffer.from(svg)).png().toFile(`${base}.png`);
  return [`${base}.svg`, `${base}.png`];
}
