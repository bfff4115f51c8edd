// Load behaviour on the tiny model: concurrent requests are batched (a batch gives each request what it gets alone),
// a full queue answers 429 with Retry-After, and a client that disconnects — streaming, waiting for a whole answer,
// or still queued — cancels its generation; the server goes on serving after each.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { JobEvent, JobSpec } from "../../src/serving/jobs.js";
import { batchKey, type GenerationParams } from "../../src/serving/protocol.js";
import { Scheduler } from "../../src/serving/scheduler.js";
import type { RunningServer } from "../../src/serving/server.js";
import { dataUrl, imageBytes, MODEL_DIR, parseSse, post, serve, userMessage } from "./helpers.js";

/** New tokens of the long request: as many as the tiny model's context (256) leaves after the prompt, so that it
 * outlasts the other clients' requests on a fast machine too (set in before()) */
let LONG = 100;
const story = (stream: boolean, extra: Record<string, unknown> = {}) => ({
  messages: [userMessage("Tell me a long story.", null)],
  max_tokens: LONG,
  temperature: 0,
  stream,
  ...extra,
});

interface Health {
  status: string;
  queue_length: number;
  in_flight: number;
  cancelled: number;
  aborted: number;
  completed: number;
}
const health = async (s: RunningServer) => (await (await fetch(`${s.url}/health`)).json()) as Health;

async function until(s: RunningServer, ok: (h: Health) => boolean, what: string, ms = 20_000): Promise<Health> {
  const end = Date.now() + ms;
  for (;;) {
    const h = await health(s);
    if (ok(h)) return h;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}: ${JSON.stringify(h)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Starts a streaming request and resolves once its first content chunk has arrived. */
async function startStream(url: string, body: unknown, signal: AbortSignal) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  assert.equal(res.status, 200);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  let text = "";
  while (!/"content":"[^"]/.test(text)) {
    const { value, done } = await reader.read();
    assert.ok(!done, `stream ended early: ${text}`);
    text += dec.decode(value);
  }
  return { reader, text };
}

describe("cancellation and the queue", () => {
  let s: RunningServer;
  let chat: string;
  let full: { content: string; ms: number };
  before(async () => {
    s = await serve({ maxConcurrency: 1, maxQueue: 1 });
    chat = `${s.url}/v1/chat/completions`;
    const probe = (await post(chat, story(false, { max_tokens: 1 }))).json as { usage: { prompt_tokens: number } };
    LONG = 256 - probe.usage.prompt_tokens;
    assert.ok(LONG >= 100, `the prompt takes ${probe.usage.prompt_tokens} of the 256 positions`);
    const t0 = performance.now();
    const r = await post(chat, story(false));
    const c = r.json as {
      choices: { message: { content: string }; finish_reason: string }[];
      usage: { completion_tokens: number };
    };
    // the precondition of the cancellation tests: uncancelled, this request runs all its tokens
    assert.equal(c.choices[0]?.finish_reason, "length", r.text);
    assert.equal(c.usage.completion_tokens, LONG);
    full = { content: c.choices[0]?.message.content ?? "", ms: performance.now() - t0 };
  });
  after(() => s.close());

  test("a streaming client that disconnects stops its generation", async () => {
    const before = await health(s);
    const ac = new AbortController();
    await startStream(chat, story(true), ac.signal);
    ac.abort();
    const h = await until(s, (x) => x.in_flight === 0, "the cancelled job to leave");
    assert.equal(h.cancelled, before.cancelled + 1);
    assert.equal(h.aborted, before.aborted + 1, `the generation stopped before its ${LONG} tokens`);
    const again = await post(chat, story(false));
    assert.equal(
      (again.json as { choices: { message: { content: string } }[] }).choices[0]?.message.content,
      full.content,
    );
  });

  test("a client waiting for a whole answer that disconnects stops it too", async () => {
    const before = await health(s);
    const ac = new AbortController();
    const pending = fetch(chat, { method: "POST", body: JSON.stringify(story(false)), signal: ac.signal }).catch(
      (e: Error) => e,
    );
    await until(s, (x) => x.in_flight === 1, "the job to start");
    ac.abort();
    assert.equal(((await pending) as Error).name, "AbortError");
    const h = await until(s, (x) => x.in_flight === 0, "the cancelled job to leave");
    assert.equal(h.cancelled, before.cancelled + 1);
    assert.equal(h.aborted, before.aborted + 1);
    assert.equal((await post(chat, { ...story(false), max_tokens: 3 })).status, 200);
  });

  test("a full queue answers 429 with Retry-After; a queued client that leaves never runs", async () => {
    const before = await health(s);
    const running = new AbortController();
    const a = await startStream(chat, story(true), running.signal);
    // B waits in the queue (one slot, busy)
    const queued = new AbortController();
    const b = fetch(chat, { method: "POST", body: JSON.stringify(story(false)), signal: queued.signal }).catch(
      (e: Error) => e,
    );
    await until(s, (x) => x.queue_length === 1, "B to queue");
    // C: one generating, one waiting, --max-queue 1 → refused
    const c = await post(chat, story(false, { max_tokens: 2 }));
    assert.equal(c.status, 429, c.text);
    const retry = Number(c.headers.get("retry-after"));
    assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 60, `Retry-After ${c.headers.get("retry-after")}`);
    const err = (c.json as { error: { type: string; code: string; message: string } }).error;
    assert.equal(err.type, "rate_limit_error");
    assert.equal(err.code, "queue_full");
    assert.match(err.message, /1 generating, 1 waiting/);
    // B leaves while queued: out of the queue at once, A still generating
    queued.abort();
    assert.equal(((await b) as Error).name, "AbortError");
    const h = await until(s, (x) => x.queue_length === 0, "B to leave the queue");
    // A (or nothing, if A has already finished on a fast machine) is in flight; the counters below show B never ran
    assert.ok(h.in_flight <= 1, JSON.stringify(h));
    // A runs to its end
    let rest = a.text;
    const dec = new TextDecoder();
    for (;;) {
      const { value, done } = await a.reader.read();
      if (done) break;
      rest += dec.decode(value);
    }
    const sse = parseSse(rest);
    assert.equal(sse.content, full.content, "the streamed answer equals the non-streamed one");
    assert.equal(sse.finish, "length");
    const end = await until(s, (x) => x.in_flight === 0, "A to finish");
    assert.equal(end.cancelled, before.cancelled + 1, "B was cancelled");
    assert.equal(end.aborted, before.aborted, "nothing generating was aborted: B never ran");
    assert.equal(end.completed, before.completed + 1, "only A ran");
    assert.equal((await post(chat, story(false, { max_tokens: 2 }))).status, 200);
  });
});

describe("batching", () => {
  const images = ["shapes_64x64.png", "gradient_70x45.png", "noise_33x90.png", null] as const;
  const questions = ["What is this?", "Describe the colours.", "Where is the light?", "Tell me a story."];
  const params: GenerationParams = {
    maxNewTokens: 10,
    temperature: 0,
    topP: 1,
    topK: 0,
    repetitionPenalty: 1,
    seed: null,
    stop: [],
  };
  const job = (i: number, p = params): JobSpec => {
    const id = randomUUID();
    const img = images[i];
    return {
      id,
      turns: [{ role: "user", content: questions[i] as string }],
      system: null,
      image: img ? imageBytes(img) : null,
      params: p,
      batchKey: batchKey(p, id),
    };
  };
  async function collect(events: AsyncIterable<JobEvent>) {
    let text = "";
    let done: Extract<JobEvent, { type: "done" }> | null = null;
    for await (const e of events) {
      if (e.type === "delta") text += e.text;
      if (e.type === "done") done = e;
    }
    return { text, done: done as Extract<JobEvent, { type: "done" }> };
  }

  let sched: Scheduler;
  before(async () => {
    // a long batch window: requests that arrive together wait for each other's images, whatever the machine's speed
    sched = await Scheduler.start(
      { kind: "folder", dir: MODEL_DIR },
      { maxConcurrency: 8, maxQueue: 8, batchWindowMs: 5000 },
    );
  });
  after(() => sched.close());

  test("requests that arrive while the worker is busy share one batch, each row as it is alone", async () => {
    // a long job with other options keeps the worker busy; the four arrive during its steps
    const long = sched.submit(job(3, { ...params, maxNewTokens: 150 }));
    const it = long.events[Symbol.asyncIterator]();
    while ((await it.next()).value?.type !== "delta");
    const four = [0, 1, 2, 3].map((i) => sched.submit(job(i)));
    const batched = await Promise.all(four.map((j) => collect(j.events)));
    for (;;) if ((await it.next()).done) break;
    for (const b of batched) assert.equal(b.done.batchSize, 4, "one batch of four");
    for (const [i, b] of batched.entries()) {
      const alone = await collect(sched.submit(job(i)).events);
      assert.equal(alone.done.batchSize, 1);
      assert.equal(b.text, alone.text, `request ${i}: batched = alone`);
      assert.equal(b.done.completionTokens, alone.done.completionTokens);
      assert.equal(b.done.promptTokens, alone.done.promptTokens);
      assert.equal(b.done.finishReason, alone.done.finishReason);
    }
    // requests with different options do not share a batch, and still all finish
    const mixed = await Promise.all([
      collect(sched.submit(job(0)).events),
      collect(sched.submit(job(1, { ...params, maxNewTokens: 5 })).events),
      collect(sched.submit(job(2, { ...params, temperature: 0.8, seed: 3 })).events),
    ]);
    for (const m of mixed) assert.ok(m.done.batchSize === 1 && m.done.finishReason !== "abort");
  });

  test("a batch whose start fails (one prompt over the context) runs each request alone: only that one fails", async () => {
    const over = job(3);
    over.turns = [{ role: "user", content: "again and again ".repeat(200) }];
    const busy = sched.submit(job(3, { ...params, maxNewTokens: 100 }));
    const it = busy.events[Symbol.asyncIterator]();
    while ((await it.next()).value?.type !== "delta");
    const [ok1, bad, ok2] = [job(0), over, job(1)].map((j) => sched.submit(j));
    const results = await Promise.allSettled([collect(ok1!.events), collect(bad!.events), collect(ok2!.events)]);
    for (;;) if ((await it.next()).done) break;
    assert.equal(results[0]?.status, "fulfilled");
    assert.equal(results[2]?.status, "fulfilled");
    assert.equal(results[1]?.status, "rejected");
    assert.match(String((results[1] as PromiseRejectedResult).reason), /context is 256/);
    const alone0 = await collect(sched.submit(job(0)).events);
    assert.equal((results[0] as PromiseFulfilledResult<{ text: string }>).value.text, alone0.text);
  });
});

describe("concurrent HTTP clients", () => {
  let s: RunningServer;
  before(async () => {
    s = await serve({ maxConcurrency: 4, maxQueue: 16 });
  });
  after(() => s.close());

  test("8 concurrent streaming requests each equal their non-streamed answer", async () => {
    const chat = `${s.url}/v1/chat/completions`;
    const img = ["shapes_64x64.png", "gradient_70x45.png", "noise_33x90.png", "gray_50x50.png"];
    const body = (i: number, stream: boolean) => ({
      messages: [userMessage(`Question ${i}: what do you see?`, dataUrl(imageBytes(img[i % 4])))],
      max_tokens: 8,
      temperature: 0,
      stream,
    });
    const streamed = await Promise.all(Array.from({ length: 8 }, (_, i) => post(chat, body(i, true))));
    for (const [i, r] of streamed.entries()) {
      assert.equal(r.status, 200, r.text);
      const plain = await post(chat, body(i, false));
      const c = plain.json as { choices: { message: { content: string }; finish_reason: string }[] };
      const sse = parseSse(r.text);
      assert.equal(sse.content, c.choices[0]?.message.content, `request ${i}`);
      assert.equal(sse.finish, c.choices[0]?.finish_reason);
    }
    const h = await health(s);
    assert.equal(h.in_flight, 0);
    assert.equal(h.queue_length, 0);
  });
});
