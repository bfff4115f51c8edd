// The request → model mapping without a server: field validation, the conversation (system text, turns, the one
// image), the prompt the template makes of it, batch keys, the streamed-answer trimming and error mapping.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { GenerationError, ImageError } from "../../src/errors.js";
import { VisionLanguagePipeline } from "../../src/pipeline/index.js";
import { generationPrompt, SYSTEM } from "../../src/processing/templates.js";
import { ApiError } from "../../src/serving/errors.js";
import { promptOf } from "../../src/serving/prompt.js";
import { batchKey, imageRef, parseChatRequest } from "../../src/serving/protocol.js";
import { DeltaTrimmer, workerError } from "../../src/serving/server.js";
import { dataUrl, MODEL_DIR, userMessage } from "./helpers.js";

const limits = { contextLength: 256, defaultMaxTokens: 512 };
const parse = (body: unknown) => parseChatRequest(body, limits);
function refused(body: unknown, param: string | null, code: string | RegExp) {
  try {
    parse(body);
  } catch (e) {
    assert.ok(e instanceof ApiError, String(e));
    assert.equal(e.status, 400);
    assert.equal(e.param, param, e.message);
    if (typeof code === "string") assert.equal(e.code, code, e.message);
    else assert.match(e.message, code);
    return e;
  }
  assert.fail(`accepted ${JSON.stringify(body).slice(0, 200)}`);
}

describe("parseChatRequest", () => {
  test("defaults: OpenAI's temperature 1 / top_p 1, max_tokens the server's default capped by the context", () => {
    const r = parse({ messages: [{ role: "user", content: "hi" }] });
    assert.deepEqual(r.params, {
      maxNewTokens: 256,
      temperature: 1,
      topP: 1,
      topK: 0,
      repetitionPenalty: 1,
      seed: null,
      stop: [],
    });
    assert.equal(r.stream, false);
    assert.equal(r.image, null);
    assert.equal(r.system, null);
    assert.deepEqual(r.turns, [{ role: "user", content: "hi" }]);
    const small = parseChatRequest(
      { messages: [{ role: "user", content: "hi" }] },
      { contextLength: 2048, defaultMaxTokens: 512 },
    );
    assert.equal(small.params.maxNewTokens, 512);
  });

  test("every supported field maps to the generation options", () => {
    const r = parse({
      model: "m",
      messages: [userMessage("q")],
      max_completion_tokens: 7,
      max_tokens: 99,
      temperature: 0.3,
      top_p: 0.9,
      top_k: 5,
      repetition_penalty: 1.1,
      seed: 42,
      stop: ["\n", "END"],
      n: 1,
      stream: true,
      stream_options: { include_usage: true },
      presence_penalty: 0,
      user: "someone",
    });
    assert.deepEqual(r.params, {
      maxNewTokens: 7,
      temperature: 0.3,
      topP: 0.9,
      topK: 5,
      repetitionPenalty: 1.1,
      seed: 42,
      stop: ["\n", "END"],
    });
    assert.equal(r.includeUsage, true);
    assert.equal(r.model, "m");
    assert.equal(r.image?.kind, "base64");
    assert.equal(parse({ messages: [userMessage("q")], stop: "x" }).params.stop[0], "x");
    const greedy = parse({ messages: [userMessage("q")], top_p: 0, temperature: 0.8 }).params;
    assert.equal(greedy.temperature, 0, "top_p 0 keeps one token: greedy");
  });

  test("the conversation: system messages first (joined), turns alternate (same-role runs joined), image parts", () => {
    const r = parse({
      messages: [
        { role: "system", content: "Be brief." },
        { role: "developer", content: [{ type: "text", text: "Answer in English." }] },
        {
          role: "user",
          content: [
            { type: "image_url", image_url: { url: dataUrl() } },
            { type: "text", text: "What?" },
          ],
        },
        { role: "user", content: "And the colour?" },
        { role: "assistant", content: "Red." },
        { role: "user", content: "Sure?" },
      ],
    });
    assert.equal(r.system, "Be brief.\nAnswer in English.");
    assert.deepEqual(r.turns, [
      { role: "user", content: "What?\nAnd the colour?" },
      { role: "assistant", content: "Red." },
      { role: "user", content: "Sure?" },
    ]);
    assert.ok(r.image);
    // the image may sit in a later user message: it still belongs to the conversation (and goes in the first turn)
    const later = parse({
      messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "hello" }, userMessage("look")],
    });
    assert.ok(later.image);
  });

  test("refusals name the field", () => {
    refused([], null, "invalid_type");
    refused({}, "messages", "missing_required_parameter");
    refused({ messages: "hi" }, "messages", "invalid_type");
    refused({ messages: [] }, "messages", "empty_array");
    refused({ messages: [5] }, "messages[0]", "invalid_type");
    refused({ messages: [{ role: 1, content: "x" }] }, "messages[0].role", "invalid_type");
    refused({ messages: [{ role: "tool", content: "x" }] }, "messages[0].role", "unsupported_role");
    refused({ messages: [{ role: "user", content: 3 }] }, "messages[0].content", "invalid_type");
    refused({ messages: [{ role: "user" }] }, "messages[0].content", "missing_required_parameter");
    refused(
      { messages: [{ role: "user", content: [{ type: "input_audio", input_audio: {} }] }] },
      "messages[0].content[0].type",
      "unsupported_content_type",
    );
    refused(
      { messages: [{ role: "user", content: [{ type: "text", text: 1 }] }] },
      "messages[0].content[0].text",
      "invalid_type",
    );
    refused(
      { messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] },
      "messages[0].content[0].image_url.url",
      "invalid_type",
    );
    refused(
      { messages: [userMessage("a"), { role: "assistant", content: "b" }, userMessage("c")] },
      "messages[2].content[1].image_url.url",
      "too_many_images",
    );
    refused(
      {
        messages: [
          {
            role: "user",
            content: [
              { type: "image_url", image_url: { url: dataUrl() } },
              { type: "image_url", image_url: { url: dataUrl() } },
            ],
          },
        ],
      },
      "messages[0].content[1].image_url.url",
      /one image per conversation; the request has 2/,
    );
    refused(
      {
        messages: [
          { role: "user", content: "q" },
          { role: "assistant", content: [{ type: "image_url", image_url: { url: dataUrl() } }] },
          { role: "user", content: "r" },
        ],
      },
      "messages[1].content[0]",
      /only accepted in user messages/,
    );
    refused(
      {
        messages: [
          { role: "user", content: "a" },
          { role: "system", content: "s" },
        ],
      },
      "messages",
      "invalid_message_order",
    );
    refused(
      {
        messages: [
          { role: "assistant", content: "a" },
          { role: "user", content: "b" },
        ],
      },
      "messages",
      "invalid_message_order",
    );
    refused(
      {
        messages: [
          { role: "user", content: "a" },
          { role: "assistant", content: "b" },
        ],
      },
      "messages",
      "invalid_message_order",
    );
    refused({ messages: [{ role: "system", content: "s" }] }, "messages", "missing_user_message");
    const ok = [{ role: "user", content: "x" }];
    refused({ messages: ok, model: 3 }, "model", "invalid_type");
    refused({ messages: ok, temperature: "hot" }, "temperature", "invalid_type");
    refused({ messages: ok, temperature: 2.5 }, "temperature", "invalid_value");
    refused({ messages: ok, top_p: 1.5 }, "top_p", "invalid_value");
    refused({ messages: ok, max_tokens: 1.5 }, "max_tokens", "invalid_type");
    refused({ messages: ok, max_tokens: 0 }, "max_tokens", "invalid_value");
    refused({ messages: ok, max_tokens: 257 }, "max_tokens", /outside the range \[1, 256\]/);
    refused({ messages: ok, max_completion_tokens: "5" }, "max_completion_tokens", "invalid_type");
    refused({ messages: ok, seed: -1 }, "seed", "invalid_value");
    refused({ messages: ok, n: 2 }, "n", "unsupported_value");
    refused({ messages: ok, stop: 5 }, "stop", "invalid_type");
    refused({ messages: ok, stop: ["a", 1] }, "stop[1]", "invalid_type");
    refused({ messages: ok, stop: ["a", "b", "c", "d", "e"] }, "stop", "invalid_value");
    refused({ messages: ok, stop: [""] }, "stop[0]", "invalid_value");
    refused({ messages: ok, stream: "yes" }, "stream", "invalid_type");
    refused({ messages: ok, stream_options: { include_usage: true } }, "stream_options", "invalid_value");
    refused({ messages: ok, tools: [{ type: "function" }] }, "tools", "unsupported_parameter");
    refused({ messages: ok, logprobs: true }, "logprobs", "unsupported_parameter");
    refused({ messages: ok, frequency_penalty: 0.5 }, "frequency_penalty", "unsupported_parameter");
    refused({ messages: ok, response_format: { type: "json_object" } }, "response_format", "unsupported_parameter");
  });
});

test("image references: data URLs, bare base64, http(s); other schemes and non-image data URLs refused", () => {
  assert.deepEqual(imageRef("data:image/png;base64,iVBO", "p"), {
    kind: "base64",
    data: "iVBO",
    mime: "image/png",
    param: "p",
  });
  assert.deepEqual(imageRef("iVBORw0KGgo=", "p"), { kind: "base64", data: "iVBORw0KGgo=", mime: null, param: "p" });
  assert.deepEqual(imageRef("https://example.invalid/a.png", "p"), {
    kind: "url",
    url: "https://example.invalid/a.png",
    param: "p",
  });
  assert.throws(() => imageRef("data:text/plain;base64,aGk=", "p"), /media type is 'text\/plain'/);
  assert.throws(() => imageRef("data:image/png,rawbytes", "p"), /Only base64 data URLs/);
  assert.throws(() => imageRef("file:///etc/passwd", "p"), /Unsupported image URL scheme 'file:'/);
  assert.throws(() => imageRef("data:nonsense", "p"), /Invalid data URL/);
});

test("batch keys: equal greedy options share a batch; sampling parameters matter; a seeded request is alone", () => {
  const base = parse({ messages: [{ role: "user", content: "x" }], temperature: 0, max_tokens: 5 }).params;
  assert.equal(batchKey(base, "a"), batchKey({ ...base, topP: 0.5 }, "b"), "greedy ignores top_p");
  assert.notEqual(batchKey(base, "a"), batchKey({ ...base, maxNewTokens: 6 }, "a"));
  assert.notEqual(batchKey(base, "a"), batchKey({ ...base, stop: ["x"] }, "a"));
  const s = { ...base, temperature: 0.7 };
  assert.equal(batchKey(s, "a"), batchKey(s, "b"));
  assert.notEqual(batchKey(s, "a"), batchKey({ ...s, topP: 0.5 }, "a"));
  assert.notEqual(batchKey({ ...s, seed: 1 }, "a"), batchKey({ ...s, seed: 1 }, "b"));
});

test("DeltaTrimmer: the concatenated deltas are the answer stripped, as the non-streamed one", () => {
  const cases = [
    [" Hello", " world", "  ", "\n"],
    ["\n", " ", "A", " ", " b", "\t"],
    ["", "x"],
    ["  ", " "],
    ["a \n", "\n b", " "],
  ];
  for (const parts of cases) {
    const t = new DeltaTrimmer();
    const out = parts.map((p) => t.push(p)).join("");
    assert.equal(out, parts.join("").trim(), JSON.stringify(parts));
  }
});

test("worker errors → HTTP errors: context length 400, image 400, bugs 500", () => {
  const ctx = workerError(
    new GenerationError("prompt 0 takes 300 positions (image features included); the model's context is 256"),
  );
  assert.equal(ctx.status, 400);
  assert.equal(ctx.code, "context_length_exceeded");
  assert.match(ctx.message, /maximum context length is 256 positions, but the prompt takes 300/);
  assert.equal(workerError(new ImageError("x: could not decode")).code, "invalid_image");
  const err = new TypeError("undefined is not a function");
  assert.equal(workerError(err).status, 500);
  assert.equal(workerError(err).type, "server_error");
});

describe("promptOf: the model's template over the conversation", () => {
  let pipe: VisionLanguagePipeline;
  before(() => {
    pipe = VisionLanguagePipeline.load(MODEL_DIR);
  });
  after(() => pipe.dispose());
  const turns = [
    { role: "user" as const, content: "What is this?" },
    { role: "assistant" as const, content: "A circle." },
    { role: "user" as const, content: "Which colour?" },
  ];

  test("without a system message: exactly pipeline.formatPrompt (image in the first user turn)", () => {
    const p = promptOf(pipe, { turns, system: null, hasImage: true });
    assert.equal(p, pipe.formatPrompt(turns, true));
    assert.equal(p, generationPrompt("phi", turns, { hasImage: true }));
    assert.equal(p.split("<image>").length - 1, 1);
    assert.ok(p.startsWith(`${SYSTEM} USER: <image>\nWhat is this?`));
  });

  test("a system message replaces the template's system prompt; an empty one removes it", () => {
    const p = promptOf(pipe, { turns, system: "You are terse.", hasImage: true });
    assert.equal(p, `You are terse. ${pipe.formatPrompt(turns, true).slice(SYSTEM.length + 1)}`);
    assert.ok(!p.includes(SYSTEM));
    assert.ok(promptOf(pipe, { turns, system: "", hasImage: false }).startsWith("USER: What is this?"));
  });

  test("a literal <image> in text is not a placeholder: only image parts add one", () => {
    const sneaky = [{ role: "user" as const, content: "look <image> here" }];
    assert.equal(promptOf(pipe, { turns: sneaky, system: null, hasImage: false }).includes("<image>"), false);
    assert.equal(promptOf(pipe, { turns: sneaky, system: null, hasImage: true }).split("<image>").length - 1, 1);
  });

  test("templates without a system prompt refuse a system message; raw prepends it verbatim", () => {
    assert.throws(
      () =>
        promptOf(
          { template: "pretrain", formatPrompt: pipe.formatPrompt.bind(pipe) },
          { turns, system: "s", hasImage: true },
        ),
      /no system prompt/,
    );
    const raw = {
      template: "raw" as const,
      formatPrompt: (t: { content: string }[]) => t.map((x) => x.content).join(""),
    };
    assert.equal(
      promptOf(raw, { turns: [{ role: "user", content: "<image>q" }], system: "S:", hasImage: true }),
      "S:<image>q",
    );
  });
});
