// `tinyllava eval run | merge | score` end to end, as separate processes on a tiny real model and generated images:
// two chunks run side by side (as Factory's scripts run one per GPU), merged and scored; runs stopped by --limit, by a
// crash in the middle of a line, by Ctrl-C and by SIGKILL resume to the same answers file as an uninterrupted run.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import sharp from "sharp";
import { scorePope, scoreScienceqa, scoreVqav2 } from "../../src/evaluation/index.js";
import { benchmarkSpec, readQuestions, runBenchmark } from "../../src/evaluation/runner/index.js";
import { VisionLanguagePipeline } from "../../src/pipeline/index.js";
import { FIXTURES, REFERENCE, ROOT } from "../helpers.js";

const RUN_FIXTURES = join(FIXTURES, "eval-run");
const MODEL = join(REFERENCE, "models", "tinyllava-siglip-phi");

let pipe: VisionLanguagePipeline;
let tmp: string;
const images: Record<string, string> = {};

async function drawImages(dir: string, names: string[]): Promise<void> {
  for (const [i, n] of [...new Set(names)].entries()) {
    const p = join(dir, n);
    mkdirSync(dirname(p), { recursive: true });
    const img = sharp({
      create: {
        width: 30 + 6 * i,
        height: 40 - 3 * i,
        channels: 3,
        background: { r: 30 + 50 * i, g: 200 - 30 * i, b: 60 },
      },
    });
    await (n.endsWith(".png") ? img.png() : img.jpeg()).toFile(p);
  }
}

before(async () => {
  pipe = VisionLanguagePipeline.load(MODEL);
  tmp = mkdtempSync(join(tmpdir(), "tinyllava-runner-cli-"));
  for (const b of ["pope", "scienceqa", "vqav2"]) {
    const spec = benchmarkSpec(b);
    images[b] = join(tmp, "images", b);
    const qs = readQuestions(spec, join(RUN_FIXTURES, b, spec.questionFile));
    await drawImages(
      images[b] as string,
      qs.flatMap((q) => (q.image ? [q.image] : [])),
    );
  }
});
after(() => {
  pipe.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

function start(args: string[]): ChildProcess & { out: string; err: string } {
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "src", "cli", "main.ts"), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  }) as ChildProcess & { out: string; err: string };
  child.out = "";
  child.err = "";
  child.stdout?.on("data", (d) => (child.out += d));
  child.stderr?.on("data", (d) => (child.err += d));
  return child;
}

async function finish(
  child: ReturnType<typeof start>,
): Promise<{ code: number | null; signal: string | null; out: string; err: string }> {
  const [code, signal] = (child.exitCode !== null ? [child.exitCode, null] : await once(child, "exit")) as [
    number | null,
    string | null,
  ];
  // the streams may still hold output after "exit"
  await new Promise((r) => setImmediate(r));
  return { code, signal, out: child.out, err: child.err };
}

const cli = async (args: string[]) => finish(start(args));

function runArgs(benchmark: string, answers: string, extra: string[] = []): string[] {
  return [
    "eval",
    "run",
    "--benchmark",
    benchmark,
    "-m",
    MODEL,
    "--data",
    join(RUN_FIXTURES, benchmark),
    "--images",
    images[benchmark] as string,
    "--answers",
    answers,
    ...extra,
  ];
}

/** The uninterrupted, unsharded run with batch size 1, in this process. */
async function reference(benchmark: string, maxNewTokens: number): Promise<string> {
  const p = join(tmp, `${benchmark}-reference-${maxNewTokens}.jsonl`);
  await runBenchmark({
    benchmark,
    dataDir: join(RUN_FIXTURES, benchmark),
    imagesDir: images[benchmark],
    answersPath: p,
    modelPath: MODEL,
    loadModel: () => pipe,
    maxNewTokens,
  });
  return readFileSync(p, "utf8");
}

const countLines = (p: string) => (existsSync(p) ? readFileSync(p, "utf8").split("\n").length - 1 : 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitFor(what: string, cond: () => boolean, timeoutMs = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
const plain = (x: unknown) => JSON.parse(JSON.stringify(x));

test("POPE: two chunks side by side (batch size 2) → eval merge → eval score = the scorer on the unsharded run", async () => {
  const dir = join(tmp, "pope");
  const chunk = (i: number) =>
    start(
      runArgs("pope", join(dir, `2_${i}.jsonl`), [
        "--num-chunks",
        "2",
        "--chunk-idx",
        String(i),
        "--batch-size",
        "2",
        "--max-new-tokens",
        "5",
      ]),
    );
  const runs = await Promise.all([finish(chunk(0)), finish(chunk(1))]);
  for (const r of runs) assert.equal(r.code, 0, r.err);
  assert.match(runs[1]?.out ?? "", /pope: 3\/3 answers in .*2_1\.jsonl \(0 resumed, 3 new; questions 3–6 of /);
  assert.match(runs[0]?.err ?? "", /max_new_tokens 5 instead of model_vqa_pope's 128/);
  assert.match(runs[0]?.err ?? "", /pope \[chunk 0\/2\]: 3\/3 \(100\.0%\), [\d.]+ q\/s, done/);
  const merged = join(dir, "merge.jsonl");
  const m = await cli([
    "eval",
    "merge",
    "--answers-pattern",
    join(dir, "{chunks}_{idx}.jsonl"),
    "--num-chunks",
    "2",
    "--out",
    merged,
    "--benchmark",
    "pope",
    "--data",
    join(RUN_FIXTURES, "pope"),
  ]);
  assert.equal(m.code, 0, m.err);
  assert.match(m.out, /merged 2 chunk files \(3 \+ 3 = 6 answers\) into .*merge\.jsonl \(checked against /);
  assert.equal(readFileSync(merged, "utf8"), await reference("pope", 5));
  const s = await cli([
    "eval",
    "score",
    "--benchmark",
    "pope",
    "--data",
    join(RUN_FIXTURES, "pope"),
    "--answers",
    merged,
    "--json",
  ]);
  assert.equal(s.code, 0, s.err);
  const inProcess = scorePope(join(RUN_FIXTURES, "pope"), merged);
  assert.deepEqual(JSON.parse(s.out), plain(inProcess.summary));
  assert.equal(inProcess.items.length, 6);
  // a missing chunk is a clear error (exit 1)
  const bad = await cli([
    "eval",
    "merge",
    "--inputs",
    join(dir, "2_0.jsonl"),
    join(dir, "2_9.jsonl"),
    "--out",
    join(dir, "x.jsonl"),
  ]);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /tinyllava: EvaluationError: missing chunk file\(s\): .*2_9\.jsonl \(chunk 1 of 2\)/);
});

test("ScienceQA: a run stopped by --limit, then a crash in the middle of a line, resumes to the uninterrupted file", async () => {
  const p = join(tmp, "scienceqa", "answers.jsonl");
  const want = await reference("scienceqa", 5);
  const first = await cli(runArgs("scienceqa", p, ["--limit", "2", "--max-new-tokens", "5"]));
  assert.equal(first.code, 0, first.err);
  assert.equal(countLines(p), 2);
  // the crash: the third answer was being written
  const third = want.split("\n")[2] as string;
  appendFileSync(p, third.slice(0, 40));
  const second = await cli(runArgs("scienceqa", p, ["--max-new-tokens", "5", "--batch-size", "2"]));
  assert.equal(second.code, 0, second.err);
  assert.match(second.err, /resuming .*answers\.jsonl: 2 of 4 questions already answered/);
  assert.match(second.err, /dropping an incomplete last line \(40 bytes\)/);
  assert.match(second.out, /scienceqa: 4\/4 answers in .* \(2 resumed, 2 new;/);
  assert.equal(readFileSync(p, "utf8"), want);
  const score = scoreScienceqa(join(RUN_FIXTURES, "scienceqa"), p);
  assert.equal(score.items.length, 4);
  // other settings than the file was started with: refused, nothing written
  const other = await cli(runArgs("scienceqa", p, ["--max-new-tokens", "6"]));
  assert.equal(other.code, 1);
  assert.match(other.err, /was started with max_new_tokens 5; this run has 6/);
  assert.equal(readFileSync(p, "utf8"), want);
});

test("VQAv2: Ctrl-C stops after the current answer (exit 130), SIGKILL mid-run leaves a stale lock; both resume", async () => {
  const p = join(tmp, "vqav2", "answers.jsonl");
  const args = runArgs("vqav2", p, ["--max-new-tokens", "24", "--progress-interval", "0.001"]);
  const want = await reference("vqav2", 24);
  const a = start(args);
  await waitFor("a first answer", () => countLines(p) >= 1);
  a.kill("SIGINT");
  const ra = await finish(a);
  assert.equal(ra.code, 130, ra.err);
  assert.match(ra.err, /interrupted: .*rerun the same command to resume/);
  const afterInt = countLines(p);
  assert.ok(afterInt >= 1 && afterInt < 5, `${afterInt} answers after Ctrl-C`);
  assert.ok(!existsSync(`${p}.lock`), "Ctrl-C releases the lock");
  assert.equal(readFileSync(p, "utf8"), `${want.split("\n").slice(0, afterInt).join("\n")}\n`);

  const b = start(args);
  await waitFor("one more answer", () => countLines(p) > afterInt || b.exitCode !== null);
  b.kill("SIGKILL");
  const rb = await finish(b);
  if (rb.signal === "SIGKILL") assert.ok(existsSync(`${p}.lock`), "a killed run leaves its lock behind");
  const c = await cli(args);
  assert.equal(c.code, 0, c.err);
  assert.match(c.err, /resuming .*answers\.jsonl: \d of 5 questions already answered/);
  assert.match(c.err, /vqav2: 5\/5 \(100\.0%\)/);
  assert.equal(readFileSync(p, "utf8"), want);
  const score = scoreVqav2(join(RUN_FIXTURES, "vqav2"), p);
  assert.equal(score.items.length, 5);
});
