// `tinyllava serve` as a user starts it: option validation (one line, exit 2), the ready line with the URL, a request,
// and a clean shutdown on SIGTERM.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT } from "../helpers.js";
import { dataUrl, MODEL_DIR, post, userMessage } from "./helpers.js";

const CLI = join(ROOT, "src", "cli", "main.ts");
const run = (args: string[]) =>
  spawnSync(process.execPath, ["--import", "tsx", CLI, "serve", ...args], {
    encoding: "utf8",
    cwd: ROOT,
    timeout: 60_000,
  });

test("bad options are one-line usage errors (exit 2)", () => {
  for (const [args, msg] of [
    [["-m", MODEL_DIR, "--max-concurrency", "0"], /--max-concurrency "0": expected an integer ≥ 1/],
    [["-m", MODEL_DIR, "--max-queue", "lots"], /--max-queue "lots": expected an integer ≥ 0/],
    [["-m", MODEL_DIR, "--port", "70000"], /--port "70000": expected an integer ≥ 0 and ≤ 65535/],
    [["-m", MODEL_DIR, "--max-image-pixels", "1.5"], /--max-image-pixels "1.5": expected an integer/],
    [["-m", MODEL_DIR, "--dtype", "int4"], /--dtype "int4": expected one of float32, bfloat16, float16, float64/],
    [["-m", MODEL_DIR, "--quantize", "int4"], /--quantize "int4": expected one of int8/],
    [["-m", "/no/such/folder"], /--model \/no\/such\/folder: folder not found/],
  ] as const) {
    const r = run([...args]);
    assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, msg);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});

test("serve: the ready line gives the URL; it answers; SIGTERM shuts it down cleanly", async () => {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", CLI, "serve", "-m", MODEL_DIR, "--port", "0", "--api-key", "k", "--max-tokens", "3"],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let err = "";
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
      const m = /ready — web page (http:\/\/127\.0\.0\.1:\d+)\/, API \S+ \(API key required\)/.exec(err);
      if (m) resolve(m[1] as string);
    });
    child.on("exit", (code) => reject(new Error(`exited ${code}: ${err}`)));
  });
  const r = await post(
    `${url}/v1/chat/completions`,
    { messages: [userMessage("What is it?", dataUrl())], temperature: 0 },
    { headers: { Authorization: "Bearer k" } },
  );
  assert.equal(r.status, 200, r.text);
  const body = r.json as { usage: { completion_tokens: number } };
  assert.ok(body.usage.completion_tokens <= 3, "--max-tokens is the default max_tokens");
  assert.equal((await post(`${url}/v1/chat/completions`, {})).status, 401);
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  child.kill("SIGTERM");
  assert.equal(await exited, 0);
  assert.match(err, /POST \/v1\/chat\/completions 200 \d+ ms/, "the request log");
  assert.match(err, /shutting down/);
});
