// The HTTP server: OpenAI's chat-completions API (plain JSON or server-sent events), the model list, a health
// route and the web page. The model runs in its own thread (scheduler.ts → engine.ts); this thread only parses,
// checks, queues and writes, so it answers /health while a generation runs. Every refusal is an ApiError in OpenAI's
// shape, and after every one the server goes on serving.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ApiError } from "./errors.js";
import { DEFAULT_IMAGE_LIMITS, type ImageLimits, resolveImage } from "./images.js";
import type { JobEvent, JobSpec, ModelInfo, ModelSpec } from "./jobs.js";
import { PAGE_HTML } from "./page.js";
import { batchKey, type ChatRequest, parseChatRequest } from "./protocol.js";
import { Scheduler, type SchedulerOptions } from "./scheduler.js";

export interface ServeOptions extends SchedulerOptions {
  model: ModelSpec;
  /** default 127.0.0.1 */
  host?: string;
  /** default 8000; 0 picks a free port */
  port?: number;
  /** when set, /v1/* needs `Authorization: Bearer <apiKey>` */
  apiKey?: string | null;
  images?: Partial<ImageLimits>;
  /** max_tokens when a request gives none (default 512, Factory's demo) */
  defaultMaxTokens?: number;
  /** one line per request and the start-up line (default: none) */
  log?: (line: string) => void;
}

export interface RunningServer {
  /** http://host:port */
  url: string;
  port: number;
  info: ModelInfo;
  scheduler: Scheduler;
  server: Server;
  close(): Promise<void>;
}

/** Strips the answer as Factory does (leading and trailing whitespace) while streaming: trailing whitespace is held
 * back until more text follows it, so the concatenated deltas equal the non-streamed answer exactly. */
export class DeltaTrimmer {
  private started = false;
  private pending = "";
  push(delta: string): string {
    let s = this.pending + delta;
    this.pending = "";
    if (!this.started) {
      s = s.replace(/^\s+/, "");
      if (s === "") return "";
      this.started = true;
    }
    const m = /\s+$/.exec(s);
    if (!m) return s;
    this.pending = m[0];
    return s.slice(0, m.index);
  }
}

/** GenerationError and friends from the model's thread → the HTTP error a client should get. */
export function workerError(e: Error): ApiError {
  if (e instanceof ApiError) return e;
  const ctx = /takes (\d+) positions.*context is (\d+)/.exec(e.message);
  if (e.name === "GenerationError" && ctx)
    return new ApiError(
      400,
      `This model's maximum context length is ${ctx[2]} positions, but the prompt takes ${ctx[1]} (image features included). Shorten the conversation.`,
      "invalid_request_error",
      "context_length_exceeded",
      "messages",
    );
  if (e.name === "ImageError")
    return new ApiError(400, e.message, "invalid_request_error", "invalid_image", "messages");
  if (["GenerationError", "ConfigError", "TokenizerError"].includes(e.name))
    return new ApiError(400, e.message, "invalid_request_error", "invalid_request", null);
  return new ApiError(500, `Internal error: ${e.message}`, "server_error", "internal_error");
}

const ALLOW: Record<string, string[]> = {
  "/": ["GET", "HEAD"],
  "/health": ["GET", "HEAD"],
  "/v1/models": ["GET", "HEAD"],
  "/v1/chat/completions": ["POST"],
};

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
    "Cache-Control": "no-store",
    ...headers,
  });
  res.end(text);
}

function sendError(res: ServerResponse, e: ApiError): void {
  const headers: Record<string, string> = { ...e.headers };
  if (e.status === 401) headers["WWW-Authenticate"] = 'Bearer realm="tinyllava"';
  // a body we did not read: close the connection rather than parse the rest of it as the next request
  if (e.status === 413) headers.Connection = "close";
  sendJson(res, e.status, e.body(), headers);
}

/** The request body, refused with 413 past `limit` bytes (from Content-Length, or while reading). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = () =>
    new ApiError(
      413,
      `The request body is larger than the ${limit}-byte limit.`,
      "invalid_request_error",
      "body_too_large",
    );
  const declared = Number(req.headers["content-length"] ?? Number.NaN);
  if (declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let over = false;
    req.on("data", (c: Buffer) => {
      if (over) return;
      total += c.length;
      if (total > limit) {
        over = true;
        chunks.length = 0;
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (!over) resolve(Buffer.concat(chunks));
    });
    req.on("error", (err) => reject(err));
  });
}

function keyDigest(k: string): Buffer {
  return createHash("sha256").update(k).digest();
}

export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const limits: ImageLimits = { ...DEFAULT_IMAGE_LIMITS, ...o.images };
  const defaultMaxTokens = o.defaultMaxTokens ?? 512;
  const log = o.log ?? (() => {});
  const scheduler = await Scheduler.start(o.model, o);
  const info = scheduler.info;
  const created = Math.floor(Date.now() / 1000);
  const started = performance.now();
  const apiKey = o.apiKey ? keyDigest(o.apiKey) : null;
  // the body holds at most one base64 image (4/3 of its bytes) and the text of a conversation
  const bodyLimit = Math.ceil((limits.maxBytes * 4) / 3) + 4 * 2 ** 20;

  const authorize = (req: IncomingMessage) => {
    if (!apiKey) return;
    const h = req.headers.authorization;
    const m = h ? /^Bearer\s+(.+)$/i.exec(h.trim()) : null;
    if (!m)
      throw new ApiError(
        401,
        "You didn't provide an API key: send it as 'Authorization: Bearer <key>'.",
        "invalid_request_error",
        "missing_api_key",
      );
    if (!timingSafeEqual(keyDigest((m[1] as string).trim()), apiKey))
      throw new ApiError(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key");
  };

  const health = () => ({
    status: scheduler.healthy ? "ok" : "error",
    ...(scheduler.failureMessage ? { error: scheduler.failureMessage } : {}),
    model: info.id,
    queue_length: scheduler.queueLength,
    in_flight: scheduler.inFlight,
    max_concurrency: scheduler.maxConcurrency,
    max_queue: scheduler.maxQueue,
    completed: scheduler.completed,
    cancelled: scheduler.cancelled,
    aborted: scheduler.aborted,
    auth_required: apiKey !== null,
    uptime_s: Math.round((performance.now() - started) / 1000),
  });

  const modelObject = () => ({ id: info.id, object: "model", created, owned_by: "tinyllava" });

  async function chat(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req, bodyLimit);
    let body: unknown;
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch (e) {
      throw new ApiError(
        400,
        `We could not parse the JSON body of your request (${(e as Error).message}).`,
        "invalid_request_error",
        "invalid_json",
      );
    }
    const c: ChatRequest = parseChatRequest(body, { contextLength: info.contextLength, defaultMaxTokens });
    if (c.system !== null && !info.systemPrompt && info.template !== "raw")
      throw new ApiError(
        400,
        `The model's '${info.template}' template has no system prompt: send the conversation without system messages.`,
        "invalid_request_error",
        "system_message_unsupported",
        "messages",
      );
    const gone = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) gone.abort();
    });
    const image = c.image ? await resolveImage(c.image, limits, gone.signal) : null;
    if (gone.signal.aborted) return;
    const id = `chatcmpl-${randomBytes(12).toString("hex")}`;
    const spec: JobSpec = {
      id,
      turns: c.turns,
      system: c.system,
      image: image ? image.bytes : null,
      params: c.params,
      batchKey: batchKey(c.params, id),
    };
    const job = scheduler.submit(spec);
    gone.signal.addEventListener("abort", () => job.cancel(), { once: true });
    if (gone.signal.aborted) job.cancel();
    const stamp = Math.floor(Date.now() / 1000);
    if (c.stream) await streamAnswer(res, job.events, c, id, stamp);
    else await wholeAnswer(res, job.events, id, stamp, gone.signal);
  }

  async function wholeAnswer(
    res: ServerResponse,
    events: AsyncIterable<JobEvent>,
    id: string,
    stamp: number,
    gone: AbortSignal,
  ): Promise<void> {
    const trim = new DeltaTrimmer();
    let content = "";
    let done: Extract<JobEvent, { type: "done" }> | null = null;
    try {
      for await (const e of events) {
        if (e.type === "delta") content += trim.push(e.text);
        else if (e.type === "done") done = e;
      }
    } catch (e) {
      throw workerError(e as Error);
    }
    if (gone.aborted) return;
    if (!done || done.finishReason === "abort")
      throw new ApiError(503, "The generation was stopped before it finished.", "server_error", "aborted");
    sendJson(res, 200, {
      id,
      object: "chat.completion",
      created: stamp,
      model: info.id,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content, refusal: null },
          logprobs: null,
          finish_reason: done.finishReason,
        },
      ],
      usage: usage(done),
      system_fingerprint: null,
    });
  }

  function usage(d: Extract<JobEvent, { type: "done" }>) {
    return {
      prompt_tokens: d.promptTokens,
      completion_tokens: d.completionTokens,
      total_tokens: d.promptTokens + d.completionTokens,
    };
  }

  async function streamAnswer(
    res: ServerResponse,
    events: AsyncIterable<JobEvent>,
    c: ChatRequest,
    id: string,
    stamp: number,
  ): Promise<void> {
    const trim = new DeltaTrimmer();
    const chunk = (delta: Record<string, unknown>, finish: string | null) => {
      const o: Record<string, unknown> = {
        id,
        object: "chat.completion.chunk",
        created: stamp,
        model: info.id,
        system_fingerprint: null,
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      };
      if (c.includeUsage) o.usage = null;
      return o;
    };
    const write = (o: unknown) => {
      if (!res.writableEnded && !res.destroyed) res.write(`data: ${JSON.stringify(o)}\n\n`);
    };
    let open = false;
    const begin = () => {
      if (open) return;
      open = true;
      // the headers wait for the prefill: a prompt that does not fit still gets a plain 400
      res.writeHead(200, {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache, no-transform",
        Connection: "keep-alive",
        "X-Accel-Buffering": "no",
      });
      res.socket?.setNoDelay(true);
      write(chunk({ role: "assistant", content: "", refusal: null }, null));
    };
    try {
      for await (const e of events) {
        begin();
        if (e.type === "delta") {
          const t = trim.push(e.text);
          if (t) write(chunk({ content: t }, null));
        } else if (e.type === "done") {
          if (e.finishReason === "abort") {
            write(
              new ApiError(503, "The generation was stopped before it finished.", "server_error", "aborted").body(),
            );
          } else {
            write(chunk({}, e.finishReason));
            if (c.includeUsage)
              write({
                id,
                object: "chat.completion.chunk",
                created: stamp,
                model: info.id,
                system_fingerprint: null,
                choices: [],
                usage: usage(e),
              });
          }
          res.write("data: [DONE]\n\n");
          res.end();
          return;
        }
      }
    } catch (err) {
      const api = workerError(err as Error);
      if (!open) throw api;
      // after the headers: the error as an SSE event (the openai client raises it), then the end
      write(api.body());
      res.end();
      return;
    }
    if (open && !res.writableEnded) res.end();
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const method = req.method ?? "GET";
    const modelPath = /^\/v1\/models\/(.+)$/.exec(path);
    const allowed = ALLOW[path] ?? (modelPath ? ["GET", "HEAD"] : null);
    if (!allowed) throw new ApiError(404, `Unknown route ${method} ${path}.`, "invalid_request_error", "unknown_route");
    if (!allowed.includes(method))
      throw new ApiError(
        405,
        `Method ${method} is not allowed on ${path} (allowed: ${allowed.join(", ")}).`,
        "invalid_request_error",
        "method_not_allowed",
        null,
        { Allow: allowed.join(", ") },
      );
    if (path === "/") {
      res.writeHead(200, {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Length": Buffer.byteLength(PAGE_HTML),
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy":
          "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'",
      });
      res.end(PAGE_HTML);
      return;
    }
    if (path === "/health") {
      sendJson(res, scheduler.healthy ? 200 : 503, health());
      return;
    }
    authorize(req);
    if (modelPath) {
      const wanted = decodeURIComponent(modelPath[1] as string);
      if (wanted !== info.id)
        throw new ApiError(
          404,
          `The model '${wanted}' does not exist (this server has '${info.id}').`,
          "invalid_request_error",
          "model_not_found",
          "model",
        );
      sendJson(res, 200, modelObject());
      return;
    }
    if (path === "/v1/models") {
      sendJson(res, 200, { object: "list", data: [modelObject()] });
      return;
    }
    await chat(req, res);
  }

  const server = createServer((req, res) => {
    const t0 = performance.now();
    res.on("finish", () => log(`${req.method} ${req.url} ${res.statusCode} ${Math.round(performance.now() - t0)} ms`));
    route(req, res).catch((err) => {
      const api = err instanceof ApiError ? err : workerError(err as Error);
      if (!res.headersSent) sendError(res, api);
      else if (!res.writableEnded) res.end();
    });
  });
  // a slow client may not hold a connection open forever while sending its request
  server.requestTimeout = 120_000;
  server.headersTimeout = 30_000;
  const host = o.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port ?? 8000, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  log(
    `tinyllava serve: ${info.id} (${info.template} template, ${info.dtype}${info.quantization ? ", int8" : ""}) on ${url}`,
  );
  let closed: Promise<void> | null = null;
  return {
    url,
    port,
    info,
    scheduler,
    server,
    close: () => {
      closed ??= (async () => {
        const done = new Promise<void>((r) => server.close(() => r()));
        server.closeAllConnections();
        await done;
        await scheduler.close();
      })();
      return closed;
    },
  };
}
