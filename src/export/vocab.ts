// The tokenizer part of a GGUF file (tokenizer.ggml.*), built from a Hugging Face tokenizer folder the way llama.cpp's
// convert_hf_to_gguf.py does:
//  - byte-level BPE (GPT-2 / Qwen2 style) → model "gpt2": tokens in id order (byte-level strings as in vocab.json),
//    token types (NORMAL; CONTROL for special added tokens and ones that look special such as <|…|>; USER_DEFINED
//    for other added tokens; UNUSED "[PAD{id}]" fillers up to the embedding's vocab size), merges "a b" (a space inside
//    a part written as U+0120), and a pre-tokenizer name that selects llama.cpp's split regex (detected from the
//    tokenizer.json's pattern);
//  - SentencePiece-style BPE with byte fallback (Llama / Gemma tokenizer.json) → model "llama": tokens, types (BYTE
//    for <0xXX>, CONTROL for special tokens, UNKNOWN for the unk token) and scores. llama.cpp's SPM tokenizer merges
//    the adjacent pair whose merged token has the highest score, so each merged token gets −(rank of its merge): the
//    same order as the BPE merges (SentencePiece's own scores follow that order too). convert_hf_to_gguf.py writes a
//    placeholder −1000 for every token here, which leaves llama.cpp's tokenisation to ties (on the fixtures it then
//    differs from the tokenizer's own ids; with the ranks it is identical). add_space_prefix follows the tokenizer's
//    Prepend normalizer / Metaspace pre-tokenizer (tokenizer_config.json's add_prefix_space wins).
// Special ids come from tokenizer_config.json (bos/eos/unk/pad token strings), then from config.json's ids; add_bos /
// add_eos from tokenizer_config.json or the post-processor template.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ExportError, type GgufValue, kv } from "./gguf-format.js";

/** llama_token_type. */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export interface GgufVocab {
  /** tokenizer.ggml.model */
  model: "gpt2" | "llama";
  /** tokenizer.ggml.pre */
  pre: string;
  tokens: string[];
  tokenTypes: number[];
  /** SPM scores (model "llama") */
  scores?: number[];
  /** BPE merges "left right" (model "gpt2") */
  merges?: string[];
  bosId?: number | null;
  eosId?: number | null;
  unkId?: number | null;
  padId?: number | null;
  addBos?: boolean;
  addEos?: boolean;
  addSpacePrefix?: boolean;
  chatTemplate?: string;
}

/** Token ids the model's config knows (config.json / text_config), used when the tokenizer config names none. */
export interface ConfigTokenIds {
  bos?: number | null;
  eos?: number | number[] | null;
  pad?: number | null;
}

type Json = Record<string, unknown>;

function readJson(path: string): Json {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Json;
  } catch (e) {
    throw new ExportError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

function tokenContent(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string")
    return (v as { content: string }).content;
  return null;
}

/** GPT-2's byte → printable character table (bytes_to_unicode). */
export function bytesToUnicode(): string[] {
  const table: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCodePoint(printable ? b : 256 + n++);
  }
  return table;
}

/** convert_hf_to_gguf.py's does_token_look_special. */
function looksSpecial(t: string): boolean {
  return (
    ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(t) ||
    (t.startsWith("<|") && t.endsWith("|>")) ||
    (t.startsWith("<｜") && t.endsWith("｜>")) ||
    (t.startsWith("<unused") && t.endsWith(">"))
  );
}

// split regexes of tokenizer.json pre-tokenizers → llama.cpp's tokenizer.ggml.pre names with the same regex
const QWEN2_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

interface PreInfo {
  byteLevel: boolean;
  /** the llama.cpp pre-tokenizer with the same split, or null when unknown */
  pre: string | null;
  describe: string;
}

function inspectPreTokenizer(pt: unknown, arch: string): PreInfo {
  const parts: Json[] = [];
  const walk = (p: unknown) => {
    if (!p || typeof p !== "object") return;
    const o = p as Json;
    if (o.type === "Sequence" && Array.isArray(o.pretokenizers)) for (const q of o.pretokenizers) walk(q);
    else parts.push(o);
  };
  walk(pt);
  const byteLevel = parts.some((p) => p.type === "ByteLevel");
  const splits = parts
    .filter((p) => p.type === "Split")
    .map((p) => tokenContent((p.pattern as Json | undefined)?.Regex) ?? "");
  const describe = JSON.stringify(pt ?? null).slice(0, 300);
  if (splits.length === 1) {
    if (splits[0] === QWEN2_REGEX) return { byteLevel, pre: "qwen2", describe };
    if (splits[0] === LLAMA3_REGEX) return { byteLevel, pre: "llama-bpe", describe };
    return { byteLevel, pre: null, describe };
  }
  if (splits.length === 0 && parts.length === 1 && byteLevel && parts[0]?.use_regex !== false) {
    // plain ByteLevel with GPT-2's regex
    return { byteLevel, pre: arch === "phi2" ? "phi-2" : "gpt-2", describe };
  }
  return { byteLevel, pre: null, describe };
}

interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

interface HfTokenizer {
  model: Json;
  vocab: Map<string, number>;
  merges: string[];
  added: AddedToken[];
  preTokenizer: unknown;
  normalizer: unknown;
  postProcessor: Json | null;
  decoder: Json | null;
  config: Json;
}

function mergeString(m: unknown): string {
  if (typeof m === "string") return m;
  if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string")
    return m.map((s: string) => s.replaceAll(" ", "\u0120")).join(" ");
  throw new ExportError(`unknown merges entry ${JSON.stringify(m)}`);
}

/** Reads tokenizer.json, or vocab.json + merges.txt (+ added_tokens.json, tokenizer_config.json's
 * added_tokens_decoder), with tokenizer_config.json (+ special_tokens_map.json). */
function readHfTokenizer(dir: string): HfTokenizer {
  const cfgPath = join(dir, "tokenizer_config.json");
  const config = existsSync(cfgPath) ? readJson(cfgPath) : {};
  const smPath = join(dir, "special_tokens_map.json");
  if (existsSync(smPath)) {
    const sm = readJson(smPath);
    for (const k of ["bos_token", "eos_token", "pad_token", "unk_token"])
      if (config[k] === undefined && sm[k] !== undefined) config[k] = sm[k];
  }
  const tjPath = join(dir, "tokenizer.json");
  if (existsSync(tjPath)) {
    const tj = readJson(tjPath);
    const model = tj.model as Json | undefined;
    if (!model || typeof model !== "object") throw new ExportError(`${tjPath}: no "model"`);
    const rawVocab = model.vocab;
    if (!rawVocab || typeof rawVocab !== "object" || Array.isArray(rawVocab))
      throw new ExportError(`${tjPath}: model type ${String(model.type)} has no token → id vocabulary`);
    const added = ((tj.added_tokens as Json[] | undefined) ?? []).map((a) => ({
      id: a.id as number,
      content: a.content as string,
      special: a.special === true,
    }));
    return {
      model,
      vocab: new Map(Object.entries(rawVocab as Record<string, number>)),
      merges: ((model.merges as unknown[] | undefined) ?? []).map(mergeString),
      added,
      preTokenizer: tj.pre_tokenizer,
      normalizer: tj.normalizer,
      postProcessor: (tj.post_processor as Json | null) ?? null,
      decoder: (tj.decoder as Json | null) ?? null,
      config,
    };
  }
  const vPath = join(dir, "vocab.json");
  const mPath = join(dir, "merges.txt");
  if (!existsSync(vPath) || !existsSync(mPath))
    throw new ExportError(`${dir}: no tokenizer.json, and no vocab.json + merges.txt`);
  const vocab = new Map(Object.entries(readJson(vPath) as Record<string, number>));
  const lines = readFileSync(mPath, "utf8").split("\n");
  const merges = lines
    .map((l) => l.trim())
    .filter((l, i) => l.length > 0 && !(i === 0 && l.startsWith("#")))
    .map((l) => l.split(/\s+/).slice(0, 2).join(" "));
  const added: AddedToken[] = [];
  const atPath = join(dir, "added_tokens.json");
  if (existsSync(atPath))
    for (const [content, id] of Object.entries(readJson(atPath)))
      added.push({ id: id as number, content, special: true });
  for (const [id, tok] of Object.entries((config.added_tokens_decoder ?? {}) as Record<string, Json>)) {
    const content = tokenContent(tok);
    if (content !== null && !added.some((a) => a.content === content))
      added.push({ id: Number(id), content, special: (tok.special as boolean | undefined) ?? true });
  }
  return {
    model: { type: "BPE" },
    vocab,
    merges,
    added,
    preTokenizer: { type: "ByteLevel", use_regex: true },
    normalizer: null,
    postProcessor: null,
    decoder: { type: "ByteLevel" },
    config,
  };
}

/** Whether a SentencePiece-style tokenizer.json puts "▁" before the text (llama.cpp's add_space_prefix): a Prepend
 * normalizer (Llama's converted tokenizers) or a Metaspace pre-tokenizer that prepends (newer ones); Gemma's has
 * neither. */
function prependsSpace(tok: HfTokenizer): boolean {
  let found = false;
  const walk = (p: unknown) => {
    if (!p || typeof p !== "object") return;
    const o = p as Json;
    for (const list of [o.normalizers, o.pretokenizers]) if (Array.isArray(list)) for (const q of list) walk(q);
    if (o.type === "Prepend" && o.prepend === "\u2581") found = true;
    if (
      o.type === "Metaspace" &&
      (o.prepend_scheme === "first" || o.prepend_scheme === "always" || o.add_prefix_space === true)
    )
      found = true;
  };
  walk(tok.normalizer);
  walk(tok.preTokenizer);
  return found;
}

function templateSpecials(pp: Json | null): { first: string | null; last: string | null } {
  const procs = pp ? (Array.isArray(pp.processors) ? (pp.processors as Json[]) : [pp]) : [];
  for (const p of procs) {
    if (p.type !== "TemplateProcessing" || !Array.isArray(p.single)) continue;
    const single = p.single as Json[];
    const id = (x: Json | undefined) => tokenContent((x?.SpecialToken as Json | undefined)?.id) ?? null;
    return { first: single.length > 1 ? id(single[0]) : null, last: single.length > 1 ? id(single.at(-1)) : null };
  }
  return { first: null, last: null };
}

function firstId(v: number | number[] | null | undefined): number | null {
  if (Array.isArray(v)) return v[0] ?? null;
  return v ?? null;
}

function specials(tok: HfTokenizer, ids: ConfigTokenIds, n: number, where: string) {
  const idOf = (k: string): number | null => {
    const c = tokenContent(tok.config[k]);
    if (c === null) return null;
    const a = tok.added.find((x) => x.content === c);
    return a ? a.id : (tok.vocab.get(c) ?? null);
  };
  const inRange = (name: string, v: number | null) => {
    if (v !== null && (v < 0 || v >= n))
      throw new ExportError(`${where}: ${name} token id ${v} is outside the vocabulary of ${n} tokens`);
    return v;
  };
  const bosId = inRange("bos", idOf("bos_token") ?? ids.bos ?? null);
  const eosId = inRange("eos", idOf("eos_token") ?? firstId(ids.eos));
  const padId = inRange("pad", idOf("pad_token") ?? ids.pad ?? null);
  const modelUnk = tokenContent(tok.model.unk_token);
  const unkId = inRange("unk", idOf("unk_token") ?? (modelUnk !== null ? (tok.vocab.get(modelUnk) ?? null) : null));
  const tpl = templateSpecials(tok.postProcessor);
  const bosTok = tokenContent(tok.config.bos_token);
  const eosTok = tokenContent(tok.config.eos_token);
  const addBos =
    typeof tok.config.add_bos_token === "boolean"
      ? (tok.config.add_bos_token as boolean)
      : tpl.first !== null
        ? tpl.first === bosTok
        : undefined;
  const addEos =
    typeof tok.config.add_eos_token === "boolean"
      ? (tok.config.add_eos_token as boolean)
      : tpl.last !== null
        ? tpl.last === eosTok
        : undefined;
  return { bosId, eosId, padId, unkId, addBos, addEos };
}

export interface VocabOptions {
  /** rows of the embedding matrix: the token list is padded to this size (convert_hf_to_gguf's [PAD{i}]) */
  vocabSize: number;
  /** GGUF architecture (phi2 names its GPT-2 pre-tokenizer "phi-2") */
  arch: string;
  configIds?: ConfigTokenIds;
  /** override the detected tokenizer.ggml.pre */
  pre?: string;
}

/** The GGUF vocabulary of a Hugging Face tokenizer folder. */
export function vocabFromTokenizerDir(dir: string, opts: VocabOptions): GgufVocab {
  const tok = readHfTokenizer(dir);
  const n = opts.vocabSize;
  const where = dir;
  const maxId = Math.max(-1, ...tok.vocab.values(), ...tok.added.map((a) => a.id));
  if (maxId >= n)
    throw new ExportError(
      `${where}: the tokenizer has token id ${maxId} but the model's embedding has only ${n} rows (vocab_size)`,
    );
  const text: (string | undefined)[] = new Array(n);
  for (const [t, id] of tok.vocab) text[id] = t;
  const addedById = new Map(tok.added.map((a) => [a.id, a]));
  for (const a of tok.added) text[a.id] = a.content;
  const mtype = tok.model.type;
  const decoderType = tok.decoder?.type;
  const isSpm = mtype === "BPE" && tok.model.byte_fallback === true && decoderType === "Sequence";
  const pre = inspectPreTokenizer(tok.preTokenizer, opts.arch);
  const tokens: string[] = new Array(n);
  const types: number[] = new Array(n);
  const sp = specials(tok, opts.configIds ?? {}, n, where);
  const unkId = sp.unkId;
  if (mtype !== "BPE")
    throw new ExportError(
      `${where}: tokenizer model "${String(mtype)}" is not supported for GGUF export (byte-level BPE or SentencePiece-style BPE with byte fallback)`,
    );
  let scores: number[] | undefined;
  if (isSpm) {
    const rank = new Map<string, number>();
    tok.merges.forEach((m, r) => {
      const sp2 = m.indexOf(" ", 1);
      const merged = sp2 < 0 ? m : m.slice(0, sp2) + m.slice(sp2 + 1);
      if (!rank.has(merged)) rank.set(merged, r);
    });
    scores = new Array(n).fill(0);
    for (let i = 0; i < n; i++) {
      const t = text[i];
      if (t === undefined) {
        tokens[i] = `[PAD${i}]`;
        types[i] = TOKEN_TYPE.UNUSED;
        continue;
      }
      tokens[i] = t;
      const a = addedById.get(i);
      if (/^<0x[0-9A-Fa-f]{2}>$/.test(t)) types[i] = TOKEN_TYPE.BYTE;
      else if (i === unkId) types[i] = TOKEN_TYPE.UNKNOWN;
      else if (a?.special) types[i] = TOKEN_TYPE.CONTROL;
      else if (a) types[i] = TOKEN_TYPE.USER_DEFINED;
      else types[i] = TOKEN_TYPE.NORMAL;
      const r = a ? undefined : rank.get(t);
      if (r !== undefined) scores[i] = -r;
    }
  } else {
    if (!pre.byteLevel)
      throw new ExportError(
        `${where}: BPE tokenizer without a ByteLevel pre-tokenizer or byte fallback is not supported for GGUF export`,
      );
    for (let i = 0; i < n; i++) {
      const t = text[i];
      if (t === undefined) {
        tokens[i] = `[PAD${i}]`;
        types[i] = TOKEN_TYPE.UNUSED;
        continue;
      }
      tokens[i] = t;
      const a = addedById.get(i);
      if (!a) types[i] = TOKEN_TYPE.NORMAL;
      else if (a.special || looksSpecial(t)) types[i] = TOKEN_TYPE.CONTROL;
      else types[i] = TOKEN_TYPE.USER_DEFINED;
    }
  }
  const seen = new Map<string, number>();
  tokens.forEach((t, i) => {
    const j = seen.get(t);
    if (j !== undefined)
      throw new ExportError(`${where}: tokens ${j} and ${i} are both "${t}"; llama.cpp needs unique token texts`);
    seen.set(t, i);
  });
  const preName = opts.pre ?? (isSpm ? "default" : pre.pre);
  if (preName === null)
    throw new ExportError(
      `${where}: unknown pre-tokenizer ${pre.describe}; pass the llama.cpp pre-tokenizer name (e.g. "qwen2", "gpt-2", "llama-bpe") as the "pre" option (--tokenizer-pre)`,
    );
  const chat = tok.config.chat_template;
  const addPrefix = tok.config.add_prefix_space;
  return {
    model: isSpm ? "llama" : "gpt2",
    pre: preName,
    tokens,
    tokenTypes: types,
    scores,
    merges: isSpm ? undefined : tok.merges,
    bosId: sp.bosId,
    eosId: sp.eosId,
    unkId,
    padId: sp.padId,
    addBos: sp.addBos,
    addEos: sp.addEos,
    addSpacePrefix: isSpm ? (typeof addPrefix === "boolean" ? addPrefix : prependsSpace(tok)) : undefined,
    chatTemplate: typeof chat === "string" ? chat : undefined,
  };
}

/** A made-up byte-level vocabulary of `vocabSize` tokens for models without a real tokenizer (random-weight
 * benchmarks that feed token ids directly): the 256 byte tokens, then unique filler tokens, with the configured
 * bos/eos as control tokens. llama.cpp loads it and detokenises any id. */
export function syntheticVocab(vocabSize: number, ids: ConfigTokenIds = {}): GgufVocab {
  if (vocabSize < 256) throw new ExportError(`a synthetic vocabulary needs at least 256 tokens, got ${vocabSize}`);
  const bytes = bytesToUnicode();
  const tokens: string[] = new Array(vocabSize);
  const types: number[] = new Array(vocabSize).fill(TOKEN_TYPE.NORMAL);
  for (let i = 0; i < vocabSize; i++) tokens[i] = i < 256 ? (bytes[i] as string) : `[tok${i}]`;
  const bos = ids.bos ?? null;
  const eos = firstId(ids.eos);
  for (const [id, name] of [
    [bos, "<|bos|>"],
    [eos, "<|eos|>"],
  ] as const) {
    if (id === null) continue;
    if (id < 256 || id >= vocabSize)
      throw new ExportError(`synthetic vocabulary: special id ${id} must be in [256, ${vocabSize})`);
    tokens[id] = bos === eos ? "<|endoftext|>" : name;
    types[id] = TOKEN_TYPE.CONTROL;
  }
  return {
    model: "gpt2",
    pre: "default",
    tokens,
    tokenTypes: types,
    merges: [],
    bosId: bos,
    eosId: eos,
    padId: eos,
    addBos: false,
    addEos: false,
  };
}

/** The tokenizer.ggml.* metadata entries of a vocabulary. */
export function vocabMetadata(v: GgufVocab): [string, GgufValue][] {
  const out: [string, GgufValue][] = [
    ["tokenizer.ggml.model", kv.str(v.model)],
    ["tokenizer.ggml.pre", kv.str(v.pre)],
    ["tokenizer.ggml.tokens", kv.strs(v.tokens)],
    ["tokenizer.ggml.token_type", kv.i32s(v.tokenTypes)],
  ];
  if (v.model === "llama") {
    if (!v.scores) throw new ExportError(`a "llama" (SentencePiece) vocabulary needs scores`);
    out.push(["tokenizer.ggml.scores", kv.f32s(v.scores)]);
  }
  if (v.model === "gpt2") out.push(["tokenizer.ggml.merges", kv.strs(v.merges ?? [])]);
  const id = (k: string, x: number | null | undefined) => {
    if (x !== null && x !== undefined) out.push([`tokenizer.ggml.${k}`, kv.u32(x)]);
  };
  id("bos_token_id", v.bosId);
  id("eos_token_id", v.eosId);
  id("unknown_token_id", v.unkId);
  id("padding_token_id", v.padId);
  if (v.addBos !== undefined) out.push(["tokenizer.ggml.add_bos_token", kv.bool(v.addBos)]);
  if (v.addEos !== undefined) out.push(["tokenizer.ggml.add_eos_token", kv.bool(v.addEos)]);
  if (v.addSpacePrefix !== undefined) out.push(["tokenizer.ggml.add_space_prefix", kv.bool(v.addSpacePrefix)]);
  if (v.chatTemplate !== undefined) out.push(["tokenizer.chat_template", kv.str(v.chatTemplate)]);
  return out;
}
