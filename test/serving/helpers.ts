// Shared pieces of the serving tests: a server on the tiny reference model (port 0), image data URLs, a raw POST.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type RunningServer, type ServeOptions, startServer } from "../../src/serving/server.js";
import { REFERENCE } from "../helpers.js";

export const MODEL_DIR = join(REFERENCE, "models", "tinyllava-siglip-phi");
export const IMAGES = join(REFERENCE, "images");
export const imageBytes = (name = "shapes_64x64.png") => readFileSync(join(IMAGES, name));
export const dataUrl = (bytes: Buffer = imageBytes(), mime = "image/png") =>
  `data:${mime};base64,${bytes.toString("base64")}`;

export function serve(o: Partial<ServeOptions> = {}): Promise<RunningServer> {
  return startServer({ model: { kind: "folder", dir: MODEL_DIR }, port: 0, maxConcurrency: 4, maxQueue: 16, ...o });
}

/** A user message with text and (optionally) an image part. */
export function userMessage(text: string, image: string | null = dataUrl()) {
  return {
    role: "user",
    content:
      image === null
        ? text
        : [
            { type: "text", text },
            { type: "image_url", image_url: { url: image } },
          ],
  };
}

/** A small greedy request that succeeds. */
export function goodRequest(extra: Record<string, unknown> = {}) {
  return {
    model: "tinyllava",
    messages: [userMessage("What is in the image?")],
    max_tokens: 4,
    temperature: 0,
    ...extra,
  };
}

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

export async function post(
  url: string,
  body: unknown,
  o: { headers?: Record<string, string>; raw?: boolean; method?: string } = {},
): Promise<Reply> {
  const res = await fetch(url, {
    method: o.method ?? "POST",
    headers: { "Content-Type": "application/json", ...o.headers },
    body: o.raw ? (body as string) : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // SSE or HTML
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** The concatenated content of an SSE chat stream, its finish reason and its usage chunk. */
export function parseSse(text: string): { content: string; finish: string | null; usage: unknown; chunks: unknown[] } {
  const chunks: unknown[] = [];
  let content = "";
  let finish: string | null = null;
  let usage: unknown = null;
  const blocks = text.split("\n\n").filter((b) => b.trim() !== "");
  if (blocks[blocks.length - 1] !== "data: [DONE]")
    throw new Error(`stream does not end with [DONE]: ${text.slice(-200)}`);
  for (const b of blocks.slice(0, -1)) {
    if (!b.startsWith("data: ")) throw new Error(`not an SSE data block: ${b}`);
    const c = JSON.parse(b.slice(6)) as {
      choices: { delta: { content?: string }; finish_reason: string | null }[];
      usage?: unknown;
    };
    chunks.push(c);
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      content += ch.delta.content ?? "";
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  return { content, finish, usage, chunks };
}
