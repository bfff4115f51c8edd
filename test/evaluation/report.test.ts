// `eval report`: one table over the score.json files `eval score --out` writes, beside the published model zoo.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { buildReport, reportMarkdown, SCORERS, writeResult } from "../../src/evaluation/index.js";
import { findZooRow, MODEL_ZOO } from "../../src/evaluation/model_zoo.js";
import { EVAL_FIXTURES, expectedOf, ROOT } from "./helpers.js";

const tmp = mkdtempSync(join(tmpdir(), "tinyllava-report-"));
after(() => rmSync(tmp, { recursive: true, force: true }));
const MODEL = "TinyLLaVA-Phi-2-SigLIP-3.1B";

function scoreAll(out: string, model: string) {
  for (const [b, f] of Object.entries(SCORERS)) {
    const dir = join(EVAL_FIXTURES, b);
    writeResult(f(dir, join(dir, "answers.jsonl"), { model }), out, dir, join(dir, "answers.jsonl"));
  }
}

test("report rows: our headline numbers beside the published ones, in model-zoo order", () => {
  const out = join(tmp, "phi");
  scoreAll(out, MODEL);
  const r = buildReport(out);
  assert.equal(r.model, MODEL);
  assert.equal(r.family, MODEL);
  assert.match(r.published_source as string, /TinyLLaVA_Factory\/blob\/53f12c7/);
  assert.deepEqual(
    r.rows.map((x) => x.title),
    ["VQA-v2", "GQA", "SQA-image", "TextVQA", "POPE", "MME", "MMMU-val", "VizWiz"],
  );
  const row = (t: string) => r.rows.find((x) => x.title === t) as (typeof r.rows)[number];
  // headline values are the scorers' official summary numbers
  const vqa = expectedOf("vqav2").accuracy as { overall: number };
  assert.equal(row("VQA-v2").value, vqa.overall);
  assert.equal(row("VQA-v2").published, 80.1);
  assert.equal(row("MME").value, (expectedOf("mme").totals as { Perception: number }).Perception);
  assert.equal(row("MME").published, 1466.4);
  assert.equal(row("SQA-image").value, expectedOf("scienceqa").img_accuracy);
  assert.equal(row("TextVQA").value, 100 * (expectedOf("textvqa").accuracy as number));
  assert.equal(row("VizWiz").published, null);
  const md = reportMarkdown(r);
  assert.match(
    md,
    /^\| benchmark \| metric \| TinyLLaVA-Phi-2-SigLIP-3\.1B \| TinyLLaVA-Phi-2-SigLIP-3\.1B \(published\) \| Δ \|$/m,
  );
  assert.match(md, /^\| VQA-v2 \| accuracy \(%\) \| 85\.5 \| 80\.1 \| 5\.4 \|$/m);
  assert.match(md, /^\| VizWiz \| accuracy \(%\) \| 90\.5 \| — \| — \|$/m);
});

test("`tinyllava eval report` writes report.md + report.json; --family picks a published row", () => {
  const out = join(tmp, "mine");
  scoreAll(out, "my-model");
  const run = (...a: string[]) =>
    spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src", "cli", "main.ts"), "eval", "report", ...a], {
      encoding: "utf8",
    });
  const plain = run("--results", out, "--json");
  assert.equal(plain.status, 0, plain.stderr);
  const r = JSON.parse(plain.stdout);
  assert.equal(r.family, null);
  assert.ok(r.rows.every((x: { published: unknown }) => x.published === null));
  assert.ok(existsSync(join(out, "report.md")) && existsSync(join(out, "report.json")));
  const fam = run("--results", out, "--family", "google/siglip-so400m-patch14-384+Qwen/Qwen2-0.5B:base");
  assert.equal(fam.status, 0, fam.stderr);
  assert.match(fam.stdout, /^\| GQA \| accuracy \(%\) \| 86\.4 \| 55\.8 \| 30\.6 \|$/m);
  assert.deepEqual(JSON.parse(readFileSync(join(out, "report.json"), "utf8")).family, "TinyLLaVA-Qwen2-0.5B-SigLIP");
  const bad = run("--results", out, "--family", "TinyLLaVA-Nope");
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /EvaluationError: --family TinyLLaVA-Nope: not in the published model zoo/);
});

test("report errors: empty folder, several models", () => {
  assert.throws(() => buildReport(join(tmp, "none")), /results folder not found/);
  const mixed = join(tmp, "mixed");
  const dir = join(EVAL_FIXTURES, "pope");
  writeResult(SCORERS.pope(dir, join(dir, "answers.jsonl"), { model: "a" }), mixed, dir, "x");
  const g = join(EVAL_FIXTURES, "gqa");
  writeResult(SCORERS.gqa(g, join(g, "answers.jsonl"), { model: "b" }), mixed, g, "y");
  assert.throws(() => buildReport(mixed), /scores of several models \(a, b\)/);
});

test("model zoo data: the published table as found, released names mapped only where unambiguous", () => {
  assert.equal(MODEL_ZOO.length, 14);
  for (const r of MODEL_ZOO) assert.equal(Object.keys(r.results).length, 8);
  assert.equal(findZooRow("tinyllava/TinyLLaVA-Phi-2-SigLIP-3.1B")?.recipe, "share");
  assert.equal(findZooRow("TinyLLaVA-Qwen2.5-3B-SigLIP")?.results.mme, 1438.7);
  assert.equal(findZooRow("TinyLLaVA-Gemma-SigLIP-2.4B")?.llm, "google/gemma-2b-it");
  assert.equal(findZooRow("TinyLLaVA-OpenELM-450M-SigLIP-0.89B")?.results.pope, 85.4);
  assert.equal(findZooRow("TinyLLaVA-3.1B"), null); // legacy TinyLLaVABench model: not in this table
  assert.equal(MODEL_ZOO.flatMap((r) => r.names).length, 5);
});
