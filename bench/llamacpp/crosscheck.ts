// Cross-check of the GGUF exporter against llama.cpp: each tiny fixture model is exported (src/export), loaded by
// llama.cpp (node-llama-cpp, run.mjs), and llama.cpp's greedy continuation of the fixture prompt's text tokens is
// compared with our engine's greedy continuation of the same ids; llama.cpp's tokenisation of the prompt text is
// compared with our tokenizer's too. One JSON line per (model, type), then a summary line; exit status 1 on a greedy
// mismatch in f32. Text only (llama.cpp gets no image here).
//   node --import tsx bench/llamacpp/crosscheck.ts [--models a,b] [--types f32,q8_0] [--new-tokens 16] [--threads 2]
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportTinyLlavaGguf, type GgufType } from "../../src/export/index.js";
import { loadTinyLlava } from "../../src/models/load.js";
import type { TinyLlava } from "../../src/models/tinyllava.js";
import { TinyTokenizer } from "../../src/processing/tokenizer.js";
import { noGrad, tensor, tidy } from "../../src/torch/index.js";
import { greedy, tokenize } from "./run.mjs";

const ROOT = join(import.meta.dirname, "..", "..");
const MODELS = join(ROOT, "test", "fixtures", "reference", "models");

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? (process.argv[i + 1] as string) : dflt;
}

/** Our greedy tokens with the top-1 − top-2 logit margin at each step (float32, full recompute per step). */
function oursGreedy(model: TinyLlava, ids: number[], n: number): { tokens: number[]; margins: number[] } {
  const seq = [...ids];
  const tokens: number[] = [];
  const margins: number[] = [];
  for (let i = 0; i < n; i++) {
    const [tok, margin] = tidy(() =>
      noGrad(() => {
        const { logits } = model.forward({ inputIds: tensor([seq], { dtype: "int64" }) });
        const last = logits.select(1, logits.size(1) - 1).select(0, 0);
        const { values, indices } = last.topk(2);
        const v = values.toArray();
        return [indices.toArray()[0] as number, (v[0] as number) - (v[1] as number)];
      }),
    );
    tokens.push(tok);
    margins.push(margin);
    seq.push(tok);
  }
  return { tokens, margins };
}

async function main(): Promise<void> {
  const models = arg("models", "siglip-qwen2,clip-llama,siglip-phi").split(",");
  const types = arg("types", "f32,f16,bf16,q8_0").split(",") as GgufType[];
  const newTokens = Number(arg("new-tokens", "16"));
  const threads = Number(arg("threads", "2"));
  const dir = mkdtempSync(join(tmpdir(), "tl-gguf-xcheck-"));
  const summary: { model: string; type: string; greedy: boolean; tokenize: boolean }[] = [];
  try {
    for (const name of models) {
      const folder = join(MODELS, name);
      const golden = JSON.parse(readFileSync(join(folder, "golden.json"), "utf8"));
      const text = `${golden.prompt_before}${golden.prompt_after}`;
      const tok = TinyTokenizer.fromFolder(folder);
      const ids = tok.encode(text);
      const model = loadTinyLlava(folder, { dtype: "float32" });
      const ours = oursGreedy(model, ids, newTokens);
      for (const type of types) {
        const path = join(dir, `${name}-${type}.gguf`);
        exportTinyLlavaGguf(folder, path, { type });
        const theirs = await greedy(path, ids, { newTokens, threads });
        const theirIds = await tokenize(path, text);
        const ourIds = tok.encode(text, { addSpecialTokens: false });
        const firstDiff = ours.tokens.findIndex((t, i) => t !== theirs[i]);
        const greedyMatch = firstDiff < 0 && theirs.length === ours.tokens.length;
        const tokenizeMatch =
          theirIds.length === ourIds.length && theirIds.every((t: number, i: number) => t === ourIds[i]);
        summary.push({ model: name, type, greedy: greedyMatch, tokenize: tokenizeMatch });
        console.log(
          JSON.stringify({
            mode: "crosscheck",
            model: name,
            type,
            prompt_tokens: ids.length,
            greedy_match: greedyMatch,
            ours: ours.tokens,
            llamacpp: theirs,
            first_difference: greedyMatch ? null : firstDiff,
            our_margin_there: greedyMatch ? null : (ours.margins[firstDiff] ?? null),
            min_margin: Math.min(...ours.margins),
            tokenize_match: tokenizeMatch,
            ...(tokenizeMatch ? {} : { our_ids: ourIds, llamacpp_ids: theirIds }),
          }),
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const f32Bad = summary.filter((s) => s.type === "f32" && !s.greedy);
  console.log(
    JSON.stringify({
      mode: "crosscheck-summary",
      result: summary.every((s) => s.greedy) ? "match" : "mismatch",
      f32: f32Bad.length === 0 ? "match" : "mismatch",
      greedy_matches: summary.filter((s) => s.greedy).length,
      tokenize_matches: summary.filter((s) => s.tokenize).length,
      cases: summary.length,
      mismatches: summary.filter((s) => !s.greedy).map((s) => `${s.model}/${s.type}`),
    }),
  );
  if (f32Bad.length > 0) process.exitCode = 1;
}

await main();
