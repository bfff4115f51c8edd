// The demo's tokenizer: a byte-level BPE in Qwen2's format (the same NFC normaliser, pre-tokeniser regex, ByteLevel
// alphabet and decoder as Qwen2's tokenizer.json), with merges learned from the demo's own corpus until every word of
// it is one token. Why byte-level BPE rather than a word-level vocabulary: every string — a chat user's typo, a
// digit, an emoji — encodes and decodes exactly (the 256 byte tokens are always there), spaces and newlines are part
// of the tokens so decode(encode(s)) === s with no detokenisation rules, and Factory's label masking (which counts
// tokens of pieces split at " ASSISTANT: " and at the EOS string) behaves as with the real Qwen2 tokenizer.
// Special tokens: <|endoftext|> (id 0; eos and pad, as Qwen2 base) and <image> (id 1).
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Json } from "../../config/index.js";
import { IMAGE_TOKEN, renderPrompt, type TemplateName } from "../../processing/templates.js";
import { TinyTokenizer } from "../../processing/tokenizer.js";
import { type LlavaRecord, toTurns } from "../data/llava-json.js";

export const EOS_TOKEN = "<|endoftext|>";
export const SPECIAL_TOKENS = [EOS_TOKEN, IMAGE_TOKEN] as const;

/** Qwen2's pre-tokeniser regex, as written in its tokenizer.json (Rust regex syntax). */
export const QWEN2_SPLIT_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// The same in JavaScript syntax (no inline (?i:…) group in Node 20); only used to count words when learning merges —
// the tokenizer itself runs the string above.
const SPLIT =
  /'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/** GPT-2's bytes_to_unicode: the printable character that stands for each byte in byte-level vocabularies. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  return out;
}

const BYTE_CHARS = bytesToUnicode();
const ENCODER = new TextEncoder();

/** Text → its pre-tokens in the byte-level alphabet (special tokens must be split off before). */
export function preTokenize(text: string): string[] {
  const out: string[] = [];
  for (const m of text.normalize("NFC").matchAll(SPLIT)) {
    let s = "";
    for (const b of ENCODER.encode(m[0])) s += BYTE_CHARS[b];
    out.push(s);
  }
  return out;
}

/** The pieces of a text between special tokens (what the pre-tokeniser sees). */
export function splitSpecial(text: string): string[] {
  let pieces = [text];
  for (const sp of SPECIAL_TOKENS) pieces = pieces.flatMap((p) => p.split(sp));
  return pieces.filter((p) => p.length > 0);
}

export interface BpeOptions {
  /** stop after this many merges (default: until every corpus word is one token) */
  maxMerges?: number;
  /** a pair must occur this often to be merged (default 1) */
  minFrequency?: number;
}

/** Learns BPE merges on the words of the texts: repeatedly the most frequent adjacent pair (ties: the smaller pair in
 * code-unit order, so the result is deterministic) is merged everywhere. */
export function learnMerges(texts: Iterable<string>, opts: BpeOptions = {}): [string, string][] {
  const counts = new Map<string, number>();
  for (const t of texts)
    for (const piece of splitSpecial(t)) for (const w of preTokenize(piece)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([w, n]) => ({ symbols: [...w], n }));
  const merges: [string, string][] = [];
  const maxMerges = opts.maxMerges ?? Number.POSITIVE_INFINITY;
  const minFrequency = opts.minFrequency ?? 1;
  const SEP = "\u0000";
  while (merges.length < maxMerges) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words)
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i] + SEP + symbols[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    let best: string | null = null;
    let bestN = 0;
    for (const [k, n] of pairs) if (n > bestN || (n === bestN && best !== null && k < best)) [best, bestN] = [k, n];
    if (best === null || bestN < minFrequency) break;
    const [a, b] = best.split(SEP) as [string, string];
    merges.push([a, b]);
    const ab = a + b;
    for (const w of words) {
      const s = w.symbols;
      const merged: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          merged.push(ab);
          i++;
        } else merged.push(s[i] as string);
      }
      w.symbols = merged;
    }
  }
  return merges;
}

function addedToken(id: number, content: string): Json {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/** A tokenizer.json (HF tokenizers format, Qwen2's pipeline) with the given merges: ids 0–1 the special tokens,
 * 2–257 the byte alphabet in byte order, then one token per merge. */
export function byteLevelTokenizerJson(merges: [string, string][]): Json {
  const vocab: Record<string, number> = {};
  let id = 0;
  for (const sp of SPECIAL_TOKENS) vocab[sp] = id++;
  for (const c of BYTE_CHARS) vocab[c] = id++;
  for (const [a, b] of merges) {
    const t = a + b;
    if (vocab[t] === undefined) vocab[t] = id++;
  }
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((t, i) => addedToken(i, t)),
    normalizer: { type: "NFC" },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: QWEN2_SPLIT_REGEX }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    post_processor: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

/** tokenizer_config.json as Qwen2 base ships it: no BOS, eos = pad = <|endoftext|>, no space clean-up on decode (the
 * JS tokenizers library defaults clean_up_tokenization_spaces to true, which would turn " ." into "."). */
export function demoTokenizerConfig(modelMaxLength: number): Json {
  return {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: Object.fromEntries(
      SPECIAL_TOKENS.map((t, i) => {
        const { id: _id, ...rest } = addedToken(i, t);
        return [String(i), rest];
      }),
    ),
    additional_special_tokens: [IMAGE_TOKEN],
    bos_token: null,
    clean_up_tokenization_spaces: false,
    eos_token: EOS_TOKEN,
    errors: "replace",
    model_max_length: modelMaxLength,
    pad_token: EOS_TOKEN,
    padding_side: "right",
    split_special_tokens: false,
    tokenizer_class: "Qwen2Tokenizer",
    unk_token: null,
  };
}

/** The texts the tokenizer must know: every record rendered with the template it is trained with, and the
 * generation prompt of every question (what the model sees at evaluation and in chat). */
export function demoCorpus(sets: { records: LlavaRecord[]; template: Exclude<TemplateName, "raw"> }[]): string[] {
  const out: string[] = [];
  for (const { records, template } of sets)
    for (const r of records) {
      const turns = toTurns(r);
      out.push(renderPrompt(template, turns));
      if (template !== "pretrain") out.push(renderPrompt(template, turns.slice(0, 1), { forGeneration: true }));
    }
  return out;
}

export interface DemoTokenizerFiles {
  "tokenizer.json": Json;
  "tokenizer_config.json": Json;
  "special_tokens_map.json": Json;
}

/** The tokenizer files for a corpus. */
export function demoTokenizerFiles(
  corpus: Iterable<string>,
  opts: BpeOptions & { modelMaxLength?: number } = {},
): DemoTokenizerFiles {
  return {
    "tokenizer.json": byteLevelTokenizerJson(learnMerges(corpus, opts)),
    "tokenizer_config.json": demoTokenizerConfig(opts.modelMaxLength ?? 256),
    "special_tokens_map.json": {
      additional_special_tokens: [IMAGE_TOKEN],
      eos_token: EOS_TOKEN,
      pad_token: EOS_TOKEN,
    },
  };
}

/** Writes the tokenizer files into `dir` (each atomically) and loads them back. */
export function writeDemoTokenizer(dir: string, files: DemoTokenizerFiles): TinyTokenizer {
  mkdirSync(dir, { recursive: true });
  for (const [name, json] of Object.entries(files)) {
    const path = join(dir, name);
    const tmp = `${path}.tmp-${process.pid}`;
    try {
      writeFileSync(tmp, `${JSON.stringify(json, null, 1)}\n`);
      renameSync(tmp, path);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
  }
  return TinyTokenizer.fromFolder(dir);
}
