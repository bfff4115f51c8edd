// Bad requests of every kind, each answered with the right 4xx in OpenAI's error shape and each followed by a
// request that succeeds: the server keeps serving. Images: not an image, truncated, a decompression bomb (refused
// from its header before any pixel is decoded), over the byte and pixel limits, SVG; remote URLs off by default and,
// when allowed, fetched with a byte limit and a timeout. Prompts over the context, bodies over the limit, unknown
// routes and wrong methods.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { crc32, deflateSync } from "node:zlib";
import type { RunningServer } from "../../src/serving/server.js";
import { dataUrl, imageBytes, parseSse, post, type Reply, serve, userMessage } from "./helpers.js";

/** A PNG whose header declares width × height but whose data is one tiny row: sharp's metadata reads the size. */
function pngHeader(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.alloc(1 + width * 3))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

const GOOD_IMAGE = dataUrl(imageBytes("gray_50x50.png"));
const good = (extra: Record<string, unknown> = {}) => ({
  model: "tinyllava",
  messages: [userMessage("What is in the image?", GOOD_IMAGE)],
  max_tokens: 3,
  temperature: 0,
  ...extra,
});

function assertError(r: Reply, status: number, code: string | null, message?: RegExp): void {
  assert.equal(r.status, status, r.text.slice(0, 300));
  const body = r.json as { error: { message: string; type: string; code: string | null; param: string | null } };
  assert.ok(body && typeof body.error === "object", `OpenAI error shape: ${r.text.slice(0, 200)}`);
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(typeof body.error.message, "string");
  assert.ok(body.error.message.length > 10);
  assert.equal(typeof body.error.type, "string");
  if (code !== null) assert.equal(body.error.code, code, body.error.message);
  if (message) assert.match(body.error.message, message);
}

describe("bad input, each followed by a good request", () => {
  let s: RunningServer;
  let chat: string;
  let served = 0;
  before(async () => {
    s = await serve({ images: { maxBytes: 200_000, maxPixels: 3000 } });
    chat = `${s.url}/v1/chat/completions`;
  });
  after(() => s.close());

  /** The bad request's reply must be the error; the next request must succeed. */
  async function refusedThenOk(
    send: () => Promise<Reply>,
    status: number,
    code: string | null,
    message?: RegExp,
  ): Promise<void> {
    assertError(await send(), status, code, message);
    const ok = await post(chat, good());
    assert.equal(ok.status, 200, ok.text);
    const c = ok.json as { choices: { message: { role: string } }[] };
    assert.equal(c.choices[0]?.message.role, "assistant");
    served++;
  }

  test("malformed JSON, a body that is not an object, wrong types, missing fields", async () => {
    await refusedThenOk(
      () => post(chat, '{"messages": [', { raw: true }),
      400,
      "invalid_json",
      /could not parse the JSON/,
    );
    await refusedThenOk(() => post(chat, "", { raw: true }), 400, "invalid_json");
    await refusedThenOk(() => post(chat, [1, 2]), 400, "invalid_type", /JSON object \(got array\)/);
    await refusedThenOk(() => post(chat, { model: "x" }), 400, "missing_required_parameter", /'messages'/);
    await refusedThenOk(() => post(chat, { messages: {} }), 400, "invalid_type");
    await refusedThenOk(() => post(chat, { messages: [] }), 400, "empty_array");
    await refusedThenOk(() => post(chat, { messages: [{ role: "user", content: 42 }] }), 400, "invalid_type");
    await refusedThenOk(() => post(chat, { messages: [{ content: "hi" }] }), 400, "invalid_type");
    await refusedThenOk(() => post(chat, good({ temperature: "hot" })), 400, "invalid_type", /'temperature'/);
    await refusedThenOk(() => post(chat, good({ temperature: -1 })), 400, "invalid_value");
    await refusedThenOk(() => post(chat, good({ max_tokens: "10" })), 400, "invalid_type");
    await refusedThenOk(() => post(chat, good({ max_tokens: 100000 })), 400, "invalid_value", /\[1, 256\]/);
    await refusedThenOk(() => post(chat, good({ stop: { a: 1 } })), 400, "invalid_type");
    await refusedThenOk(() => post(chat, good({ n: 3 })), 400, "unsupported_value");
    await refusedThenOk(() => post(chat, good({ stream: 1 })), 400, "invalid_type");
    await refusedThenOk(
      () => post(chat, good({ tools: [{ type: "function", function: { name: "f" } }] })),
      400,
      "unsupported_parameter",
    );
    await refusedThenOk(
      () =>
        post(chat, {
          messages: [
            { role: "user", content: "hi" },
            { role: "assistant", content: "yo" },
          ],
        }),
      400,
      "invalid_message_order",
    );
  });

  test("more than one image per conversation", async () => {
    await refusedThenOk(
      () =>
        post(chat, {
          messages: [
            userMessage("first", GOOD_IMAGE),
            { role: "assistant", content: "ok" },
            userMessage("second", GOOD_IMAGE),
          ],
        }),
      400,
      "too_many_images",
      /one image per conversation; the request has 2/,
    );
  });

  test("not an image, a non-image data URL, bad base64, SVG, a truncated PNG", async () => {
    const text = Buffer.from("this is certainly not a picture of anything");
    await refusedThenOk(() => post(chat, good({ messages: [userMessage("q", dataUrl(text))] })), 400, "invalid_image");
    await refusedThenOk(
      () => post(chat, good({ messages: [userMessage("q", `data:text/plain;base64,${text.toString("base64")}`)] })),
      400,
      "invalid_image_format",
    );
    await refusedThenOk(
      () => post(chat, good({ messages: [userMessage("q", "not base64 at all!")] })),
      400,
      "invalid_image",
    );
    await refusedThenOk(
      () => post(chat, good({ messages: [userMessage("q", "data:image/png;base64,")] })),
      400,
      "invalid_image",
    );
    const svg = Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    );
    await refusedThenOk(
      () => post(chat, good({ messages: [userMessage("q", dataUrl(svg, "image/svg+xml"))] })),
      400,
      null,
      /(Unsupported image format 'svg'|could not be read)/,
    );
    const png = imageBytes("gray_50x50.png");
    const truncated = png.subarray(0, Math.floor(png.length * 0.6));
    await refusedThenOk(
      () => post(chat, good({ messages: [userMessage("q", dataUrl(truncated))] })),
      400,
      "invalid_image",
      /could not be (decoded|read)/,
    );
    // a bare base64 string (no data: prefix) is accepted
    const bare = await post(chat, good({ messages: [userMessage("q", png.toString("base64"))] }));
    assert.equal(bare.status, 200, bare.text);
  });

  test("decompression bombs and the pixel limit: refused from the header, before decoding", async () => {
    const bomb = pngHeader(40000, 40000);
    assert.ok(bomb.length < 200_000, `the bomb is small: ${bomb.length} bytes`);
    const t0 = performance.now();
    await refusedThenOk(
      () => post(chat, good({ messages: [userMessage("q", dataUrl(bomb))] })),
      400,
      "image_too_large",
      /40000×40000 = 1600000000 pixels; the limit is 3000 pixels/,
    );
    assert.ok(performance.now() - t0 < 20_000);
    // this server's --max-image-pixels 3000: a 64×64 image is over it
    await refusedThenOk(
      () => post(chat, good({ messages: [userMessage("q", dataUrl(imageBytes("shapes_64x64.png")))] })),
      400,
      "image_too_large",
      /64×64 = 4096 pixels; the limit is 3000/,
    );
  });

  test("the byte limit of an image, and of the body (413)", async () => {
    const big = Buffer.concat([imageBytes("gray_50x50.png"), Buffer.alloc(250_000, 7)]);
    await refusedThenOk(
      () => post(chat, good({ messages: [userMessage("q", dataUrl(big))] })),
      400,
      "image_too_large",
      /the limit is 0\.2 MiB/,
    );
    const huge = JSON.stringify(good({ user: "x".repeat(5 * 2 ** 20) }));
    await refusedThenOk(() => post(chat, huge, { raw: true }), 413, "body_too_large");
    // the same without a Content-Length (chunked): counted while it arrives
    const chunked = () =>
      fetch(chat, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: new ReadableStream({
          start(c) {
            c.enqueue(new TextEncoder().encode(huge));
            c.close();
          },
        }),
        duplex: "half",
      } as RequestInit).then(reply);
    await refusedThenOk(chunked, 413, "body_too_large", /larger than the \d+-byte limit/);
  });

  test("remote image URLs are off unless --allow-remote-images", async () => {
    await refusedThenOk(
      () => post(chat, good({ messages: [userMessage("q", "http://127.0.0.1:9/cat.png")] })),
      400,
      "remote_images_disabled",
      /--allow-remote-images/,
    );
    await refusedThenOk(
      () => post(chat, good({ messages: [userMessage("q", "file:///etc/passwd")] })),
      400,
      "invalid_image_url",
    );
  });

  test("a prompt over the context length: 400 context_length_exceeded, streaming too (before any event)", async () => {
    const long = "describe every detail of the picture again and again ".repeat(60);
    await refusedThenOk(
      () => post(chat, good({ messages: [userMessage(long, GOOD_IMAGE)] })),
      400,
      "context_length_exceeded",
      /maximum context length is 256 positions, but the prompt takes \d+/,
    );
    await refusedThenOk(
      () => post(chat, good({ messages: [userMessage(long, null)], stream: true })),
      400,
      "context_length_exceeded",
    );
    // a system message is part of the prompt too
    await refusedThenOk(
      () => post(chat, good({ messages: [{ role: "system", content: long }, userMessage("q", null)] })),
      400,
      "context_length_exceeded",
    );
  });

  test("unknown routes 404, wrong methods 405 with Allow", async () => {
    await refusedThenOk(() => post(`${s.url}/v1/completions`, good()), 404, "unknown_route");
    await refusedThenOk(() => fetch(`${s.url}/nope`).then(reply), 404, "unknown_route");
    const r = await fetch(chat);
    assert.equal(r.headers.get("allow"), "POST");
    await refusedThenOk(async () => reply(r), 405, "method_not_allowed");
    await refusedThenOk(() => post(`${s.url}/health`, {}), 405, "method_not_allowed");
    await refusedThenOk(() => post(`${s.url}/v1/models`, {}, { method: "DELETE" }), 405, "method_not_allowed");
    await refusedThenOk(() => fetch(`${s.url}/v1/models/other`).then(reply), 404, "model_not_found");
  });

  test("after all of that the server is healthy and streams", async () => {
    assert.ok(served >= 30, `good requests served: ${served}`);
    const h = (await (await fetch(`${s.url}/health`)).json()) as { status: string; in_flight: number };
    assert.equal(h.status, "ok");
    assert.equal(h.in_flight, 0);
    const st = await post(chat, good({ stream: true }));
    assert.equal(st.status, 200);
    assert.match(st.headers.get("content-type") ?? "", /text\/event-stream/);
    const sse = parseSse(st.text);
    assert.ok(sse.finish === "stop" || sse.finish === "length");
  });
});

async function reply(res: Response): Promise<Reply> {
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, text, json };
}

describe("--allow-remote-images: fetched with a byte limit and a timeout", () => {
  let s: RunningServer;
  let images: Server;
  let base: string;
  const png = imageBytes("gray_50x50.png");
  before(async () => {
    images = createServer((req, res) => {
      if (req.url === "/ok.png") {
        res.writeHead(200, { "Content-Type": "image/png" });
        res.end(png);
      } else if (req.url === "/declared-big.png") {
        res.writeHead(200, { "Content-Type": "image/png", "Content-Length": 10_000_000 });
        res.end();
      } else if (req.url === "/streamed-big.png") {
        res.writeHead(200, { "Content-Type": "image/png" });
        for (let i = 0; i < 40; i++) res.write(Buffer.alloc(10_000));
        res.end();
      } else if (req.url === "/slow.png") {
        res.writeHead(200, { "Content-Type": "image/png" });
        res.write(png.subarray(0, 10)); // and never the rest
      } else {
        res.writeHead(404);
        res.end("no");
      }
    });
    await new Promise<void>((r) => images.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(images.address() as AddressInfo).port}`;
    s = await serve({ images: { allowRemote: true, maxBytes: 200_000, fetchTimeoutMs: 700 } });
  });
  after(async () => {
    await s.close();
    images.closeAllConnections();
    await new Promise((r) => images.close(r));
  });

  test("an http URL works; 404, too large (declared or streamed), too slow are 400s; the server goes on", async () => {
    const chat = `${s.url}/v1/chat/completions`;
    const withUrl = (u: string) => good({ messages: [userMessage("q", u)] });
    const ok = await post(chat, withUrl(`${base}/ok.png`));
    assert.equal(ok.status, 200, ok.text);
    // the same bytes as a data URL give the same answer
    const same = await post(chat, withUrl(dataUrl(png)));
    assert.deepEqual((same.json as { choices: unknown }).choices, (ok.json as { choices: unknown }).choices);
    for (const [path, code, msg] of [
      ["/missing.png", "image_fetch_failed", /HTTP 404/],
      ["/declared-big.png", "image_too_large", /9\.5 MiB; the limit is 0\.2 MiB/],
      ["/streamed-big.png", "image_too_large", /larger than the 0\.2 MiB limit/],
      ["/slow.png", "image_fetch_failed", /within 700 ms/],
    ] as const) {
      assertError(await post(chat, withUrl(`${base}${path}`)), 400, code, msg);
      const again = await post(chat, withUrl(`${base}/ok.png`));
      assert.equal(again.status, 200, again.text);
    }
  });
});
