// The OpenAI chat-completions request, validated field by field into what the model runs: the conversation (user /
// assistant turns, an optional system text, at most one image) and the generation options. Every wrong type or value
// is a 400 naming the field; parameters the model cannot honour (n > 1, tools, logprobs, penalties other than the
// default) are refused rather than silently ignored.
import type { Turn } from "../processing/templates.js";
import { ApiError, badParam } from "./errors.js";

/** An image as the request gave it (decoded and checked later, see images.ts). */
export type ImageRef =
  | { kind: "base64"; data: string; mime: string | null; param: string }
  | { kind: "url"; url: string; param: string };

export interface GenerationParams {
  maxNewTokens: number;
  /** 0 = greedy */
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  seed: number | null;
  stop: string[];
}

export interface ChatRequest {
  /** alternating user/assistant turns, ending with a user turn */
  turns: Turn[];
  /** the system messages' text (replaces the template's system prompt), or null */
  system: string | null;
  image: ImageRef | null;
  params: GenerationParams;
  stream: boolean;
  includeUsage: boolean;
  /** the `model` field as sent (informational: one model is served) */
  model: string | null;
}

export interface RequestLimits {
  /** most positions the model may see: max_tokens above it is refused */
  contextLength: number;
  /** default max_tokens when the request gives none */
  defaultMaxTokens: number;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);
const typeName = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

function wrongType(param: string, v: unknown, expected: string): ApiError {
  return badParam(param, `Invalid type for '${param}': expected ${expected}, but got ${typeName(v)}.`, "invalid_type");
}

function optNumber(body: Obj, key: string, o: { min: number; max: number; int?: boolean }): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) throw wrongType(key, v, o.int ? "an integer" : "a number");
  if (o.int && !Number.isInteger(v)) throw wrongType(key, v, "an integer");
  if (v < o.min || v > o.max)
    throw badParam(key, `Invalid value for '${key}': ${v} is outside the range [${o.min}, ${o.max}].`);
  return v;
}

function optBool(body: Obj, key: string): boolean | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw wrongType(key, v, "a boolean");
  return v;
}

/** Fields that change what OpenAI would return and that this server cannot do: refused with a 400. */
const UNSUPPORTED: Record<string, (v: unknown) => boolean> = {
  tools: (v) => Array.isArray(v) && v.length > 0,
  functions: (v) => Array.isArray(v) && v.length > 0,
  tool_choice: (v) => v !== "none" && v !== "auto",
  function_call: (v) => v !== "none" && v !== "auto",
  logprobs: (v) => v === true,
  top_logprobs: (v) => typeof v === "number" && v > 0,
  presence_penalty: (v) => typeof v === "number" && v !== 0,
  frequency_penalty: (v) => typeof v === "number" && v !== 0,
  logit_bias: (v) => isObj(v) && Object.keys(v).length > 0,
  response_format: (v) => isObj(v) && v.type !== "text",
  audio: () => true,
  modalities: (v) => Array.isArray(v) && v.some((m) => m !== "text"),
  prediction: () => true,
};

interface Collected {
  role: "system" | "user" | "assistant";
  text: string;
}

/** Text (and the image, for user messages) of one message's content. */
function contentOf(content: unknown, role: string, param: string, images: ImageRef[]): string {
  if (typeof content === "string") return content;
  if (content === null || content === undefined) {
    if (role === "assistant") return "";
    throw badParam(param, `'${param}' is required for ${role} messages.`, "missing_required_parameter");
  }
  if (!Array.isArray(content)) throw wrongType(param, content, "a string or an array of content parts");
  const texts: string[] = [];
  content.forEach((part, j) => {
    const p = `${param}[${j}]`;
    if (!isObj(part)) throw wrongType(p, part, "an object");
    const type = part.type;
    if (type === "text" || (type === "refusal" && role === "assistant")) {
      const t = type === "text" ? part.text : part.refusal;
      if (typeof t !== "string") throw wrongType(`${p}.${type}`, t, "a string");
      texts.push(t);
    } else if (type === "image_url") {
      if (role !== "user")
        throw badParam(p, `Images are only accepted in user messages (found one in a ${role} message).`);
      const iu = part.image_url;
      const url = typeof iu === "string" ? iu : isObj(iu) ? iu.url : undefined;
      if (typeof url !== "string" || url.length === 0)
        throw wrongType(`${p}.image_url.url`, isObj(iu) ? iu.url : iu, "a non-empty string");
      images.push(imageRef(url.trim(), `${p}.image_url.url`));
    } else if (typeof type !== "string") {
      throw wrongType(`${p}.type`, type, "a string");
    } else {
      throw badParam(
        `${p}.type`,
        `Unsupported content part type '${type}' in a ${role} message: this server accepts 'text' and 'image_url' parts.`,
        "unsupported_content_type",
      );
    }
  });
  // as OpenAI: the text parts of one message read as one text
  return texts.join("\n");
}

/** A data: URL, an http(s) URL, or a bare base64 string. */
export function imageRef(url: string, param: string): ImageRef {
  if (/^https?:\/\//i.test(url)) return { kind: "url", url, param };
  if (/^data:/i.test(url)) {
    const m = /^data:([^;,]*)((?:;[^;,]*)*),(.*)$/is.exec(url);
    if (!m) throw badParam(param, "Invalid data URL: expected 'data:image/<type>;base64,<data>'.", "invalid_image_url");
    const mime = (m[1] ?? "").trim().toLowerCase();
    const isBase64 = (m[2] ?? "").split(";").some((x) => x.trim().toLowerCase() === "base64");
    if (mime && !mime.startsWith("image/"))
      throw badParam(param, `The data URL's media type is '${mime}', not an image.`, "invalid_image_format");
    if (!isBase64)
      throw badParam(param, "Only base64 data URLs are accepted ('data:image/<type>;base64,…').", "invalid_image_url");
    return { kind: "base64", data: m[3] ?? "", mime: mime || null, param };
  }
  // base64 has no ':', so anything with a scheme is a URL this server does not fetch
  if (/^[a-z][a-z0-9+.-]*:/i.test(url))
    throw badParam(
      param,
      `Unsupported image URL scheme '${url.slice(0, url.indexOf(":"))}:': send a data: URL, base64, or an http(s) URL.`,
      "invalid_image_url",
    );
  return { kind: "base64", data: url, mime: null, param };
}

/** The message list → system text, alternating turns (consecutive messages of one role are joined), the image. */
function conversation(messages: unknown): { system: string | null; turns: Turn[]; image: ImageRef | null } {
  if (messages === undefined || messages === null)
    throw badParam("messages", "Missing required parameter: 'messages'.", "missing_required_parameter");
  if (!Array.isArray(messages)) throw wrongType("messages", messages, "an array");
  if (messages.length === 0) throw badParam("messages", "'messages' must contain at least one message.", "empty_array");
  const images: ImageRef[] = [];
  const collected: Collected[] = [];
  messages.forEach((m, i) => {
    const p = `messages[${i}]`;
    if (!isObj(m)) throw wrongType(p, m, "an object");
    const role = m.role;
    if (typeof role !== "string") throw wrongType(`${p}.role`, role, "a string");
    const r = role === "developer" ? "system" : role;
    if (r !== "system" && r !== "user" && r !== "assistant")
      throw badParam(
        `${p}.role`,
        `Unsupported role '${role}': this server accepts 'system' (or 'developer'), 'user' and 'assistant' messages.`,
        "unsupported_role",
      );
    if (r === "assistant" && (m.tool_calls !== undefined || m.function_call !== undefined))
      throw badParam(`${p}.tool_calls`, "Tool calls are not supported.", "unsupported_parameter");
    collected.push({ role: r, text: contentOf(m.content, r, `${p}.content`, images) });
  });
  if (images.length > 1)
    throw badParam(
      images[1]?.param ?? "messages",
      `This model takes one image per conversation; the request has ${images.length}. Start a new conversation for another image.`,
      "too_many_images",
    );
  const firstOther = collected.findIndex((c) => c.role !== "system");
  const systems = collected.filter((c) => c.role === "system");
  if (firstOther >= 0 && collected.slice(firstOther).some((c) => c.role === "system"))
    throw badParam(
      "messages",
      "System messages must come before the first user message (the template has one system prompt, at the start).",
      "invalid_message_order",
    );
  const turns: Turn[] = [];
  for (const c of collected) {
    if (c.role === "system") continue;
    const last = turns[turns.length - 1];
    if (last && last.role === c.role) last.content = `${last.content}\n${c.text}`;
    else turns.push({ role: c.role, content: c.text });
  }
  if (turns.length === 0) throw badParam("messages", "The conversation has no user message.", "missing_user_message");
  if (turns[0]?.role !== "user")
    throw badParam(
      "messages",
      "The conversation must start with a user message (after any system messages).",
      "invalid_message_order",
    );
  if (turns[turns.length - 1]?.role !== "user")
    throw badParam(
      "messages",
      "The last message must be a user message: the model answers it (continuing an assistant message is not supported).",
      "invalid_message_order",
    );
  return {
    system: systems.length > 0 ? systems.map((s) => s.text).join("\n") : null,
    turns,
    image: images[0] ?? null,
  };
}

function stopStrings(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list)) throw wrongType("stop", v, "a string or an array of strings");
  if (list.length > 4) throw badParam("stop", `'stop' takes at most 4 sequences (got ${list.length}).`);
  list.forEach((s, i) => {
    if (typeof s !== "string") throw wrongType(`stop[${i}]`, s, "a string");
    if (s.length === 0) throw badParam(`stop[${i}]`, "Stop sequences must not be empty.");
  });
  return list as string[];
}

/** Validates a parsed JSON body of POST /v1/chat/completions. */
export function parseChatRequest(body: unknown, limits: RequestLimits): ChatRequest {
  if (!isObj(body))
    throw new ApiError(
      400,
      `The request body must be a JSON object (got ${typeName(body)}).`,
      "invalid_request_error",
      "invalid_type",
    );
  for (const [key, refused] of Object.entries(UNSUPPORTED)) {
    if (body[key] !== undefined && body[key] !== null && refused(body[key]))
      throw badParam(key, `'${key}' is not supported by this server.`, "unsupported_parameter");
  }
  if (body.model !== undefined && body.model !== null && typeof body.model !== "string")
    throw wrongType("model", body.model, "a string");
  const n = optNumber(body, "n", { min: 1, max: 128, int: true });
  if (n !== undefined && n !== 1)
    throw badParam("n", `'n' must be 1: this server returns one choice per request (got ${n}).`, "unsupported_value");
  const maxKey =
    body.max_completion_tokens !== undefined && body.max_completion_tokens !== null
      ? "max_completion_tokens"
      : "max_tokens";
  const maxTokens = optNumber(body, maxKey, { min: 1, max: limits.contextLength, int: true });
  const temperature = optNumber(body, "temperature", { min: 0, max: 2 }) ?? 1;
  const topP = optNumber(body, "top_p", { min: 0, max: 1 }) ?? 1;
  const topK = optNumber(body, "top_k", { min: 0, max: 1_000_000, int: true }) ?? 0;
  const repetitionPenalty = optNumber(body, "repetition_penalty", { min: 0.01, max: 100 }) ?? 1;
  const seed = optNumber(body, "seed", { min: 0, max: Number.MAX_SAFE_INTEGER, int: true }) ?? null;
  const stream = optBool(body, "stream") ?? false;
  let includeUsage = false;
  const so = body.stream_options;
  if (so !== undefined && so !== null) {
    if (!isObj(so)) throw wrongType("stream_options", so, "an object");
    if (!stream) throw badParam("stream_options", "'stream_options' is only allowed when 'stream' is true.");
    includeUsage = optBool(so, "include_usage") ?? false;
  }
  const { system, turns, image } = conversation(body.messages);
  return {
    turns,
    system,
    image,
    params: {
      maxNewTokens: maxTokens ?? Math.min(limits.defaultMaxTokens, limits.contextLength),
      // top_p 0 keeps only the most likely token: greedy
      temperature: topP === 0 ? 0 : temperature,
      topP: topP === 0 ? 1 : topP,
      topK,
      repetitionPenalty,
      seed,
      stop: stopStrings(body.stop),
    },
    stream,
    includeUsage,
    model: typeof body.model === "string" ? body.model : null,
  };
}

/** Requests with equal keys can run as one batch (one GenerationRun has one set of options). A seeded request runs
 * alone, so that its seed alone decides its text. */
export function batchKey(p: GenerationParams, id: string): string {
  if (p.seed !== null && p.temperature > 0) return `seeded:${id}`;
  const sampling = p.temperature > 0 ? [p.temperature, p.topP, p.topK] : [0];
  return JSON.stringify([p.maxNewTokens, p.repetitionPenalty, p.stop, ...sampling]);
}
