// GGUF export: the written files are parsed by an independent minimal GGUF reader (below) and checked against the
// models' own weights and tokenizers — header, metadata types and values, tensor infos, alignment and offsets,
// tensor bytes (f32 exact; f16/bf16 the nearest-even value; q8_0 within the quantisation step), llama.cpp's q/k
// permutation for llama (index formula, and RoPE equivalence on a hand-built example), vocabularies (byte-level
// BPE, SentencePiece-style, synthetic), atomic writes. llama.cpp itself runs in bench/llamacpp (crosscheck).
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Fields, parseTextConfig } from "../../src/config/index.js";
import {
  ExportError,
  exportTinyLlavaGguf,
  GGML_TYPE,
  permuteForLlamaRope,
  planGguf,
  writeGguf,
  writeGgufFile,
} from "../../src/export/index.js";
import type { CausalLM } from "../../src/models/llm/base.js";
import { loadTinyLlava } from "../../src/models/load.js";
import { buildLanguageModel } from "../../src/models/registry.js";
import { manualSeed, randn, tensor as tensorOf } from "../../src/torch/index.js";
import { REFERENCE } from "../helpers.js";

const M = join(REFERENCE, "models");
const tmp = () => mkdtempSync(join(tmpdir(), "tl-gguf-"));

// ---------------------------------------------------------------- an independent GGUF reader (spec: ggml docs/gguf.md)

interface Info {
  name: string;
  ne: number[];
  type: number;
  offset: number;
}
interface Gguf {
  version: number;
  kv: Map<string, { type: number; itemType?: number; value: unknown }>;
  tensors: Info[];
  dataOffset: number;
  alignment: number;
  buf: Buffer;
}

function readGguf(path: string): Gguf {
  const buf = readFileSync(path);
  let o = 0;
  const u32 = () => {
    const v = buf.readUInt32LE(o);
    o += 4;
    return v;
  };
  const u64 = () => {
    const v = buf.readBigUInt64LE(o);
    o += 8;
    return Number(v);
  };
  const str = () => {
    const n = u64();
    const s = buf.toString("utf8", o, o + n);
    o += n;
    return s;
  };
  const scalar = (t: number): unknown => {
    switch (t) {
      case 0:
        return buf.readUInt8(o++);
      case 1:
        return buf.readInt8(o++);
      case 2:
        o += 2;
        return buf.readUInt16LE(o - 2);
      case 3:
        o += 2;
        return buf.readInt16LE(o - 2);
      case 4:
        return u32();
      case 5:
        o += 4;
        return buf.readInt32LE(o - 4);
      case 6:
        o += 4;
        return buf.readFloatLE(o - 4);
      case 7: {
        const b = buf.readUInt8(o++);
        assert.ok(b === 0 || b === 1, `bool byte ${b}`);
        return b === 1;
      }
      case 8:
        return str();
      case 10:
        return u64();
      case 11:
        o += 8;
        return Number(buf.readBigInt64LE(o - 8));
      case 12:
        o += 8;
        return buf.readDoubleLE(o - 8);
      default:
        throw new Error(`unknown GGUF value type ${t}`);
    }
  };
  assert.equal(buf.toString("latin1", 0, 4), "GGUF", "magic");
  o = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const kv = new Map<string, { type: number; itemType?: number; value: unknown }>();
  for (let i = 0; i < nKv; i++) {
    const key = str();
    assert.ok(!kv.has(key), `duplicate key ${key}`);
    const type = u32();
    if (type === 9) {
      const itemType = u32();
      const n = u64();
      const value = Array.from({ length: n }, () => scalar(itemType));
      kv.set(key, { type, itemType, value });
    } else kv.set(key, { type, value: scalar(type) });
  }
  const tensors: Info[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nd = u32();
    const ne = Array.from({ length: nd }, () => u64());
    const type = u32();
    const offset = u64();
    tensors.push({ name, ne, type, offset });
  }
  const al = kv.get("general.alignment");
  const alignment = al ? (al.value as number) : 32;
  const dataOffset = o + ((alignment - (o % alignment)) % alignment);
  return { version, kv, tensors, dataOffset, alignment, buf };
}

const TYPE_SIZE: Record<number, [number, number]> = { 0: [1, 4], 1: [1, 2], 30: [1, 2], 8: [32, 34] };
function nbytes(t: Info): number {
  const [blk, size] = TYPE_SIZE[t.type] as [number, number];
  return (t.ne.reduce((a, b) => a * b, 1) / blk) * size;
}
function data(g: Gguf, name: string): { info: Info; bytes: Buffer } {
  const info = g.tensors.find((t) => t.name === name);
  assert.ok(info, `tensor ${name} missing`);
  const start = g.dataOffset + info.offset;
  return { info, bytes: g.buf.subarray(start, start + nbytes(info)) };
}
const val = (g: Gguf, k: string) => {
  const e = g.kv.get(k);
  assert.ok(e, `metadata ${k} missing`);
  return e.value;
};
const typeOf = (g: Gguf, k: string) => g.kv.get(k)?.type;

function f16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
const f32bits = (x: number) => {
  const b = Buffer.alloc(4);
  b.writeFloatLE(x);
  return b.readUInt32LE(0);
};

/** Checks the file-level structure every GGUF must have. */
function checkStructure(g: Gguf): void {
  assert.equal(g.version, 3);
  assert.equal(typeOf(g, "general.alignment"), 4, "general.alignment is a UINT32");
  assert.equal(g.alignment, 32);
  assert.equal(g.dataOffset % 32, 0);
  let expect = 0;
  for (const t of g.tensors) {
    assert.equal(t.offset, expect, `${t.name}: offset follows the previous tensor`);
    assert.equal(t.offset % 32, 0);
    const n = nbytes(t);
    expect += n + ((32 - (n % 32)) % 32);
  }
  assert.ok(g.buf.length >= g.dataOffset + expect, "file holds every tensor");
}

// ---------------------------------------------------------------- expected layouts of the fixture models

/** GGUF name → HF key, written out by hand for the fixtures (2 layers). */
function expectedNames(family: "qwen2" | "llama" | "phi"): Map<string, string | null> {
  const m = new Map<string, string | null>();
  m.set("token_embd.weight", "model.embed_tokens.weight");
  for (const b of [0, 1]) {
    const L = `model.layers.${b}`;
    const B = `blk.${b}`;
    m.set(`${B}.attn_norm.weight`, `${L}.input_layernorm.weight`);
    for (const x of ["q", "k", "v"]) {
      m.set(`${B}.attn_${x}.weight`, `${L}.self_attn.${x}_proj.weight`);
      if (family !== "llama") m.set(`${B}.attn_${x}.bias`, `${L}.self_attn.${x}_proj.bias`);
    }
    if (family === "phi") {
      m.set(`${B}.attn_norm.bias`, `${L}.input_layernorm.bias`);
      m.set(`${B}.attn_output.weight`, `${L}.self_attn.dense.weight`);
      m.set(`${B}.attn_output.bias`, `${L}.self_attn.dense.bias`);
      m.set(`${B}.ffn_up.weight`, `${L}.mlp.fc1.weight`);
      m.set(`${B}.ffn_up.bias`, `${L}.mlp.fc1.bias`);
      m.set(`${B}.ffn_down.weight`, `${L}.mlp.fc2.weight`);
      m.set(`${B}.ffn_down.bias`, `${L}.mlp.fc2.bias`);
    } else {
      m.set(`${B}.attn_output.weight`, `${L}.self_attn.o_proj.weight`);
      m.set(`${B}.ffn_norm.weight`, `${L}.post_attention_layernorm.weight`);
      for (const x of ["gate", "up", "down"]) m.set(`${B}.ffn_${x}.weight`, `${L}.mlp.${x}_proj.weight`);
    }
  }
  if (family === "phi") {
    m.set("output_norm.weight", "model.final_layernorm.weight");
    m.set("output_norm.bias", "model.final_layernorm.bias");
    m.set("output.weight", "lm_head.weight");
    m.set("output.bias", null); // the fixture has no lm_head bias: zeros (llama.cpp's phi2 requires one)
  } else {
    m.set("output_norm.weight", "model.norm.weight");
    if (family === "llama") m.set("output.weight", "lm_head.weight");
  }
  return m;
}

/** HF row feeding GGUF row i of a llama q/k matrix: within each head of d rows, GGUF row 2k+s is HF row s·d/2 + k. */
function llamaSourceRow(i: number, headDim: number): number {
  const h = Math.floor(i / headDim);
  const j = i % headDim;
  return h * headDim + (j % 2) * (headDim / 2) + Math.floor(j / 2);
}

/** The HF values (flat, row-major) a GGUF tensor must hold, permuted for llama's q/k. */
function expectedValues(lm: CausalLM, gname: string, key: string | null, family: string): number[] {
  const sd = lm.stateDict();
  if (key === null) return new Array(lm.config.vocab_size).fill(0);
  const t = sd.get(key);
  assert.ok(t, `${key} in the state dict`);
  const v = t.toArray();
  const m = /attn_([qk])\.(weight|bias)$/.exec(gname);
  if (family !== "llama" || !m) return v;
  const cols = t.shape.length === 2 ? (t.shape[1] as number) : 1;
  const rows = t.shape[0] as number;
  const d = lm.config.head_dim;
  const out = new Array(v.length);
  for (let i = 0; i < rows; i++) {
    const src = llamaSourceRow(i, d);
    for (let c = 0; c < cols; c++) out[i * cols + c] = v[src * cols + c];
  }
  return out;
}

const FIXTURES = [
  { dir: "siglip-qwen2", family: "qwen2", arch: "qwen2" },
  { dir: "clip-llama", family: "llama", arch: "llama" },
  { dir: "siglip-phi", family: "phi", arch: "phi2" },
] as const;

describe("GGUF export of the fixture models", () => {
  for (const fx of FIXTURES) {
    test(`${fx.dir}: f32 file — structure, metadata, names, shapes and exact bytes`, () => {
      const d = tmp();
      const folder = join(M, fx.dir);
      const out = join(d, "m.gguf");
      const r = exportTinyLlavaGguf(folder, out, { type: "f32" });
      assert.equal(r.arch, fx.arch);
      const g = readGguf(out);
      checkStructure(g);
      const model = loadTinyLlava(folder);
      const lm = model.languageModel;
      const c = lm.config;
      const a = fx.arch;
      assert.equal(val(g, "general.architecture"), a);
      assert.equal(val(g, "general.name"), fx.dir);
      assert.equal(val(g, "general.file_type"), 0);
      const u32s: [string, number][] = [
        [`${a}.block_count`, c.num_hidden_layers],
        [`${a}.context_length`, c.max_position_embeddings],
        [`${a}.embedding_length`, c.hidden_size],
        [`${a}.feed_forward_length`, c.intermediate_size],
        [`${a}.attention.head_count`, c.num_attention_heads],
        [`${a}.attention.head_count_kv`, c.num_key_value_heads],
        [`${a}.rope.dimension_count`, Math.floor(c.head_dim * c.partial_rotary_factor)],
      ];
      for (const [k, v] of u32s) {
        assert.equal(typeOf(g, k), 4, `${k} is a UINT32`);
        assert.equal(val(g, k), v, k);
      }
      assert.equal(typeOf(g, `${a}.rope.freq_base`), 6);
      assert.equal(val(g, `${a}.rope.freq_base`), c.rope_theta);
      if (fx.family === "phi") {
        assert.equal(val(g, "phi2.attention.layer_norm_epsilon"), Math.fround(c.layer_norm_eps));
        assert.equal(val(g, "phi2.rope.dimension_count"), 8); // partial_rotary_factor 0.5 of head_dim 16
        assert.equal(val(g, "tokenizer.ggml.add_bos_token"), false);
      } else assert.equal(val(g, `${a}.attention.layer_norm_rms_epsilon`), Math.fround(c.rms_norm_eps));

      const names = expectedNames(fx.family);
      assert.deepEqual(new Set(g.tensors.map((t) => t.name)), new Set(names.keys()));
      const sd = lm.stateDict();
      for (const [gname, key] of names) {
        const { info, bytes } = data(g, gname);
        const shape = key === null ? [c.vocab_size] : (sd.get(key)?.shape as number[]);
        assert.deepEqual(info.ne, [...shape].reverse(), `${gname}: ggml dims are the torch shape reversed`);
        assert.equal(info.type, GGML_TYPE.F32, gname);
        const got = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
        const want = expectedValues(lm, gname, key, fx.family);
        assert.equal(got.length, want.length);
        for (let i = 0; i < want.length; i++)
          if (got[i] !== Math.fround(want[i] as number)) assert.fail(`${gname}[${i}]: ${got[i]} vs ${want[i]}`);
      }
    });
  }

  test("siglip-qwen2: byte-level BPE vocabulary (gpt2 / qwen2) from tokenizer.json", () => {
    const d = tmp();
    const folder = join(M, "siglip-qwen2");
    exportTinyLlavaGguf(folder, join(d, "q.gguf"), { type: "f16" });
    const g = readGguf(join(d, "q.gguf"));
    const tj = JSON.parse(readFileSync(join(folder, "tokenizer.json"), "utf8"));
    assert.equal(val(g, "tokenizer.ggml.model"), "gpt2");
    assert.equal(val(g, "tokenizer.ggml.pre"), "qwen2");
    const tokens = val(g, "tokenizer.ggml.tokens") as string[];
    const types = val(g, "tokenizer.ggml.token_type") as number[];
    assert.equal(g.kv.get("tokenizer.ggml.token_type")?.itemType, 5, "token types are INT32");
    assert.equal(tokens.length, 380);
    const addedIds = new Set(tj.added_tokens.map((a: { id: number }) => a.id));
    for (const [t, id] of Object.entries(tj.model.vocab as Record<string, number>)) {
      assert.equal(tokens[id], t);
      if (!addedIds.has(id)) assert.equal(types[id], 1, `${t} NORMAL`);
    }
    for (const a of tj.added_tokens) {
      assert.equal(tokens[a.id], a.content);
      assert.equal(types[a.id], 3, `${a.content} CONTROL`);
    }
    const merges = val(g, "tokenizer.ggml.merges") as string[];
    assert.deepEqual(
      merges,
      (tj.model.merges as [string, string][]).map((p) => p.join(" ")),
    );
    const eos = tj.added_tokens.find((a: { content: string }) => a.content === "<|endoftext|>").id;
    assert.equal(val(g, "tokenizer.ggml.eos_token_id"), eos);
    assert.equal(val(g, "tokenizer.ggml.padding_token_id"), eos);
    assert.equal(val(g, "tokenizer.ggml.add_bos_token"), false);
    assert.equal(g.kv.has("tokenizer.ggml.bos_token_id"), false, "no bos (tokenizer_config says null)");
    assert.equal(g.kv.has("tokenizer.ggml.scores"), false);
    assert.equal(val(g, "general.file_type"), 1);
  });

  test("clip-llama: SentencePiece-style vocabulary (llama) with types, scores from merge ranks, special ids", () => {
    const d = tmp();
    const folder = join(M, "clip-llama");
    exportTinyLlavaGguf(folder, join(d, "l.gguf"), { type: "bf16" });
    const g = readGguf(join(d, "l.gguf"));
    const tj = JSON.parse(readFileSync(join(folder, "tokenizer.json"), "utf8"));
    assert.equal(val(g, "tokenizer.ggml.model"), "llama");
    const tokens = val(g, "tokenizer.ggml.tokens") as string[];
    const types = val(g, "tokenizer.ggml.token_type") as number[];
    const scores = val(g, "tokenizer.ggml.scores") as number[];
    assert.equal(g.kv.get("tokenizer.ggml.scores")?.itemType, 6, "scores are FLOAT32");
    assert.equal(tokens.length, 657);
    assert.equal(scores.length, 657);
    assert.equal(tokens[656], "<image>");
    assert.equal(types[656], 3);
    assert.equal(types[tj.model.vocab["<0x0A>"]], 6, "byte token");
    assert.equal(types[0], 2, "<unk> UNKNOWN");
    assert.equal(types[1], 3, "<s> CONTROL");
    assert.equal(types[2], 3, "</s> CONTROL");
    // each merged token scores −(rank of its first merge)
    const seen = new Set<string>();
    (tj.model.merges as [string, string][]).forEach(([l, r], rank) => {
      const t = l + r;
      if (seen.has(t)) return;
      seen.add(t);
      assert.equal(scores[tj.model.vocab[t]], -rank, `score of ${t}`);
    });
    assert.equal(scores[tj.model.vocab.a], 0, "a single character is never a merge result");
    assert.equal(val(g, "tokenizer.ggml.bos_token_id"), 1);
    assert.equal(val(g, "tokenizer.ggml.eos_token_id"), 2);
    assert.equal(val(g, "tokenizer.ggml.unknown_token_id"), 0);
    assert.equal(val(g, "tokenizer.ggml.padding_token_id"), 0);
    assert.equal(val(g, "tokenizer.ggml.add_bos_token"), true);
    assert.equal(val(g, "tokenizer.ggml.add_space_prefix"), true, "the Prepend(▁) normalizer");
    assert.equal(val(g, "tokenizer.ggml.pre"), "default");
    assert.equal(val(g, "llama.vocab_size"), 657);
    assert.equal(val(g, "general.file_type"), 32);
  });

  test("f16 and bf16: 2-D tensors hold the nearest-even values, 1-D tensors stay f32", () => {
    const folder = join(M, "siglip-phi");
    const lm = loadTinyLlava(folder).languageModel;
    const sd = lm.stateDict();
    const names = expectedNames("phi");
    for (const type of ["f16", "bf16"] as const) {
      const d = tmp();
      exportTinyLlavaGguf(folder, join(d, "p.gguf"), { type });
      const g = readGguf(join(d, "p.gguf"));
      checkStructure(g);
      for (const [gname, key] of names) {
        if (key === null) continue;
        const { info, bytes } = data(g, gname);
        const x = (sd.get(key)?.toArray() ?? []).map((v) => Math.fround(v));
        if (info.ne.length === 1) {
          assert.equal(info.type, GGML_TYPE.F32, `${gname} stays f32`);
          continue;
        }
        assert.equal(info.type, type === "f16" ? GGML_TYPE.F16 : GGML_TYPE.BF16, gname);
        for (let i = 0; i < x.length; i++) {
          const h = bytes.readUInt16LE(2 * i);
          const xi = x[i] as number;
          if (type === "bf16") {
            const b = f32bits(xi);
            const want = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
            if (h !== want) assert.fail(`${gname}[${i}]: bf16 ${h.toString(16)} vs ${want.toString(16)}`);
            continue;
          }
          // f16: no representable half is closer, and a tie goes to the even mantissa
          const v = f16ToNumber(h);
          const mag = h & 0x7fff;
          const sign = h & 0x8000;
          const err = Math.abs(xi - v);
          for (const nb of [mag - 1, mag + 1]) {
            if (nb < 0 || nb >= 0x7c00) continue;
            const e2 = Math.abs(xi - f16ToNumber(sign | nb));
            if (e2 < err || (e2 === err && (mag & 1) === 1))
              assert.fail(`${gname}[${i}]: ${xi} → f16 ${v}, but ${f16ToNumber(sign | nb)} is nearer/even`);
          }
        }
      }
    }
  });

  test("q8_0: blocks of 32 with an f16 scale max|x|/127; dequantised values within the quantisation step", () => {
    const folder = join(M, "siglip-qwen2");
    const lm = loadTinyLlava(folder).languageModel;
    const d = tmp();
    exportTinyLlavaGguf(folder, join(d, "q8.gguf"), { type: "q8_0" });
    const g = readGguf(join(d, "q8.gguf"));
    checkStructure(g);
    assert.equal(val(g, "general.file_type"), 7);
    const names = expectedNames("qwen2");
    let blocks = 0;
    for (const [gname, key] of names) {
      const { info, bytes } = data(g, gname);
      const x = expectedValues(lm, gname, key, "qwen2").map((v) => Math.fround(v));
      if (info.ne.length === 1) {
        assert.equal(info.type, GGML_TYPE.F32);
        assert.deepEqual(
          Array.from(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length))),
          x,
        );
        continue;
      }
      assert.equal(info.type, GGML_TYPE.Q8_0, gname);
      assert.equal(bytes.length, (x.length / 32) * 34);
      for (let bi = 0; bi < x.length / 32; bi++) {
        const dd = f16ToNumber(bytes.readUInt16LE(bi * 34));
        const xs = x.slice(bi * 32, bi * 32 + 32);
        const amax = Math.max(...xs.map(Math.abs));
        assert.ok(
          Math.abs(dd - amax / 127) <= (amax / 127) * 2 ** -10,
          `${gname} block ${bi}: d ${dd} vs ${amax / 127}`,
        );
        let maxQ = 0;
        for (let j = 0; j < 32; j++) {
          const q = bytes.readInt8(bi * 34 + 2 + j);
          maxQ = Math.max(maxQ, Math.abs(q));
          const e = Math.abs((xs[j] as number) - q * dd);
          if (e > 0.57 * dd + 1e-30) assert.fail(`${gname}[${bi * 32 + j}]: |x − q·d| = ${e} > 0.57·d (d = ${dd})`);
        }
        if (amax > 0) assert.equal(maxQ, 127, "the largest |x| of a block maps to ±127");
        blocks++;
      }
    }
    assert.ok(blocks > 1000);
  });
});

describe("llama's q/k permutation", () => {
  test("hand-built: rows of each head interleave the two halves", () => {
    // 2 heads × head_dim 4, 3 input features; value = 10·row + column
    const rows = Array.from({ length: 8 }, (_, r) => [0, 1, 2].map((c) => 10 * r + c));
    const p = permuteForLlamaRope(tensorOf(rows), 2).tolist() as number[][];
    assert.deepEqual(
      p.map((r) => (r[0] as number) / 10),
      [0, 2, 1, 3, 4, 6, 5, 7],
    );
    const b = permuteForLlamaRope(tensorOf([0, 1, 2, 3, 4, 5, 6, 7]), 2).toArray();
    assert.deepEqual(b, [0, 2, 1, 3, 4, 6, 5, 7]);
  });

  test("HF rotate-half RoPE on q equals llama.cpp's interleaved RoPE on the permuted q (same attention scores)", () => {
    manualSeed(3);
    const heads = 2;
    const d = 8;
    const hidden = 5;
    const wq = randn([heads * d, hidden]);
    const wk = randn([heads * d, hidden]);
    const x = randn([hidden]).toArray();
    const mv = (w: number[][], v: number[]) => w.map((r) => r.reduce((s, a, i) => s + a * (v[i] as number), 0));
    const theta = 10000;
    const pos = 7;
    const freq = (i: number) => pos / theta ** ((2 * i) / d);
    const hfRope = (q: number[]) => {
      const out = [...q];
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < d / 2; i++) {
          const a = q[h * d + i] as number;
          const b = q[h * d + i + d / 2] as number;
          out[h * d + i] = a * Math.cos(freq(i)) - b * Math.sin(freq(i));
          out[h * d + i + d / 2] = b * Math.cos(freq(i)) + a * Math.sin(freq(i));
        }
      return out;
    };
    const interleavedRope = (q: number[]) => {
      const out = [...q];
      for (let h = 0; h < heads; h++)
        for (let i = 0; i < d / 2; i++) {
          const a = q[h * d + 2 * i] as number;
          const b = q[h * d + 2 * i + 1] as number;
          out[h * d + 2 * i] = a * Math.cos(freq(i)) - b * Math.sin(freq(i));
          out[h * d + 2 * i + 1] = a * Math.sin(freq(i)) + b * Math.cos(freq(i));
        }
      return out;
    };
    const qHf = hfRope(mv(wq.tolist() as number[][], x));
    const kHf = hfRope(mv(wk.tolist() as number[][], x));
    const qG = interleavedRope(mv(permuteForLlamaRope(wq, heads).tolist() as number[][], x));
    const kG = interleavedRope(mv(permuteForLlamaRope(wk, heads).tolist() as number[][], x));
    for (let i = 0; i < heads * d; i++)
      assert.ok(Math.abs((qG[i] as number) - (qHf[llamaSourceRow(i, d)] as number)) < 1e-4, `q[${i}]`);
    for (let h = 0; h < heads; h++) {
      const dot = (u: number[], v: number[]) =>
        u.slice(h * d, h * d + d).reduce((s, a, i) => s + a * (v[h * d + i] as number), 0);
      assert.ok(Math.abs(dot(qG, kG) - dot(qHf, kHf)) < 1e-3, `head ${h} score`);
    }
  });
});

function tinyLm(modelType: string, extra: Record<string, unknown> = {}): CausalLM {
  const cfg = parseTextConfig(
    new Fields(
      {
        model_type: modelType,
        vocab_size: 300,
        hidden_size: 64,
        intermediate_size: 96,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 128,
        rope_theta: 1000000,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        bos_token_id: 290,
        eos_token_id: 290,
        ...extra,
      },
      "test config",
    ),
  );
  return buildLanguageModel(cfg, { dtype: "float32" });
}

describe("in-memory models", () => {
  test("a random Qwen2 with a synthetic vocabulary of its vocab size (benchmark path), bf16", () => {
    manualSeed(0);
    const lm = tinyLm("qwen2");
    const d = tmp();
    const out = join(d, "syn.gguf");
    const r = writeGguf(lm, { synthetic: true }, out, { type: "bf16", name: "random-qwen2" });
    assert.equal(r.tensors, 1 + 12 + 1);
    const g = readGguf(out);
    checkStructure(g);
    assert.equal(val(g, "general.name"), "random-qwen2");
    const tokens = val(g, "tokenizer.ggml.tokens") as string[];
    const types = val(g, "tokenizer.ggml.token_type") as number[];
    assert.equal(tokens.length, 300);
    assert.equal(new Set(tokens).size, 300, "unique token texts");
    assert.equal(tokens[10], "Ċ", "byte tokens in GPT-2's byte-to-unicode form");
    assert.equal(tokens[65], "A");
    assert.equal(tokens[290], "<|endoftext|>");
    assert.equal(types[290], 3);
    assert.equal(val(g, "tokenizer.ggml.eos_token_id"), 290);
    assert.deepEqual(val(g, "tokenizer.ggml.merges"), []);
    assert.equal(val(g, "qwen2.rope.freq_base"), 1000000);
    const emb = lm.stateDict().get("model.embed_tokens.weight")?.toArray() ?? [];
    const { info, bytes } = data(g, "token_embd.weight");
    assert.deepEqual(info.ne, [64, 300]);
    for (let i = 0; i < emb.length; i += 97) {
      const b = f32bits(emb[i] as number);
      assert.equal(bytes.readUInt16LE(2 * i), ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff);
    }
  });

  test("q8_0 falls back to f16 for rows that are not a multiple of 32 (as convert_hf_to_gguf.py)", () => {
    const lm = tinyLm("qwen2", { intermediate_size: 80 });
    const d = tmp();
    writeGguf(lm, { synthetic: true }, join(d, "fb.gguf"), { type: "q8_0" });
    const g = readGguf(join(d, "fb.gguf"));
    assert.equal(data(g, "blk.0.ffn_down.weight").info.type, GGML_TYPE.F16, "rows of 80");
    assert.equal(data(g, "blk.0.ffn_up.weight").info.type, GGML_TYPE.Q8_0, "rows of 64");
  });

  test("unsupported cases fail with ExportError naming the problem", () => {
    assert.throws(
      () => planGguf(tinyLm("gemma", { tie_word_embeddings: false, hidden_act: "gelu_pytorch_tanh" })),
      (e: Error) => {
        assert.ok(e instanceof ExportError);
        assert.match(e.message, /gemma: llama\.cpp always ties/);
        return true;
      },
    );
    assert.throws(() => planGguf(tinyLm("qwen2", { hidden_act: "gelu" })), /activation "gelu"/);
    assert.throws(() => planGguf(tinyLm("qwen2"), { type: "q4_0" as never }), /unknown GGUF type/);
  });

  test("writes are atomic: a failing producer leaves the previous file untouched and no temporary file", () => {
    const d = tmp();
    const out = join(d, "x.gguf");
    writeFileSync(out, "previous");
    assert.throws(
      () =>
        writeGgufFile(
          out,
          [["general.architecture", { type: "str", value: "llama" }]],
          [
            {
              name: "t",
              ne: [4],
              type: GGML_TYPE.F32,
              chunks: function* () {
                yield new Uint8Array(8);
                throw new Error("producer failed");
              },
            },
          ],
        ),
      /producer failed/,
    );
    assert.equal(readFileSync(out, "utf8"), "previous");
    assert.deepEqual(readdirSync(d), ["x.gguf"]);
    assert.throws(
      () => writeGgufFile(out, [], [{ name: "t", ne: [4], type: GGML_TYPE.F32, chunks: () => [new Uint8Array(12)] }]),
      /wrote 12 bytes, expected 16/,
    );
    assert.deepEqual(readdirSync(d), ["x.gguf"]);
    // and a successful write replaces it whole
    writeGgufFile(out, [], [{ name: "t", ne: [4], type: GGML_TYPE.F32, chunks: () => [new Uint8Array(16)] }]);
    const fd = openSync(out, "r");
    const head = Buffer.alloc(4);
    readSync(fd, head, 0, 4, 0);
    closeSync(fd);
    assert.equal(head.toString("latin1"), "GGUF");
    assert.equal(readGguf(out).tensors.length, 1);
  });
});
