// Serving benchmarks (not timed tests): the server runs in its own process, this one is the clients. Prints JSON lines.
//
//   node --import tsx bench/serve-load.ts [load] [--clients 32] [--rounds 3] [--max-tokens 24]
//     `tinyllava serve` on the tiny reference model; `clients` concurrent streaming requests per round, each checked
//     against the non-streamed answer to the same request at temperature 0; requests/s, p50/p99 latency and time to
//     first token, and the server's RSS before, between and after the rounds (it must stay flat).
//
//   node --import tsx bench/serve-load.ts health [--preset qwen2-0.5b-siglip] [--dtype bfloat16] [--quantize int8]
//       [--max-tokens 16] [--interval-ms 50]
//     A real-shape model with random weights (0.9B parameters for the default preset) behind the server; while one
//     generation runs (vision tower, prefill, decode), GET /health every interval: its latency shows whether the
//     HTTP thread stays free. Also the server's RSS against the weights' bytes.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ModelInfo, WorkerStats } from "../src/serving/jobs.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const FIXTURES = join(ROOT, "test", "fixtures", "reference");
const IMAGES = ["shapes_64x64.png", "gradient_70x45.png", "noise_33x90.png", "gray_50x50.png", "rgba_24x20.png"].map(
  (f) => `data:image/png;base64,${readFileSync(join(FIXTURES, "images", f)).toString("base64")}`,
);

function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}
const intFlag = (name: string, dflt: number) => {
  const v = Number(flag(name, String(dflt)));
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name}: expected an integer ≥ 1`);
  return v;
};

/** VmRSS / VmHWM of a process, in MB. */
function rss(pid: number): { rss: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? Number.NaN) / 1024;
  return { rss: round(kb("VmRSS")), peak: round(kb("VmHWM")) };
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

/** Starts a server process; resolves with its URL once it prints its ready line. */
function startServerProcess(args: string[]): Promise<{ child: ChildProcess; url: string; info: ModelInfo | null }> {
  const child = spawn(process.execPath, ["--import", "tsx", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    let err = "";
    let out = "";
    const info: ModelInfo | null = null;
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /^SERVER (.*)$/m.exec(out);
      if (m) {
        const o = JSON.parse(m[1] as string) as { url: string; info: ModelInfo };
        resolve({ child, url: o.url, info: o.info });
      }
    });
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /web page (http:\/\/[^\s/]+)\//.exec(err);
      if (m) resolve({ child, url: m[1] as string, info });
    });
    child.on("exit", (code) => reject(new Error(`server exited with ${code}: ${err.slice(-2000)}`)));
  });
}

/** The server process's engine allocator figures (SIGUSR2 → a STATS line on its stdout). */
function workerStats(child: ChildProcess): Promise<WorkerStats> {
  return new Promise((resolve) => {
    let out = "";
    const on = (d: Buffer) => {
      out += d.toString();
      const m = /^STATS (.*)$/m.exec(out);
      if (m) {
        child.stdout?.off("data", on);
        resolve(JSON.parse(m[1] as string) as WorkerStats);
      }
    };
    child.stdout?.on("data", on);
    child.kill("SIGUSR2");
  });
}

interface StreamResult {
  content: string;
  finish: string | null;
  latencyMs: number;
  ttftMs: number;
  completionTokens: number;
}

async function streamChat(url: string, body: Record<string, unknown>): Promise<StreamResult> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  let buf = "";
  let content = "";
  let finish: string | null = null;
  let ttft = -1;
  let tokens = 0;
  let done = false;
  while (!done) {
    const r = await reader.read();
    if (r.done) break;
    buf += dec.decode(r.value, { stream: true });
    let cut = buf.indexOf("\n\n");
    while (cut >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      cut = buf.indexOf("\n\n");
      const data = block.replace(/^data: /, "");
      if (data === "[DONE]") {
        done = true;
        break;
      }
      const c = JSON.parse(data) as {
        error?: { message: string };
        choices: { delta: { content?: string }; finish_reason: string | null }[];
        usage?: { completion_tokens: number } | null;
      };
      if (c.error) throw new Error(c.error.message);
      if (c.usage) tokens = c.usage.completion_tokens;
      for (const ch of c.choices) {
        if (ch.delta.content) {
          if (ttft < 0) ttft = performance.now() - t0;
          content += ch.delta.content;
        }
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
  }
  if (!done) throw new Error("stream ended without [DONE]");
  const latencyMs = performance.now() - t0;
  return { content, finish, latencyMs, ttftMs: ttft < 0 ? latencyMs : ttft, completionTokens: tokens };
}

async function wholeChat(url: string, body: Record<string, unknown>): Promise<{ content: string; finish: string }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const j = (await res.json()) as { choices?: { message: { content: string }; finish_reason: string }[] };
  if (res.status !== 200 || !j.choices) throw new Error(`HTTP ${res.status}: ${JSON.stringify(j)}`);
  return { content: j.choices[0]?.message.content ?? "", finish: j.choices[0]?.finish_reason ?? "" };
}

async function load(): Promise<void> {
  const clients = intFlag("clients", 32);
  const rounds = intFlag("rounds", 3);
  const maxTokens = intFlag("max-tokens", 24);
  const concurrency = intFlag("max-concurrency", 8);
  const model = join(FIXTURES, "models", "tinyllava-siglip-phi");
  const { child, url } = await startServerProcess([
    join(ROOT, "src", "cli", "main.ts"),
    "serve",
    "-m",
    model,
    "--port",
    "0",
    "--max-concurrency",
    String(concurrency),
    "--max-queue",
    String(clients * 2),
    "--quiet",
  ]);
  const pid = child.pid as number;
  try {
    const request = (i: number) => ({
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: `Question ${i}: what is in this picture?` },
            { type: "image_url", image_url: { url: IMAGES[i % IMAGES.length] } },
          ],
        },
      ],
      max_tokens: maxTokens,
      temperature: 0,
    });
    // the reference answers, one at a time (this also warms the server up)
    const expected: string[] = [];
    for (let i = 0; i < clients; i++) expected.push((await wholeChat(url, request(i))).content);
    const rssBefore = rss(pid);
    const perRound: { round: number; seconds: number; requests_per_s: number; rss_mb: number }[] = [];
    const latencies: number[] = [];
    const ttfts: number[] = [];
    let tokens = 0;
    let wrong = 0;
    let failed = 0;
    const t0 = performance.now();
    for (let r = 0; r < rounds; r++) {
      const tr = performance.now();
      const results = await Promise.allSettled(Array.from({ length: clients }, (_, i) => streamChat(url, request(i))));
      const secs = (performance.now() - tr) / 1000;
      results.forEach((x, i) => {
        if (x.status === "rejected") {
          failed++;
          console.error(`request ${i}: ${x.reason}`);
          return;
        }
        latencies.push(x.value.latencyMs);
        ttfts.push(x.value.ttftMs);
        tokens += x.value.completionTokens;
        if (x.value.content !== expected[i]) {
          wrong++;
          console.error(`request ${i}: streamed ${JSON.stringify(x.value.content)} ≠ ${JSON.stringify(expected[i])}`);
        }
      });
      perRound.push({
        round: r + 1,
        seconds: round(secs, 2),
        requests_per_s: round(clients / secs, 1),
        rss_mb: rss(pid).rss,
      });
    }
    const total = (performance.now() - t0) / 1000;
    const health = (await (await fetch(`${url}/health`)).json()) as Record<string, unknown>;
    const rssAfter = rss(pid);
    console.log(
      JSON.stringify({
        bench: "serve-load",
        model: "tinyllava-siglip-phi",
        clients,
        rounds,
        max_tokens: maxTokens,
        max_concurrency: concurrency,
        requests: clients * rounds,
        all_correct: wrong === 0 && failed === 0,
        wrong,
        failed,
        requests_per_s: round((clients * rounds) / total, 1),
        completion_tokens_per_s: round(tokens / total, 1),
        latency_ms: {
          p50: round(percentile(latencies, 50)),
          p99: round(percentile(latencies, 99)),
          max: round(Math.max(...latencies)),
        },
        ttft_ms: { p50: round(percentile(ttfts, 50)), p99: round(percentile(ttfts, 99)) },
        server_rss_mb: {
          before: rssBefore.rss,
          after: rssAfter.rss,
          growth: round(rssAfter.rss - rssBefore.rss),
          peak: rssAfter.peak,
        },
        per_round: perRound,
        health_after: { in_flight: health.in_flight, queue_length: health.queue_length, completed: health.completed },
      }),
    );
    if (wrong > 0 || failed > 0) process.exitCode = 1;
  } finally {
    child.kill("SIGTERM");
  }
}

/** The child process of `health`: a server around a preset with random weights; prints its URL and model info. */
async function serveRandom(): Promise<void> {
  const { startServer } = await import("../src/serving/server.js");
  const quantize = flag("quantize", "") === "int8" ? "int8" : null;
  const s = await startServer({
    model: {
      kind: "random",
      preset: flag("preset", "qwen2-0.5b-siglip"),
      tokenizerDir: join(FIXTURES, "models", "tinyllava-siglip-qwen2"),
      dtype: flag("dtype", "bfloat16") as "bfloat16",
      quantize,
    },
    port: 0,
    maxConcurrency: 4,
    maxQueue: 16,
  });
  process.stdout.write(`SERVER ${JSON.stringify({ url: s.url, info: s.info })}\n`);
  // the parent asks for the engine's allocator figures with SIGUSR2, and ends the server with SIGTERM
  process.on("SIGUSR2", () => {
    s.scheduler.stats().then((st) => process.stdout.write(`STATS ${JSON.stringify(st)}\n`));
  });
  process.once("SIGTERM", () => {
    s.close().then(() => process.exit(0));
  });
  // a parent that died without SIGTERM (killed, crashed) must not leave a 2 GB server behind
  const parent = process.ppid;
  setInterval(() => {
    try {
      process.kill(parent, 0);
    } catch {
      s.close().then(() => process.exit(1));
    }
  }, 1000).unref();
}

async function health(): Promise<void> {
  const preset = flag("preset", "qwen2-0.5b-siglip");
  const dtype = flag("dtype", "bfloat16");
  const quantize = flag("quantize", "");
  const maxTokens = intFlag("max-tokens", 16);
  const interval = intFlag("interval-ms", 50);
  const args = [fileURLToPath(import.meta.url), "serve-random", "--preset", preset, "--dtype", dtype];
  if (quantize) args.push("--quantize", quantize);
  const t0 = performance.now();
  const { child, url, info } = await startServerProcess(args);
  const loadS = (performance.now() - t0) / 1000;
  const pid = child.pid as number;
  try {
    const idle = rss(pid);
    const idleHealth: number[] = [];
    await (await fetch(`${url}/health`)).json(); // the connection's set-up is not the server's latency
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      await (await fetch(`${url}/health`)).json();
      idleHealth.push(performance.now() - t);
    }
    // one generation; /health polled while it runs, split by phase (before the first token: vision + prefill)
    const body = {
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Describe this picture in detail." },
            { type: "image_url", image_url: { url: IMAGES[0] } },
          ],
        },
      ],
      max_tokens: maxTokens,
      temperature: 0,
    };
    const state: { phase: "prefill" | "decode" | "done" } = { phase: "prefill" };
    const samples: { phase: string; ms: number; inFlight: number }[] = [];
    let peakRss = idle.rss;
    const gen = (async () => {
      try {
        return await generation();
      } finally {
        state.phase = "done";
      }
    })();
    gen.catch(() => {}); // its error is thrown below, once the polling has stopped
    async function generation() {
      const t = performance.now();
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
      });
      if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      let ttft = -1;
      let text = "";
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        text += new TextDecoder().decode(r.value);
        if (ttft < 0 && /"content":"[^"]/.test(text)) {
          ttft = performance.now() - t;
          state.phase = "decode";
        }
      }
      state.phase = "done";
      const usage = /"usage":(\{[^}]+\})/.exec(text);
      return { totalMs: performance.now() - t, ttftMs: ttft, usage: usage ? JSON.parse(usage[1] as string) : null };
    }
    while (state.phase !== "done") {
      const t = performance.now();
      const h = (await (await fetch(`${url}/health`)).json()) as { in_flight: number };
      const ms = performance.now() - t;
      const phase: string = state.phase; // read again: the generation moves it on while /health is asked
      if (phase !== "done") samples.push({ phase, ms, inFlight: h.in_flight });
      peakRss = Math.max(peakRss, rss(pid).rss);
      await new Promise((r) => setTimeout(r, Math.max(0, interval - ms)));
    }
    const g = await gen;
    const engine = await workerStats(child);
    // idle again: the worker has returned its allocator cache
    await new Promise((r) => setTimeout(r, 500));
    const idleAfter = rss(pid);
    const during = samples.filter((s) => s.inFlight > 0);
    const stat = (xs: number[]) =>
      xs.length === 0
        ? null
        : {
            n: xs.length,
            p50: round(percentile(xs, 50), 2),
            p99: round(percentile(xs, 99), 2),
            max: round(Math.max(...xs), 2),
            over_50ms: xs.filter((x) => x > 50).length,
          };
    const after = idleAfter;
    const weightsMb = info ? info.weightBytes / 2 ** 20 : Number.NaN;
    console.log(
      JSON.stringify({
        bench: "serve-health",
        preset,
        dtype,
        quantize: quantize || null,
        parameters: info?.parameters,
        weights_mb: round(weightsMb),
        load_s: round(loadS, 1),
        generation: { total_ms: round(g.totalMs), ttft_ms: round(g.ttftMs), usage: g.usage },
        health_ms_idle: stat(idleHealth),
        health_ms_during_generation: stat(during.map((s) => s.ms)),
        health_ms_prefill: stat(during.filter((s) => s.phase === "prefill").map((s) => s.ms)),
        health_ms_decode: stat(during.filter((s) => s.phase === "decode").map((s) => s.ms)),
        server_rss_mb: { idle: idle.rss, peak_sampled: round(peakRss), idle_after: idleAfter.rss, vm_hwm: after.peak },
        rss_over_weights: { idle: round(idle.rss / weightsMb, 3), peak: round(after.peak / weightsMb, 3) },
        engine_mb: {
          in_use_after: round(engine.allocatedBytes / 2 ** 20),
          peak_in_use: round(engine.peakBytes / 2 ** 20),
          peak_over_idle: round((engine.peakBytes - engine.allocatedBytes) / 2 ** 20),
        },
      }),
    );
  } finally {
    child.kill("SIGTERM");
  }
}

const mode = process.argv[2] && !process.argv[2].startsWith("--") ? process.argv[2] : "load";
if (mode === "load") await load();
else if (mode === "health") await health();
else if (mode === "serve-random") await serveRandom();
else throw new Error(`unknown mode ${mode}: load, health`);
