// The server as the official `openai` npm client sees it, on the tiny reference model: chat completions with a
// data-URL image, non-streaming and streaming (create({stream: true}) and the .stream() helper give the same text as
// the plain reply at temperature 0), usage, the model list, and the API key (401 in OpenAI's shape without it).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import OpenAI from "openai";
import type { RunningServer } from "../../src/serving/server.js";
import { dataUrl, post, serve } from "./helpers.js";

const question = (text = "What is in the image?") => [
  {
    role: "user" as const,
    content: [
      { type: "text" as const, text },
      { type: "image_url" as const, image_url: { url: dataUrl() } },
    ],
  },
];

describe("without an API key", () => {
  let s: RunningServer;
  let client: OpenAI;
  before(async () => {
    s = await serve();
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  after(() => s.close());

  test("models.list names the loaded model; models.retrieve finds it", async () => {
    const list = await client.models.list();
    assert.deepEqual(
      list.data.map((m) => m.id),
      ["tinyllava-siglip-phi"],
    );
    const m = await client.models.retrieve("tinyllava-siglip-phi");
    assert.equal(m.object, "model");
    await assert.rejects(client.models.retrieve("gpt-4"), (e: unknown) => e instanceof OpenAI.NotFoundError);
  });

  let whole = "";
  test("non-streaming chat with a data-URL image: OpenAI's shape, usage counts the image features", async () => {
    const r = await client.chat.completions.create({
      model: "tinyllava-siglip-phi",
      messages: question(),
      max_tokens: 12,
      temperature: 0,
    });
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.object, "chat.completion");
    assert.equal(r.model, "tinyllava-siglip-phi");
    assert.ok(Math.abs(r.created - Date.now() / 1000) < 60);
    assert.equal(r.choices.length, 1);
    const c = r.choices[0]!;
    assert.equal(c.index, 0);
    assert.equal(c.message.role, "assistant");
    assert.equal(typeof c.message.content, "string");
    assert.ok(["stop", "length"].includes(c.finish_reason));
    whole = c.message.content ?? "";
    assert.equal(whole, whole.trim(), "stripped as Factory strips answers");
    const u = r.usage!;
    // positions: the template's text tokens and the image's feature rows
    assert.ok(u.prompt_tokens > 16, JSON.stringify(u));
    assert.ok(u.completion_tokens >= 1 && u.completion_tokens <= 12);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    if (c.finish_reason === "length") assert.equal(u.completion_tokens, 12);
    // greedy: the same request gives the same answer
    const again = await client.chat.completions.create({
      model: "tinyllava-siglip-phi",
      messages: question(),
      max_tokens: 12,
      temperature: 0,
    });
    assert.equal(again.choices[0]?.message.content, whole);
  });

  test("streaming with create({stream: true}): role first, content deltas, finish_reason, usage chunk, same text", async () => {
    const stream = await client.chat.completions.create({
      model: "tinyllava-siglip-phi",
      messages: question(),
      max_tokens: 12,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.length >= 3);
    assert.equal(chunks[0]?.choices[0]?.delta.role, "assistant");
    for (const c of chunks) {
      assert.equal(c.object, "chat.completion.chunk");
      assert.equal(c.id, chunks[0]?.id);
    }
    const withChoices = chunks.filter((c) => c.choices.length > 0);
    const last = withChoices[withChoices.length - 1]!;
    assert.ok(["stop", "length"].includes(last.choices[0]!.finish_reason!));
    for (const c of withChoices.slice(0, -1)) assert.equal(c.choices[0]?.finish_reason, null);
    const usage = chunks[chunks.length - 1]!;
    assert.deepEqual(usage.choices, []);
    assert.ok(usage.usage && usage.usage.total_tokens === usage.usage.prompt_tokens + usage.usage.completion_tokens);
    const text = withChoices.map((c) => c.choices[0]?.delta.content ?? "").join("");
    assert.equal(text, whole, "the streamed text equals the non-streamed answer");
  });

  test("the .stream() helper: content events and finalChatCompletion()", async () => {
    const runner = client.chat.completions.stream({
      model: "tinyllava-siglip-phi",
      messages: question(),
      max_tokens: 12,
      temperature: 0,
    });
    let deltas = "";
    runner.on("content", (d) => {
      deltas += d;
    });
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0]?.message.content, whole);
    assert.equal(deltas, whole);
    assert.equal(final.choices[0]?.message.role, "assistant");
  });

  test("a multi-turn conversation with a system message, sampling with a seed (same seed, same text)", async () => {
    const messages = [
      { role: "system" as const, content: "You describe images." },
      ...question("What is this?"),
      { role: "assistant" as const, content: "A picture." },
      { role: "user" as const, content: "What colour?" },
    ];
    const ask = () =>
      client.chat.completions.create({ model: "x", messages, max_tokens: 8, temperature: 0.9, top_p: 0.95, seed: 7 });
    const [a, b] = [await ask(), await ask()];
    assert.equal(a.choices[0]?.message.content, b.choices[0]?.message.content);
    assert.equal(a.usage?.completion_tokens, b.usage?.completion_tokens);
  });

  test("errors reach the client typed: BadRequestError with OpenAI's error body", async () => {
    await assert.rejects(client.chat.completions.create({ model: "x", messages: question(), n: 2 }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.status, 400);
      assert.equal(e.code, "unsupported_value");
      assert.equal(e.param, "n");
      assert.match(e.message, /'n' must be 1/);
      return true;
    });
    // and the server goes on
    const ok = await client.chat.completions.create({
      model: "x",
      messages: question(),
      max_tokens: 2,
      temperature: 0,
    });
    assert.equal(ok.choices.length, 1);
  });

  test("GET / is the self-contained web page; /health answers", async () => {
    const page = await fetch(`${s.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /text\/html/);
    const html = await page.text();
    assert.match(html, /<script>/);
    assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+href=|https?:\/\//, "no external resources");
    const h = (await (await fetch(`${s.url}/health`)).json()) as Record<string, unknown>;
    assert.equal(h.status, "ok");
    assert.equal(h.model, "tinyllava-siglip-phi");
    assert.equal(h.queue_length, 0);
    assert.equal(h.in_flight, 0);
    assert.equal(h.auth_required, false);
  });
});

describe("with --api-key", () => {
  let s: RunningServer;
  before(async () => {
    s = await serve({ apiKey: "sekret-key" });
  });
  after(() => s.close());

  test("the right key works; a wrong key is AuthenticationError; no key is a 401 in OpenAI's shape", async () => {
    const good = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "sekret-key", maxRetries: 0 });
    const r = await good.chat.completions.create({ model: "x", messages: question(), max_tokens: 3, temperature: 0 });
    assert.equal(r.choices[0]?.message.role, "assistant");
    const stream = await good.chat.completions.create({
      model: "x",
      messages: question(),
      max_tokens: 3,
      temperature: 0,
      stream: true,
    });
    let text = "";
    for await (const c of stream) text += c.choices[0]?.delta.content ?? "";
    assert.equal(text, r.choices[0]?.message.content);

    const bad = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "wrong", maxRetries: 0 });
    await assert.rejects(bad.chat.completions.create({ model: "x", messages: question() }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.AuthenticationError);
      assert.equal(e.status, 401);
      assert.equal(e.code, "invalid_api_key");
      return true;
    });
    await assert.rejects(bad.models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError);

    const none = await post(`${s.url}/v1/chat/completions`, { messages: question() });
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="tinyllava"');
    assert.deepEqual(none.json, {
      error: {
        message: "You didn't provide an API key: send it as 'Authorization: Bearer <key>'.",
        type: "invalid_request_error",
        param: null,
        code: "missing_api_key",
      },
    });
    const models = await fetch(`${s.url}/v1/models`);
    assert.equal(models.status, 401);
    // the page and /health need no key (the page asks for it); /health says a key is needed
    assert.equal((await fetch(`${s.url}/`)).status, 200);
    const h = (await (await fetch(`${s.url}/health`)).json()) as { auth_required: boolean };
    assert.equal(h.auth_required, true);
    // and the server goes on answering keyed requests
    const after = await good.chat.completions.create({
      model: "x",
      messages: question(),
      max_tokens: 3,
      temperature: 0,
    });
    assert.equal(after.choices[0]?.message.content, r.choices[0]?.message.content);
  });
});
