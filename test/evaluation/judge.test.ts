// The LLM-judged benchmarks (MM-Vet, LLaVA-Bench) against a local fake OpenAI-compatible endpoint: the scores must
// equal what the official graders computed for the same judge replies (test/fixtures/eval-judge/*/expected.json,
// made by make_expected.py); the client retries 429/5xx/network errors with backoff, and the on-disk cache makes a
// rerun ask nothing.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { EvaluationError } from "../../src/evaluation/errors.js";
import { Judge } from "../../src/evaluation/judge.js";
import { llavaBenchParseScore, scoreLlavabench } from "../../src/evaluation/scorers/llavabench.js";
import { mmvetParseScore, mmvetQuestion, scoreMmvet } from "../../src/evaluation/scorers/mmvet.js";
import { assertClose, JUDGE_FIXTURES, ROOT } from "./helpers.js";

const RETRY_SUFFIX = "\nPredict the correctness of the answer (digit): ";
const REPLIES = JSON.parse(readFileSync(join(JUDGE_FIXTURES, "judge_replies.json"), "utf8")) as {
  mmvet: Record<string, string[]>;
  llavabench: Record<string, string>;
};
const expectedOf = (name: string) => {
  const p = join(JUDGE_FIXTURES, name, "expected.json");
  assert.ok(existsSync(p), `fixture missing: ${p}`);
  return JSON.parse(readFileSync(p, "utf8"));
};

/** The same reply rule as make_expected.py's stand-in for the OpenAI client. */
function reply(messages: { role: string; content: string }[], temperature: number): string {
  const content = (messages.at(-1) as { content: string }).content;
  if (messages[0]?.role === "system") {
    for (const [q, review] of Object.entries(REPLIES.llavabench))
      if (content.includes(`[Question]\n${q}\n`)) return review;
    throw new Error(`no review for ${content.slice(0, 100)}`);
  }
  const retry = content.endsWith(RETRY_SUFFIX);
  const line = (retry ? content.slice(0, -RETRY_SUFFIX.length) : content).split("\n").at(-1) as string;
  for (const [q, replies] of Object.entries(REPLIES.mmvet)) {
    if (line.startsWith(`${q} | `)) {
      const k = retry ? 1 + Math.round(temperature / 0.5) : 0;
      return replies[Math.min(k, replies.length - 1)] as string;
    }
  }
  throw new Error(`no grade for ${line}`);
}

/** A fake chat-completions server: counts requests, fails the first two (429, then 500), checks the API key. */
class FakeEndpoint {
  server!: Server;
  requests = 0;
  failFirst: number[] = [429, 500];
  always: number | null = null;
  url = "";
  async start() {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
  }
  private handle(req: IncomingMessage, res: ServerResponse) {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      this.requests++;
      const fail = this.always ?? this.failFirst.shift();
      if (fail !== undefined) {
        res.writeHead(fail, { "content-type": "application/json", "retry-after": "0" });
        res.end(JSON.stringify({ error: { message: `synthetic ${fail}` } }));
        return;
      }
      if (req.url !== "/v1/chat/completions" || req.headers.authorization !== "Bearer test-key") {
        res.writeHead(401);
        res.end("unauthorized");
        return;
      }
      const r = JSON.parse(body);
      const content = reply(r.messages, r.temperature);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id: "x",
          object: "chat.completion",
          model: `${r.model}-fake`,
          choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
        }),
      );
    });
  }
}

const fake = new FakeEndpoint();
const tmp = mkdtempSync(join(tmpdir(), "tinyllava-judge-"));
before(() => fake.start());
after(() => {
  fake.server.close();
  rmSync(tmp, { recursive: true, force: true });
});

const judgeOpts = (cacheDir: string) => ({
  url: fake.url,
  model: "fake-judge",
  apiKey: "test-key",
  cacheDir,
  retryBaseMs: 1,
});

test("MM-Vet: official grading loop and scores; retries on 429/500; a rerun is served from the cache", async () => {
  const expected = expectedOf("mmvet");
  const dir = join(JUDGE_FIXTURES, "mmvet");
  const cache = join(tmp, "cache-mmvet");
  fake.requests = 0;
  fake.failFirst = [429, 500];
  const r = await scoreMmvet(dir, join(dir, "answers.jsonl"), { judge: judgeOpts(cache) });
  assertClose(r.summary.cap_score, expected.cap_score, "cap_score");
  assertClose(r.summary.cap_int_score, expected.cap_int_score, "cap_int_score");
  const grade = JSON.parse(r.converted["answers_fake-judge-grade-1runs.json"] as string);
  assertClose(grade, expected.grade, "grade file");
  // judge calls: 1 per sample, plus the re-asks (v1_4: 1, v1_5: 2, v1_6: 5, the last reply of which is ignored)
  const calls = 8 + 1 + 2 + 5;
  assert.equal(fake.requests, calls + 2, "two failed attempts, then one request per judgement");
  assert.equal(r.summary.judge_requests, calls + 2);
  assert.equal(r.summary.judge_cache_hits, 0);
  assert.equal(r.headline.value, 53.8);

  const again = await scoreMmvet(dir, join(dir, "answers.jsonl"), { judge: judgeOpts(cache) });
  assert.equal(fake.requests, calls + 2, "the rerun sends nothing");
  assert.equal(again.summary.judge_cache_hits, calls);
  assertClose(again.summary.cap_score, expected.cap_score, "cap_score (cached)");
});

test("LLaVA-Bench: rule-based reviewer prompt, score pairs, per-category relative scores", async () => {
  const expected = expectedOf("llavabench");
  const dir = join(JUDGE_FIXTURES, "llavabench");
  const cache = join(tmp, "cache-llavabench");
  fake.requests = 0;
  fake.failFirst = [503];
  const r = await scoreLlavabench(dir, join(dir, "answers.jsonl"), { judge: judgeOpts(cache) });
  const cats = r.summary.categories as Record<string, { relative: number; reference: number; model: number }>;
  const got = Object.fromEntries(
    Object.entries(cats).map(([k, v]) => [k, { relative: v.relative, reference: v.reference, model: v.model }]),
  );
  assertClose(got, expected.categories, "categories");
  const reviews = (r.converted["reviews/answers.jsonl"] as string)
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  assertClose(reviews, expected.reviews, "review file");
  assert.equal(fake.requests, 6 + 1);
  await scoreLlavabench(dir, join(dir, "answers.jsonl"), { judge: judgeOpts(cache) });
  assert.equal(fake.requests, 6 + 1, "the rerun sends nothing");
});

test("score parsing: MM-Vet's first token in [0, 1], LLaVA-Bench's two-value first line", () => {
  assert.deepEqual(mmvetParseScore("0.3 because"), { token: "0.3", score: 0.3 });
  assert.deepEqual(mmvetParseScore(" 1.0"), { token: "", score: null }); // split(" ")[0] is ""
  assert.equal(mmvetParseScore("1.5").score, null);
  assert.equal(mmvetParseScore("-0.1").score, null);
  assert.equal(mmvetParseScore("Correct").score, null);
  assert.equal(mmvetParseScore(null).score, null);
  assert.ok(Number.isNaN(mmvetParseScore("nan").score)); // passes the official range check
  assert.ok(mmvetQuestion("Q?", "a<AND>b", "p").endsWith("\nQ? | a <AND> b | p | "));
  assert.deepEqual(llavaBenchParseScore("8 9\nwhy"), [8, 9]);
  assert.deepEqual(llavaBenchParseScore("8,9"), [8, 9]);
  assert.deepEqual(llavaBenchParseScore("8, 9"), [-1, -1]); // "8  9" splits into three
  assert.deepEqual(llavaBenchParseScore("7.5 10"), [7.5, 10]);
  assert.deepEqual(llavaBenchParseScore("Scores: 8 9"), [-1, -1]);
  assert.deepEqual(llavaBenchParseScore("eight nine"), [-1, -1]);
  assert.deepEqual(llavaBenchParseScore(""), [-1, -1]);
});

test("judge client: gives up after the retries, fails fast on 4xx, retries network errors", async () => {
  const req = { messages: [{ role: "user" as const, content: "x" }], temperature: 0, max_tokens: 3 };
  fake.requests = 0;
  fake.always = 503;
  const j = new Judge({ url: fake.url, model: "m", apiKey: "test-key", maxRetries: 3, retryBaseMs: 1 });
  await assert.rejects(
    j.complete(req),
    (e: Error) => e instanceof EvaluationError && /giving up after 4 attempts \(HTTP 503/.test(e.message),
  );
  assert.equal(fake.requests, 4);
  fake.always = 400;
  fake.requests = 0;
  await assert.rejects(j.complete(req), /HTTP 400/);
  assert.equal(fake.requests, 1, "no retry on 400");
  fake.always = null;
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const down = new Judge({ url: `http://127.0.0.1:${port}/v1`, model: "m", maxRetries: 2, retryBaseMs: 1 });
  await assert.rejects(down.complete(req), /giving up after 3 attempts/);
  assert.equal(down.requests, 3);
});

test("`tinyllava eval score --benchmark mmvet` with --judge-url / --judge-key-env / --judge-cache", async () => {
  const dir = join(JUDGE_FIXTURES, "mmvet");
  fake.requests = 0;
  fake.failFirst = [];
  const args = [
    "--import",
    "tsx",
    join(ROOT, "src", "cli", "main.ts"),
    "eval",
    "score",
    "--benchmark",
    "mmvet",
    "--data",
    dir,
    "--answers",
    join(dir, "answers.jsonl"),
    "--json",
    "--judge-url",
    fake.url,
    "--judge-model",
    "fake-judge",
    "--judge-key-env",
    "TINYLLAVA_TEST_JUDGE_KEY",
    "--judge-cache",
    join(tmp, "cache-cli"),
    "--out",
    join(tmp, "out"),
  ];
  const child = spawn(process.execPath, args, { env: { ...process.env, TINYLLAVA_TEST_JUDGE_KEY: "test-key" } });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => {
    out += d;
  });
  child.stderr.on("data", (d) => {
    err += d;
  });
  const code = await new Promise((r) => child.on("close", r));
  assert.equal(code, 0, err);
  const summary = JSON.parse(out);
  assertClose(summary.cap_score, expectedOf("mmvet").cap_score, "cli cap_score");
  assert.equal(fake.requests, 16);
  assert.ok(existsSync(join(tmp, "out", "mmvet", "answers_fake-judge-grade-1runs.json")));
});
