// Progress of a run on stderr: a bar with rate and ETA on a terminal (cli-progress), otherwise one line every
// `intervalS` seconds and one at the end (logs of batch jobs stay readable). The ETA counts only this run's answers,
// not the resumed ones.
import { SingleBar } from "cli-progress";
import type { RunProgress } from "./run.js";

export interface ProgressReporter {
  update(p: RunProgress): void;
  /** a message that must not be drawn over by the bar */
  log(message: string): void;
  stop(): void;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(r).padStart(2, "0")}s` : `${r}s`;
}

/** One progress line: "label: 120/4455 (2.7%), 3.10 q/s, ETA 23m18s". */
export function progressLine(label: string, p: RunProgress, elapsedS: number): string {
  const fresh = p.done - p.resumed;
  const rate = elapsedS > 0 ? fresh / elapsedS : 0;
  const left = p.total - p.done;
  const pct = p.total > 0 ? ((100 * p.done) / p.total).toFixed(1) : "100.0";
  const eta = left === 0 ? "done" : rate > 0 ? `ETA ${formatDuration(left / rate)}` : "ETA ?";
  return `${label}: ${p.done}/${p.total} (${pct}%), ${rate.toFixed(2)} q/s, ${eta}`;
}

export function progressReporter(
  label: string,
  o: { stream?: NodeJS.WriteStream; tty?: boolean; intervalS?: number } = {},
): ProgressReporter {
  const stream = o.stream ?? process.stderr;
  const tty = o.tty ?? stream.isTTY === true;
  const intervalMs = 1000 * (o.intervalS ?? 30);
  let t0 = 0;
  let last: RunProgress | null = null;
  if (tty) {
    let bar: SingleBar | null = null;
    return {
      update(p) {
        if (!bar) {
          bar = new SingleBar(
            {
              format: `${label} [{bar}] {percentage}% | {value}/{total} | {rate} q/s | ETA {eta_formatted}`,
              stream,
              hideCursor: true,
              etaBuffer: 50,
              fps: 5,
            },
            undefined,
          );
          bar.start(p.total, p.done, { rate: "0.00" });
          t0 = performance.now();
          last = p;
          return;
        }
        const s = (performance.now() - t0) / 1000;
        bar.update(p.done, { rate: s > 0 ? ((p.done - p.resumed) / s).toFixed(2) : "0.00" });
        last = p;
      },
      log(message) {
        if (bar) stream.write("\n");
        stream.write(`${message}\n`);
      },
      stop() {
        if (!bar) return;
        bar.stop();
        bar = null;
        if (last) stream.write(`${progressLine(label, last, (performance.now() - t0) / 1000)}\n`);
      },
    };
  }
  let lastPrint = 0;
  return {
    update(p) {
      const now = performance.now();
      if (!last) {
        t0 = now;
        lastPrint = now;
        stream.write(`${progressLine(label, p, 0)}\n`);
      } else if (now - lastPrint >= intervalMs) {
        lastPrint = now;
        stream.write(`${progressLine(label, p, (now - t0) / 1000)}\n`);
      }
      last = p;
    },
    log(message) {
      stream.write(`${message}\n`);
    },
    stop() {
      if (last && last.done > last.resumed)
        stream.write(`${progressLine(label, last, (performance.now() - t0) / 1000)}\n`);
      last = null;
    },
  };
}
