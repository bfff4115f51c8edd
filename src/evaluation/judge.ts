// An LLM judge over any OpenAI-compatible chat-completions endpoint (Node's fetch, no SDK): retries with
// exponential backoff on 429 / 5xx / network errors (Retry-After honoured), and a judgement cache on disk keyed by
// the hash of the whole request (model, messages, sampling parameters, run index), so reruns don't re-ask.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { EvaluationError } from "./errors.js";
import { writeFileAtomic } from "./jsonio.js";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatRequest {
  messages: ChatMessage[];
  temperature: number;
  max_tokens: number;
  /** distinguishes repeated runs of the same request (MM-Vet's --num_run) in the cache */
  run?: number;
}

export interface ChatReply {
  /** choices[0].message.content; null when the endpoint returned none */
  content: string | null;
  /** the model name the endpoint reports */
  model: string;
  cached: boolean;
}

export interface JudgeOptions {
  /** base URL (".../v1") or the full ".../chat/completions" URL */
  url: string;
  model: string;
  apiKey?: string;
  /** folder of cached judgements; none → no cache */
  cacheDir?: string;
  /** attempts after the first (default 6) */
  maxRetries?: number;
  /** first backoff delay (default 1000 ms), doubled per retry, capped at 60 s */
  retryBaseMs?: number;
  /** per-request timeout (default 120 s) */
  timeoutMs?: number;
  log?: (msg: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Judge {
  /** HTTP requests sent (including failed attempts) */
  requests = 0;
  /** replies served from the cache */
  cacheHits = 0;
  private readonly endpoint: string;

  constructor(readonly opts: JudgeOptions) {
    const u = opts.url.replace(/\/+$/, "");
    this.endpoint = u.endsWith("/chat/completions") ? u : `${u}/chat/completions`;
    if (!/^https?:\/\//.test(this.endpoint))
      throw new EvaluationError(`--judge-url ${opts.url}: expected an http(s) URL`);
  }

  /** The cache key: sha256 of the canonical request. */
  key(req: ChatRequest): string {
    const canonical = JSON.stringify({
      model: this.opts.model,
      messages: req.messages.map((m) => [m.role, m.content]),
      temperature: req.temperature,
      max_tokens: req.max_tokens,
      run: req.run ?? 0,
    });
    return createHash("sha256").update(canonical).digest("hex");
  }

  async complete(req: ChatRequest): Promise<ChatReply> {
    const key = this.key(req);
    const cachePath = this.opts.cacheDir ? join(this.opts.cacheDir, `${key}.json`) : null;
    if (cachePath && existsSync(cachePath)) {
      try {
        const hit = JSON.parse(readFileSync(cachePath, "utf8")) as { reply: { content: string | null; model: string } };
        this.cacheHits++;
        return { ...hit.reply, cached: true };
      } catch {
        // a torn or foreign file: ask again and overwrite it
      }
    }
    const reply = await this.send(req);
    if (cachePath) {
      writeFileAtomic(
        cachePath,
        `${JSON.stringify({ model: this.opts.model, request: { ...req }, reply }, null, 1)}\n`,
      );
    }
    return { ...reply, cached: false };
  }

  private async send(req: ChatRequest): Promise<{ content: string | null; model: string }> {
    const maxRetries = this.opts.maxRetries ?? 6;
    const base = this.opts.retryBaseMs ?? 1000;
    const body = JSON.stringify({
      model: this.opts.model,
      messages: req.messages,
      temperature: req.temperature,
      max_tokens: req.max_tokens,
    });
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.opts.apiKey) headers.authorization = `Bearer ${this.opts.apiKey}`;
    let lastProblem = "";
    for (let attempt = 0; attempt <= maxRetries; attempt++) {
      let retryAfterMs: number | null = null;
      this.requests++;
      try {
        const res = await fetch(this.endpoint, {
          method: "POST",
          headers,
          body,
          signal: AbortSignal.timeout(this.opts.timeoutMs ?? 120_000),
        });
        const text = await res.text();
        if (res.ok) return parseReply(text, this.endpoint);
        lastProblem = `HTTP ${res.status}: ${text.slice(0, 300)}`;
        if (res.status !== 429 && res.status < 500) throw new EvaluationError(`judge ${this.endpoint}: ${lastProblem}`);
        const ra = Number(res.headers.get("retry-after"));
        if (Number.isFinite(ra) && ra >= 0) retryAfterMs = ra * 1000;
      } catch (e) {
        if (e instanceof EvaluationError) throw e;
        lastProblem = `${(e as Error).name}: ${(e as Error).message}`;
      }
      if (attempt === maxRetries) break;
      const delay = retryAfterMs ?? Math.min(60_000, base * 2 ** attempt);
      this.opts.log?.(`judge: ${lastProblem}; retrying in ${delay} ms (${attempt + 1}/${maxRetries})`);
      await sleep(delay);
    }
    throw new EvaluationError(`judge ${this.endpoint}: giving up after ${maxRetries + 1} attempts (${lastProblem})`);
  }
}

function parseReply(text: string, endpoint: string): { content: string | null; model: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new EvaluationError(`judge ${endpoint}: the reply is not JSON: ${text.slice(0, 200)}`);
  }
  const choices = (json as { choices?: unknown }).choices;
  const first = Array.isArray(choices) ? (choices[0] as { message?: { content?: unknown } } | undefined) : undefined;
  if (!first || typeof first.message !== "object" || first.message === null) {
    throw new EvaluationError(`judge ${endpoint}: the reply has no choices[0].message: ${text.slice(0, 200)}`);
  }
  const content = first.message.content;
  const model = (json as { model?: unknown }).model;
  return { content: typeof content === "string" ? content : null, model: typeof model === "string" ? model : "" };
}

/** The API key from the environment variable named by --judge-key-env (none → no Authorization header). */
export function apiKeyFromEnv(name: string | undefined): string | undefined {
  if (!name) return undefined;
  const v = process.env[name];
  if (v === undefined || v === "")
    throw new EvaluationError(`--judge-key-env ${name}: the environment variable is not set`);
  return v;
}
