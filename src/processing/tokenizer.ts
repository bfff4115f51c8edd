// Tokenizers from Hugging Face folders, through @huggingface/tokenizers (a maintained pure-JS implementation that
// reproduces the reference ids exactly). Folders with tokenizer.json are read directly; folders that ship only
// vocab.json + merges.txt (+ added_tokens.json, special_tokens_map.json, tokenizer_config.json) — as the released
// TinyLLaVA-Phi-2-SigLIP-3.1B does — are turned into the equivalent byte-level BPE tokenizer.json.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { IMAGE_PLACEHOLDER } from "../config/index.js";
import { TokenizerError } from "../errors.js";

type Json = Record<string, unknown>;

function readJson(path: string): Json {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Json;
  } catch (e) {
    throw new TokenizerError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

function tokenContent(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string")
    return (v as { content: string }).content;
  return null;
}

// GPT-2's pre-tokenizer regex and Qwen2's (which splits digits one by one and keeps newlines apart).
const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** Builds a tokenizer.json equivalent to a slow GPT-2-style (vocab.json + merges.txt) tokenizer. */
function tokenizerJsonFromVocab(dir: string, config: Json): Json {
  const vocabPath = join(dir, "vocab.json");
  const mergesPath = join(dir, "merges.txt");
  if (!existsSync(mergesPath))
    throw new TokenizerError(`${dir}: vocab.json without merges.txt; a BPE tokenizer needs both`);
  const vocab = readJson(vocabPath) as Record<string, number>;
  const merges = readFileSync(mergesPath, "utf8")
    .split("\n")
    .filter((l) => l.length > 0 && !l.startsWith("#version"));
  const added: { id: number; content: string; special: boolean }[] = [];
  const addedPath = join(dir, "added_tokens.json");
  if (existsSync(addedPath)) {
    for (const [content, id] of Object.entries(readJson(addedPath)))
      added.push({ id: id as number, content, special: true });
  }
  const decoderMap = (config.added_tokens_decoder ?? {}) as Record<string, Json>;
  for (const [id, tok] of Object.entries(decoderMap)) {
    const content = tokenContent(tok);
    if (content !== null && !added.some((a) => a.content === content)) {
      added.push({ id: Number(id), content, special: (tok.special as boolean) ?? true });
    }
  }
  const specialMapPath = join(dir, "special_tokens_map.json");
  const specials = existsSync(specialMapPath) ? readJson(specialMapPath) : {};
  for (const v of Object.values(specials)) {
    const list = Array.isArray(v) ? v : [v];
    for (const item of list) {
      const content = tokenContent(item);
      if (content === null || added.some((a) => a.content === content)) continue;
      const id = vocab[content];
      if (id !== undefined) added.push({ id, content, special: true });
    }
  }
  const isQwen = String(config.tokenizer_class ?? "").startsWith("Qwen2");
  const addPrefixSpace = config.add_prefix_space === true;
  return {
    version: "1.0",
    added_tokens: added
      .sort((a, b) => a.id - b.id)
      .map((a) => ({
        id: a.id,
        content: a.content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: a.special,
      })),
    normalizer: isQwen ? { type: "NFC" } : null,
    pre_tokenizer: isQwen
      ? {
          type: "Sequence",
          pretokenizers: [
            { type: "Split", pattern: { Regex: QWEN2_PATTERN }, behavior: "Isolated", invert: false },
            { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false },
          ],
        }
      : { type: "ByteLevel", add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: addPrefixSpace, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: tokenContent(config.unk_token),
      continuing_subword_prefix: "",
      end_of_word_suffix: "",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

export interface EncodeOptions {
  /** add BOS/EOS as tokenizer_config.json / the post-processor says (default true) */
  addSpecialTokens?: boolean;
}

export class TinyTokenizer {
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly padToken: string | null;
  readonly modelMaxLength: number | null;

  constructor(
    readonly tokenizer: Tokenizer,
    readonly config: Json,
    readonly source: string,
  ) {
    this.bosToken = tokenContent(config.bos_token);
    this.eosToken = tokenContent(config.eos_token);
    this.padToken = tokenContent(config.pad_token);
    const mml = config.model_max_length;
    this.modelMaxLength = typeof mml === "number" && mml < 1e12 ? mml : null;
  }

  /** Loads tokenizer.json (preferred) or vocab.json + merges.txt from a folder. */
  static fromFolder(dir: string): TinyTokenizer {
    const cfgPath = join(dir, "tokenizer_config.json");
    const config = existsSync(cfgPath) ? readJson(cfgPath) : {};
    const specialMapPath = join(dir, "special_tokens_map.json");
    if (existsSync(specialMapPath)) {
      const sm = readJson(specialMapPath);
      for (const k of ["bos_token", "eos_token", "pad_token", "unk_token"])
        if (config[k] === undefined && sm[k] !== undefined) config[k] = sm[k];
    }
    let json: Json;
    if (existsSync(join(dir, "tokenizer.json"))) json = readJson(join(dir, "tokenizer.json"));
    else if (existsSync(join(dir, "vocab.json"))) json = tokenizerJsonFromVocab(dir, config);
    else throw new TokenizerError(`${dir}: no tokenizer.json, and no vocab.json + merges.txt`);
    if (!json.model || typeof json.model !== "object")
      throw new TokenizerError(`${dir}: tokenizer.json has no "model"`);
    // BOS handling per tokenizer_config.json: Llama-style configs say add_bos_token; the library reads it from config
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(json, config);
    } catch (e) {
      throw new TokenizerError(`${dir}: cannot build the tokenizer (${(e as Error).message})`);
    }
    return new TinyTokenizer(tok, config, dir);
  }

  tokenId(token: string | null): number | null {
    if (token === null) return null;
    return this.tokenizer.token_to_id(token) ?? null;
  }
  get bosTokenId(): number | null {
    return this.tokenId(this.bosToken);
  }
  get eosTokenId(): number | null {
    return this.tokenId(this.eosToken);
  }
  get padTokenId(): number | null {
    return this.tokenId(this.padToken) ?? this.eosTokenId;
  }
  get vocabSize(): number {
    return this.tokenizer.get_vocab ? Object.keys(this.tokenizer.get_vocab()).length : 0;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }
  tokens(text: string, opts: EncodeOptions = {}): string[] {
    return this.tokenizer.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).tokens;
  }
  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    const valid = ids.filter((i) => i >= 0);
    if (valid.length === 0) return "";
    return this.tokenizer.decode(valid, { skip_special_tokens: opts.skipSpecialTokens ?? true });
  }

  /** TinyLLaVA Factory's tokenizer_image_token: the text around each "<image>" is tokenised separately and joined
   * with the placeholder −200; a leading BOS is kept once. */
  encodeWithImages(prompt: string, imageToken = "<image>"): number[] {
    const chunks = prompt.split(imageToken).map((c) => this.encode(c));
    const bos = this.bosTokenId;
    const out: number[] = [];
    let offset = 0;
    const first = chunks[0] ?? [];
    if (first.length > 0 && bos !== null && first[0] === bos) {
      offset = 1;
      out.push(bos);
    }
    chunks.forEach((c, i) => {
      if (i > 0) out.push(IMAGE_PLACEHOLDER);
      out.push(...c.slice(offset));
    });
    return out;
  }

  /** transformers' LLaVA way: the whole prompt is tokenised with "<image>" as a special token, whose id becomes the
   * placeholder −200. */
  encodeWithImageToken(prompt: string, imageToken = "<image>"): number[] {
    const id = this.tokenId(imageToken);
    if (id === null) throw new TokenizerError(`${this.source}: the tokenizer has no "${imageToken}" token`);
    return this.encode(prompt).map((t) => (t === id ? IMAGE_PLACEHOLDER : t));
  }
}
