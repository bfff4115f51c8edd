#!/usr/bin/env node
// The llama.cpp side of the benchmarks, through node-llama-cpp (pinned 3.21.1, installed on first use into
// bench/llamacpp/.deps — never a dependency of the package). Plain Node ESM; every mode prints one JSON line.
//
//   node bench/llamacpp/run.mjs greedy   --model F.gguf --tokens 1,2,3 [--new-tokens 16] [--threads 2]
//   node bench/llamacpp/run.mjs tokenize --model F.gguf --text "..."
//   node bench/llamacpp/run.mjs bench    --model F.gguf [--prompt-tokens 768] [--new-tokens 128] [--threads 2] [--seed 0]
//   node bench/llamacpp/run.mjs crosscheck [--models siglip-qwen2,clip-llama,siglip-phi] [--types f32,q8_0] [--new-tokens 16]
//
// greedy: temperature 0 continuation of the given token ids (no BOS added, no stop at EOS).
// bench: `prompt-tokens` pseudo-random ids (seeded) evaluated in one batch with the next token sampled (prefill), then
// `new-tokens` greedy decode steps of one token each (decode tok/s), `threads` CPU threads, no GPU.
// crosscheck: exports tiny fixture models to GGUF with our exporter and compares llama.cpp's greedy tokens (and its
// tokenisation of the prompt) with ours (bench/llamacpp/crosscheck.ts; needs the TypeScript toolchain: tsx).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const NODE_LLAMA_CPP_VERSION = "3.21.1";
const HERE = dirname(fileURLToPath(import.meta.url));
export const DEPS = join(HERE, ".deps");
const ENTRY = join(DEPS, "node_modules", "node-llama-cpp", "dist", "index.js");

/** Installs node-llama-cpp@3.21.1 into bench/llamacpp/.deps when it is not there (npm registry only). */
export function ensureNodeLlamaCpp() {
  const pkg = join(DEPS, "node_modules", "node-llama-cpp", "package.json");
  if (existsSync(ENTRY) && existsSync(pkg)) {
    const v = JSON.parse(
      execFileSync(process.execPath, ["-p", `JSON.stringify(require(${JSON.stringify(pkg)}))`]),
    ).version;
    if (v === NODE_LLAMA_CPP_VERSION) return;
  }
  console.error(`installing node-llama-cpp@${NODE_LLAMA_CPP_VERSION} into ${DEPS} …`);
  const r = spawnSync(
    "npm",
    ["install", "--prefix", DEPS, "-E", `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`, "--no-audit", "--no-fund"],
    { stdio: ["ignore", 2, 2] }, // npm's output to stderr: stdout carries only the JSON lines
  );
  if (r.status !== 0 || !existsSync(ENTRY))
    throw new Error(`npm install of node-llama-cpp failed (status ${r.status})`);
}

let llamaPromise = null;
/** The node-llama-cpp module and a CPU-only Llama instance limited to `threads` threads. */
export async function loadLlama(threads) {
  ensureNodeLlamaCpp();
  if (!llamaPromise) {
    llamaPromise = (async () => {
      const mod = await import(pathToFileURL(ENTRY).href);
      const llama = await mod.getLlama({
        gpu: false,
        maxThreads: threads,
        logLevel: mod.LlamaLogLevel.error,
        build: "never",
        usePrebuiltBinaries: true,
      });
      return { mod, llama };
    })();
  }
  return llamaPromise;
}

async function openContext(modelPath, { threads, contextSize, batchSize }) {
  const { llama } = await loadLlama(threads);
  const t0 = performance.now();
  // read into memory rather than mmap'd (as PyTorch's and our weights): file-backed pages can be reclaimed under memory
  // pressure (this VM's DAMON "pageout" scheme evicts them mid-decode) and then re-read from disk each token
  const model = await llama.loadModel({ modelPath, useMmap: false });
  const context = await model.createContext({
    contextSize,
    batchSize,
    threads: { ideal: threads, min: threads },
    sequences: 1,
    // dispatch each decode at once instead of on the next event-loop cycle (one sequence: nothing to batch with)
    batching: { dispatchSchedule: (dispatch) => dispatch() },
  });
  const loadMs = performance.now() - t0;
  return { llama, model, context, sequence: context.getSequence(), loadMs };
}

async function close({ model, context }) {
  await context.dispose();
  await model.dispose();
}

/** Greedy (temperature 0) continuation of `tokens` by `newTokens` tokens, not stopping at end-of-generation tokens. */
export async function greedy(modelPath, tokens, { newTokens = 16, threads = 2 } = {}) {
  const n = tokens.length + newTokens + 8;
  const h = await openContext(modelPath, { threads, contextSize: n, batchSize: Math.max(tokens.length, 1) });
  try {
    const out = [];
    const it = h.sequence.evaluate(tokens, { temperature: 0, yieldEogToken: true });
    for await (const t of it) {
      out.push(t);
      if (out.length >= newTokens) break;
    }
    return out;
  } finally {
    await close(h);
  }
}

/** llama.cpp's tokenisation of `text` (no BOS, special-token text parsed as special tokens). */
export async function tokenize(modelPath, text, { threads = 2 } = {}) {
  const { llama } = await loadLlama(threads);
  const model = await llama.loadModel({ modelPath });
  try {
    return model.tokenize(text, true);
  } finally {
    await model.dispose();
  }
}

/** Deterministic pseudo-random token ids in [lo, hi) (xorshift32). */
export function randomTokens(n, lo, hi, seed = 0) {
  let s = (seed ^ 0x9e3779b9) >>> 0 || 1;
  const out = [];
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out.push(lo + (s % (hi - lo)));
  }
  return out;
}

/** Prefill time for `promptTokens` ids and decode speed over `newTokens` greedy tokens. */
export async function bench(modelPath, { promptTokens = 768, newTokens = 128, threads = 2, seed = 0 } = {}) {
  const h = await openContext(modelPath, {
    threads,
    contextSize: promptTokens + newTokens + 16,
    batchSize: promptTokens,
  });
  try {
    const embd = h.model.fileInfo.tensorInfo?.find((t) => t.name === "token_embd.weight");
    const vocab = Number(embd?.dimensions[1] ?? 256);
    // ids above the 256 byte tokens (any id works: they are fed directly, never detokenised)
    const prompt = randomTokens(promptTokens, vocab > 512 ? 256 : 0, vocab, seed);
    const it = h.sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true });
    const t0 = performance.now();
    const first = await it.next();
    const t1 = performance.now();
    if (first.done) throw new Error("llama.cpp produced no token after the prompt");
    const out = [first.value];
    for (let i = 0; i < newTokens; i++) {
      const r = await it.next();
      if (r.done) throw new Error(`generation stopped after ${i} decode steps`);
      out.push(r.value);
    }
    const t2 = performance.now();
    await it.return();
    const info = h.model.fileInfo;
    const md = info?.metadata ?? {};
    return {
      engine: "llama.cpp",
      runtime: `node-llama-cpp ${NODE_LLAMA_CPP_VERSION}`,
      model: modelPath,
      arch: md.general?.architecture ?? null,
      file_type: md.general?.file_type ?? null,
      threads,
      prompt_tokens: promptTokens,
      new_tokens: newTokens,
      load_ms: round(h.loadMs),
      prefill_ms: round(t1 - t0),
      prefill_tok_s: round((promptTokens / (t1 - t0)) * 1000),
      decode_ms: round(t2 - t1),
      decode_tok_s: round((newTokens / (t2 - t1)) * 1000),
      flash_attention: h.context.flashAttention ?? null,
      weights_mb: round(statSync(modelPath).size / 1024 ** 2),
      peak_rss_mb: round(process.resourceUsage().maxRSS / 1024),
      generated_head: out.slice(0, 8),
    };
  } finally {
    await close(h);
  }
}

const round = (x) => Math.round(x * 100) / 100;

function parseArgs(argv) {
  const o = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const k = a.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
      const v = argv[i + 1];
      if (v === undefined || v.startsWith("--")) o[k] = true;
      else {
        o[k] = v;
        i++;
      }
    } else o._.push(a);
  }
  return o;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const mode = o._[0];
  const threads = Number(o.threads ?? 2);
  const need = (k) => {
    if (o[k] === undefined || o[k] === true) throw new Error(`${mode}: --${k} is required`);
    return o[k];
  };
  if (mode === "greedy") {
    const model = need("model");
    const tokens = String(need("tokens")).split(",").map(Number);
    const out = await greedy(model, tokens, { newTokens: Number(o.newTokens ?? 16), threads });
    console.log(JSON.stringify({ engine: "llama.cpp", mode, model, threads, prompt: tokens, tokens: out }));
  } else if (mode === "tokenize") {
    const model = need("model");
    console.log(JSON.stringify({ engine: "llama.cpp", mode, model, tokens: await tokenize(model, need("text")) }));
  } else if (mode === "bench") {
    const r = await bench(need("model"), {
      promptTokens: Number(o.promptTokens ?? 768),
      newTokens: Number(o.newTokens ?? 128),
      threads,
      seed: Number(o.seed ?? 0),
    });
    console.log(JSON.stringify({ mode, ...r }));
  } else if (mode === "crosscheck") {
    ensureNodeLlamaCpp();
    const args = ["--import", "tsx", join(HERE, "crosscheck.ts")];
    for (const k of ["models", "types", "newTokens", "threads"]) if (o[k] !== undefined) args.push(`--${k}`, o[k]);
    const r = spawnSync(process.execPath, args, { stdio: "inherit", cwd: join(HERE, "..", "..") });
    process.exitCode = r.status ?? 1;
  } else {
    console.error("usage: node bench/llamacpp/run.mjs greedy|tokenize|bench|crosscheck [options] (see the header)");
    process.exitCode = 2;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    console.error(`run.mjs: ${e.stack ?? e}`);
    process.exit(1);
  });
}
