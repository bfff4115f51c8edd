// TinyLLaVA Factory's conversation templates (tinyllava/data/template/*.py), exactly:
//   system S + " ", then per round "USER: {q} " + "ASSISTANT: {a}{eos}", where eos is the family's end-of-text string
//   (phi, qwen2_base: <|endoftext|>; qwen2_instruct: <|im_end|>; llama: </s>; gemma: <eos>). A question containing
//   "<image>" has every "<image>" removed, is stripped, and gets "<image>\n" in front (Template._prompt). The
//   inference prompt ends with "ASSISTANT:" without a trailing space (StringFormatter with content None).
//   `pretrain` renders "<image>{caption}\n" per round (no system, the question is dropped); `raw` is verbatim.
// Training labels reproduce Template.make_labels/_make_masks: the prompt is split into rounds at the eos string, each
// round into instruction | answer at " ASSISTANT: ", and the token counts of those pieces (tokenised on their own,
// as Factory does) decide which positions are −100. Unlike Factory, a count that disagrees with the real token count
// throws (Factory prints a warning and masks the whole sample).
import { IMAGE_PLACEHOLDER } from "../config/index.js";
import { ConfigError, TinyllavaError } from "../errors.js";
import type { TinyTokenizer } from "./tokenizer.js";

export const SYSTEM =
  "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

/** The image token in prompts (Factory's DEFAULT_IMAGE_TOKEN); tokenised as the placeholder −200. */
export const IMAGE_TOKEN = "<image>";
/** Label of positions without loss (the same value as models/tinyllava.ts IGNORE_INDEX). */
const IGNORE_INDEX = -100;
/** Factory's separator[0]: splits a round into the instruction and the answer. */
export const ROUND_SEPARATOR = " ASSISTANT: ";

export interface Turn {
  role: "user" | "assistant";
  content: string;
}

/** How Factory counts a round's tokens: `base` (Template._make_masks; phi, qwen2_*), `llama` (BOS first, and one token
 * less per later round for non-legacy Llama tokenizers), `gemma` (BOS first). */
export type MaskStyle = "base" | "llama" | "gemma";

export interface Template {
  name: string;
  /** appended after each assistant answer (Factory's separator[1], the "eos_token" of make_labels) */
  sep: string;
  masking: MaskStyle;
}

export const TEMPLATES: Record<string, Template> = {
  phi: { name: "phi", sep: "<|endoftext|>", masking: "base" },
  qwen2_base: { name: "qwen2_base", sep: "<|endoftext|>", masking: "base" },
  llama: { name: "llama", sep: "</s>", masking: "llama" },
  gemma: { name: "gemma", sep: "<eos>", masking: "gemma" },
  qwen2_instruct: { name: "qwen2_instruct", sep: "<|im_end|>", masking: "base" },
};

export type TemplateName = keyof typeof TEMPLATES | "pretrain" | "raw";

/** The default template for an LLM family (HF model_type). */
export function defaultTemplate(modelType: string): TemplateName {
  switch (modelType) {
    case "phi":
      return "phi";
    case "qwen2":
    case "qwen3":
      return "qwen2_base";
    case "gemma":
      return "gemma";
    case "stablelm":
      return "phi"; // Factory trains StableLM-2 with the phi template (<|endoftext|> separator)
    default:
      return "llama";
  }
}

function templateOf(name: string): Template {
  const tpl = TEMPLATES[name];
  if (!tpl)
    throw new ConfigError(
      `unknown conversation template "${name}"; known: ${[...Object.keys(TEMPLATES), "pretrain", "raw"].join(", ")}`,
    );
  return tpl;
}

// ---- Python string semantics (Factory strips questions with str.strip and counts words with str.split) ----
// Python's str.isspace set: JavaScript's \s lacks \x1c-\x1f and \x85, and has \ufeff, which Python does not.
const PY_SPACE = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "g");
const PY_SPLIT = new RegExp(`[${PY_SPACE}]+`);

/** Python's str.strip(). */
export function pyStrip(s: string): string {
  return s.replace(PY_STRIP, "");
}

/** len(s.split()) in Python: the number of whitespace-separated words. */
export function pyWordCount(s: string): number {
  let n = 0;
  for (const w of s.split(PY_SPLIT)) if (w.length > 0) n++;
  return n;
}

/** Factory's question formatting: a question with "<image>" anywhere gets every "<image>" removed, is stripped and
 * gets "<image>\n" in front, then is stripped again (format_image_token "<image>\n{{content}}" + .strip()). */
export function formatQuestion(question: string): string {
  if (!question.includes(IMAGE_TOKEN)) return question;
  return pyStrip(`${IMAGE_TOKEN}\n${pyStrip(question.replaceAll(IMAGE_TOKEN, ""))}`);
}

export interface RenderedSegment {
  text: string;
  /** true for assistant answers with their closing eos string (what training supervises) */
  target: boolean;
}

export interface RenderOptions {
  /** put "<image>" in the first user message (Factory's eval scripts prepend "<image>\n" to the question) */
  hasImage?: boolean;
  /** end with "ASSISTANT:" for the model to continue; the turns must then end with a user turn */
  forGeneration?: boolean;
}

function checkTurns(turns: Turn[], forGeneration: boolean): void {
  turns.forEach((t, i) => {
    const want = i % 2 === 0 ? "user" : "assistant";
    if (t.role !== want)
      throw new ConfigError(
        `conversation: turn ${i} is "${t.role}"; expected "${want}" (turns alternate user/assistant, starting with user)`,
      );
  });
  if (forGeneration && turns.length % 2 !== 1)
    throw new ConfigError(
      `conversation: a generation prompt needs the turns to end with a user turn (got ${turns.length} turns)`,
    );
  if (!forGeneration && (turns.length === 0 || turns.length % 2 !== 0))
    throw new ConfigError(
      `conversation: a training conversation needs complete user/assistant rounds (got ${turns.length} turns)`,
    );
}

/** Renders a conversation as segments; concatenated they are the prompt text. With `forGeneration`, ends with
 * "ASSISTANT:" for the model to continue. `hasImage` puts "<image>\n" before the first user message. */
export function renderConversation(name: TemplateName, turns: Turn[], opts: RenderOptions = {}): RenderedSegment[] {
  if (name === "raw") return turns.map((t) => ({ text: t.content, target: t.role === "assistant" }));
  const forGeneration = opts.forGeneration ?? false;
  const tpl = name === "pretrain" ? null : templateOf(name);
  checkTurns(turns, forGeneration);
  if (!tpl) {
    // PretrainTemplate: no system, format_user is the constant "<image>" (the question is dropped, and the
    // placeholder is there even for text-only samples), format_assistant "{caption}\n".
    if (forGeneration) return [{ text: opts.hasImage === false ? "" : IMAGE_TOKEN, target: false }];
    return turns.map(
      (t): RenderedSegment =>
        t.role === "user" ? { text: IMAGE_TOKEN, target: false } : { text: `${t.content}\n`, target: true },
    );
  }
  const segs: RenderedSegment[] = [{ text: `${SYSTEM} `, target: false }];
  turns.forEach((t, i) => {
    if (t.role === "user") {
      const q =
        i === 0 && opts.hasImage && !t.content.includes(IMAGE_TOKEN) ? `${IMAGE_TOKEN}\n${t.content}` : t.content;
      segs.push({ text: `USER: ${formatQuestion(q)} `, target: false });
    } else {
      segs.push({ text: "ASSISTANT: ", target: false });
      segs.push({ text: `${t.content}${tpl.sep}`, target: true });
    }
  });
  if (forGeneration) segs.push({ text: "ASSISTANT:", target: false });
  return segs;
}

/** The whole prompt text of a conversation. */
export function renderPrompt(name: TemplateName, turns: Turn[], opts: RenderOptions = {}): string {
  return renderConversation(name, turns, opts)
    .map((s) => s.text)
    .join("");
}

/** The prompt for chat generation: the history (ending with the new user message) rendered so that the model
 * continues the assistant turn ("... USER: q2 ASSISTANT:"), as Factory's Message + encode(mode='eval'). For
 * `pretrain` the prompt is "<image>" (Factory's formatter would render the literal "<image>{{content}}\n:" there, a
 * bug no trained model relies on). */
export function generationPrompt(name: TemplateName, history: Turn[], opts: { hasImage?: boolean } = {}): string {
  return renderPrompt(name, history, { ...opts, forGeneration: true });
}

/** The prompt text for one question (inference). */
export function promptFor(name: TemplateName, question: string, opts: { hasImage?: boolean } = {}): string {
  return generationPrompt(name, [{ role: "user", content: question }], opts);
}

// ---- training: token ids and Factory's label mask ----

/** The label mask disagrees with the tokenisation (Factory's "WARNING: tokenization mismatch"). */
export class LabelMaskError extends TinyllavaError {
  constructor(
    message: string,
    /** Factory's cur_len (tokens accounted for by the rounds) and total_len (what the prompt has) */
    readonly curLen: number,
    readonly totalLen: number,
  ) {
    super(message);
  }
}

export interface LabelOptions {
  /** tokenizer.pad_token_id as Factory sets it (default: the tokenizer's pad, else its eos) */
  padTokenId?: number | null;
  /** tokenizer.eos_token_id (default: the tokenizer's) */
  eosTokenId?: number | null;
  /** tokenizer.model_max_length: Factory checks the counts only when cur_len is below it (default: no limit) */
  modelMaxLength?: number;
  /** the Llama tokenizer's `legacy` flag (default: tokenizer_config.json's, else true as transformers) */
  legacy?: boolean;
  /** prefix of the mismatch error (e.g. the file and sample id) */
  where?: string;
}

export interface TrainingEncoding {
  prompt: string;
  /** Factory's tokenizer_image_token ids of the whole prompt (−200 for "<image>"), not truncated */
  inputIds: number[];
  /** inputIds with −100 outside the supervised spans (image placeholders are −100 too), not truncated */
  labels: number[];
  /** Factory's cur_len and total_len (equal unless cur_len reached model_max_length) */
  curLen: number;
  totalLen: number;
}

/** Python slice assignment labels[start:end] = −100 (end may be negative, counted from the end, as in Python). */
function maskSlice(labels: number[], start: number, end = labels.length): void {
  const n = labels.length;
  const b = end < 0 ? Math.max(0, n + end) : Math.min(end, n);
  for (let i = Math.max(0, start); i < b; i++) labels[i] = IGNORE_INDEX;
}

/** Template._make_masks and the Llama/Gemma overrides: masks each round's instruction, returns cur_len. */
function makeMasks(labels: number[], prompt: string, tpl: Template, tokenizer: TinyTokenizer, legacy: boolean): number {
  const len = (text: string) => tokenizer.encodeWithImages(text).length;
  const rounds = prompt.split(tpl.sep);
  // base (phi, qwen2_base, qwen2_instruct; Factory has no family-specific adjustment for them): the split removed the
  // eos string, so a round is its own tokens + len(tokenizer.encode(eos)) — the "+1" per round; the instruction,
  // tokenised alone, ends in a token for the trailing space of "ASSISTANT: ", which in the full prompt belongs to
  // (or stands right before) the answer's first token, hence −1: the token holding that space is supervised.
  // Llama/Gemma: every piece was tokenised with a BOS of its own (−1 each), the eos counts 1, and the sequence
  // starts with the one real BOS (masked).
  const withBos = tpl.masking !== "base";
  const eosLength = withBos ? 1 : tokenizer.encode(tpl.sep).length;
  const bosLength = withBos ? 1 : 0;
  let cur = withBos ? 1 : 0;
  if (withBos) maskSlice(labels, 0, 1);
  for (let i = 0; i < rounds.length; i++) {
    const rou = rounds[i] as string;
    if (rou === "") break;
    const parts = rou.split(ROUND_SEPARATOR);
    if (parts.length !== 2) break;
    let roundLen = len(rou) + eosLength - bosLength;
    let instructionLen = len(parts[0] + ROUND_SEPARATOR) - 1 - bosLength;
    // llama_template.py: a non-legacy Llama tokenizer (tokenizers >= 0.14) gives a later round, tokenised on its
    // own, one token more (a prefix "▁") than it has after the previous "</s>" in the full prompt
    if (tpl.masking === "llama" && i !== 0 && !legacy) {
      roundLen -= 1;
      instructionLen -= 1;
    }
    maskSlice(labels, cur, cur + instructionLen);
    cur += roundLen;
  }
  maskSlice(labels, cur);
  return cur;
}

/** A training conversation as Factory's Template.encode(mode='train'): the prompt, its ids (−200 for the image) and
 * the labels. Throws LabelMaskError where Factory would print "tokenization mismatch" and mask everything. */
export function encodeForTraining(
  name: Exclude<TemplateName, "raw">,
  turns: Turn[],
  tokenizer: TinyTokenizer,
  opts: LabelOptions = {},
): TrainingEncoding {
  const prompt = renderPrompt(name, turns);
  const inputIds = tokenizer.encodeWithImages(prompt);
  const labels = inputIds.slice();
  if (name === "pretrain") {
    // PretrainTemplate.make_labels: only the leading "<image>" (with the BOS, if any) is masked; no count check
    maskSlice(labels, 0, tokenizer.encodeWithImages(IMAGE_TOKEN).length);
    return {
      prompt,
      inputIds,
      labels: placeholdersIgnored(labels),
      curLen: inputIds.length,
      totalLen: inputIds.length,
    };
  }
  const tpl = templateOf(name);
  const pad = opts.padTokenId !== undefined ? opts.padTokenId : tokenizer.padTokenId;
  const eos = opts.eosTokenId !== undefined ? opts.eosTokenId : tokenizer.eosTokenId;
  if (pad === null || pad === undefined)
    throw new ConfigError(`${tokenizer.source}: the tokenizer has no pad (or eos) token; training needs a pad id`);
  // make_labels: total_len counts the non-pad tokens; when pad == eos every real eos was not counted, so Factory adds
  // back the number of eos strings in the prompt (exact when the string is that one token)
  let totalLen = inputIds.filter((t) => t !== pad).length;
  if (pad === eos) totalLen += prompt.split(tpl.sep).length - 1;
  const legacy = opts.legacy ?? tokenizer.config.legacy !== false;
  const curLen = makeMasks(labels, prompt, tpl, tokenizer, legacy);
  const max = opts.modelMaxLength ?? Number.POSITIVE_INFINITY;
  if (curLen < max && curLen !== totalLen) {
    throw new LabelMaskError(
      `${opts.where ? `${opts.where}: ` : ""}tokenization mismatch with template "${name}": the rounds account for ${curLen} tokens but the prompt has ${totalLen} (Factory would mask the whole sample); check the template, the tokenizer's pad/eos ids (pad ${pad}, eos ${eos}) and its legacy flag`,
      curLen,
      totalLen,
    );
  }
  return { prompt, inputIds, labels: placeholdersIgnored(labels), curLen, totalLen };
}

/** Factory leaves −200 in the labels of later pretrain rounds; the model ignores image positions, so −100 is the same
 * outcome and keeps the labels valid class indices. */
function placeholdersIgnored(labels: number[]): number[] {
  for (let i = 0; i < labels.length; i++) if (labels[i] === IMAGE_PLACEHOLDER) labels[i] = IGNORE_INDEX;
  return labels;
}
