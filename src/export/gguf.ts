// GGUF export of a TinyLLaVA model's language model, loadable by llama.cpp: the architecture's hyperparameters as
// convert_hf_to_gguf.py writes them, the tokenizer (vocab.ts), and the tensors under llama.cpp's names and layouts:
//   token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down,
//   attn_q_norm, attn_k_norm}, output_norm, output (absent when tied, except where llama.cpp requires it), biases.
// Where a family differs:
//   llama    — q/k rows permuted from Hugging Face's rotate-half RoPE to llama.cpp's interleaved pairs (NORM rope);
//              llama3 rope scaling as a rope_freqs tensor, linear as rope.scaling.*;
//   qwen2/3  — no permutation (llama.cpp uses NEOX rope for them), qwen3's per-head q/k RMSNorm;
//   phi2     — LayerNorms with bias, parallel block, partial rotary (rope.dimension_count), fc1/fc2 → ffn_up/ffn_down,
//              `dense` → attn_output; llama.cpp requires output.bias, so a zero bias is written when the model has none;
//   gemma    — norm weights + 1 (HF scales by 1 + w), embeddings always tied (llama.cpp applies √hidden itself);
//   stablelm — LayerNorms with bias, partial rotary, use_parallel_residual, per-head q/k norms stacked [heads, dim].
// Tensor types: 1-D tensors and *_norm weights stay f32 (as convert_hf_to_gguf.py); 2-D ones get the chosen type;
// q8_0 falls back to f16 for rows that are not a multiple of 32. Dims are written in ggml order (reversed).
import type { TextConfig } from "../config/index.js";
import type { CausalLM } from "../models/llm/base.js";
import { noGrad } from "../torch/autograd.js";
import { allclose, stack, tensor, zeros } from "../torch/creation.js";
import type { DType } from "../torch/dtype.js";
import { tidy } from "../torch/memory.js";
import type { Tensor } from "../torch/tensor.js";
import {
  ExportError,
  GGML_TYPE,
  type GgmlType,
  type GgufTensorSpec,
  type GgufValue,
  type GgufWriteResult,
  kv,
  tensorBytes,
  writeGgufFile,
} from "./gguf-format.js";
import { quantizeQ8_0 } from "./quant.js";
import { type GgufVocab, syntheticVocab, vocabFromTokenizerDir, vocabMetadata } from "./vocab.js";

export type GgufType = "f32" | "f16" | "bf16" | "q8_0";
export const GGUF_TYPES: readonly GgufType[] = ["f32", "f16", "bf16", "q8_0"];

/** llama_ftype of each choice (general.file_type). */
const FILE_TYPE: Record<GgufType, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };
const TENSOR_TYPE: Record<GgufType, GgmlType> = {
  f32: GGML_TYPE.F32,
  f16: GGML_TYPE.F16,
  bf16: GGML_TYPE.BF16,
  q8_0: GGML_TYPE.Q8_0,
};

/** HF model_type → llama.cpp architecture. */
export const GGUF_ARCH: Record<string, string> = {
  llama: "llama",
  qwen2: "qwen2",
  qwen3: "qwen3",
  phi: "phi2",
  gemma: "gemma",
  stablelm: "stablelm",
};

/** The tensors each llama.cpp architecture loads (it refuses files with others). */
const ACCEPTED: Record<string, { global: string[]; block: string[] }> = {
  llama: {
    global: ["token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight"],
    block: [
      "attn_norm.weight",
      "attn_q.weight",
      "attn_q.bias",
      "attn_k.weight",
      "attn_k.bias",
      "attn_v.weight",
      "attn_v.bias",
      "attn_output.weight",
      "attn_output.bias",
      "ffn_norm.weight",
      "ffn_gate.weight",
      "ffn_gate.bias",
      "ffn_up.weight",
      "ffn_up.bias",
      "ffn_down.weight",
      "ffn_down.bias",
    ],
  },
  qwen2: {
    global: ["token_embd.weight", "output_norm.weight", "output.weight", "output.bias"],
    block: [
      "attn_norm.weight",
      "attn_q.weight",
      "attn_q.bias",
      "attn_k.weight",
      "attn_k.bias",
      "attn_v.weight",
      "attn_v.bias",
      "attn_output.weight",
      "ffn_norm.weight",
      "ffn_gate.weight",
      "ffn_up.weight",
      "ffn_down.weight",
    ],
  },
  qwen3: {
    global: ["token_embd.weight", "output_norm.weight", "output.weight"],
    block: [
      "attn_norm.weight",
      "attn_q.weight",
      "attn_q.bias",
      "attn_k.weight",
      "attn_k.bias",
      "attn_v.weight",
      "attn_v.bias",
      "attn_output.weight",
      "attn_q_norm.weight",
      "attn_k_norm.weight",
      "ffn_norm.weight",
      "ffn_gate.weight",
      "ffn_up.weight",
      "ffn_down.weight",
    ],
  },
  gemma: {
    global: ["token_embd.weight", "output_norm.weight"],
    block: [
      "attn_norm.weight",
      "attn_q.weight",
      "attn_q.bias",
      "attn_k.weight",
      "attn_k.bias",
      "attn_v.weight",
      "attn_v.bias",
      "attn_output.weight",
      "ffn_norm.weight",
      "ffn_gate.weight",
      "ffn_up.weight",
      "ffn_down.weight",
    ],
  },
  phi2: {
    global: ["token_embd.weight", "output_norm.weight", "output_norm.bias", "output.weight", "output.bias"],
    block: [
      "attn_norm.weight",
      "attn_norm.bias",
      "attn_q.weight",
      "attn_q.bias",
      "attn_k.weight",
      "attn_k.bias",
      "attn_v.weight",
      "attn_v.bias",
      "attn_output.weight",
      "attn_output.bias",
      "ffn_up.weight",
      "ffn_up.bias",
      "ffn_down.weight",
      "ffn_down.bias",
    ],
  },
  stablelm: {
    global: ["token_embd.weight", "output_norm.weight", "output_norm.bias", "output.weight"],
    block: [
      "attn_norm.weight",
      "attn_norm.bias",
      "attn_q.weight",
      "attn_q.bias",
      "attn_k.weight",
      "attn_k.bias",
      "attn_v.weight",
      "attn_v.bias",
      "attn_output.weight",
      "attn_q_norm.weight",
      "attn_k_norm.weight",
      "ffn_norm.weight",
      "ffn_norm.bias",
      "ffn_gate.weight",
      "ffn_up.weight",
      "ffn_down.weight",
    ],
  },
};

// Hugging Face submodule names (inside model.layers.N) → llama.cpp tensor names (inside blk.N)
const BLOCK_NAMES: Record<string, string> = {
  input_layernorm: "attn_norm",
  post_attention_layernorm: "ffn_norm",
  "self_attn.q_proj": "attn_q",
  "self_attn.k_proj": "attn_k",
  "self_attn.v_proj": "attn_v",
  "self_attn.o_proj": "attn_output",
  "self_attn.dense": "attn_output",
  "self_attn.q_norm": "attn_q_norm",
  "self_attn.k_norm": "attn_k_norm",
  "mlp.gate_proj": "ffn_gate",
  "mlp.up_proj": "ffn_up",
  "mlp.down_proj": "ffn_down",
  "mlp.fc1": "ffn_up",
  "mlp.fc2": "ffn_down",
};
const GLOBAL_NAMES: Record<string, string> = {
  "model.embed_tokens": "token_embd",
  "model.norm": "output_norm",
  "model.final_layernorm": "output_norm",
  lm_head: "output",
};

/** One GGUF tensor before encoding: its llama.cpp name and a producer of the (transformed) torch tensor in HF layout
 * (`owned`: the producer made a new tensor that the writer frees afterwards). */
export interface PlannedTensor {
  name: string;
  /** torch shape (row-major, outermost first) */
  shape: number[];
  /** the HF keys it comes from (for messages and tests) */
  from: string[];
  get: () => { t: Tensor; owned: boolean };
}

export interface GgufPlan {
  arch: string;
  metadata: [string, GgufValue][];
  tensors: PlannedTensor[];
}

export interface GgufOptions {
  type?: GgufType;
  /** general.name */
  name?: string;
}

/** llama.cpp's q/k permutation for its interleaved RoPE (convert_hf_to_gguf.py LlamaModel.permute): rows of each head
 * [h0 … h(d/2−1), h(d/2) … h(d−1)] → [h0, h(d/2), h1, h(d/2+1), …]. Works for weights [rows, in] and biases [rows]. */
export function permuteForLlamaRope(w: Tensor, nHead: number): Tensor {
  const shape = w.shape;
  const rows = shape[0] as number;
  if (rows % (2 * nHead) !== 0) throw new ExportError(`cannot permute ${rows} rows into ${nHead} heads`);
  return w
    .reshape([nHead, 2, rows / nHead / 2, ...shape.slice(1)])
    .transpose(1, 2)
    .reshape(shape);
}

function checkActivation(cfg: TextConfig, arch: string): void {
  const act = cfg.hidden_act;
  // llama.cpp's GELU is the tanh approximation; an exact-erf "gelu" model would compute something else there
  const gelu = ["gelu_pytorch_tanh", "gelu_new", "gelu_fast"];
  const ok =
    arch === "gemma" || arch === "phi2" ? gelu.includes(act) : act === "silu" || act === "swish" || act === "swiglu";
  if (!ok)
    throw new ExportError(
      `${arch}: hidden activation "${act}" has no llama.cpp counterpart for this architecture (llama.cpp uses ${arch === "gemma" || arch === "phi2" ? "GELU (tanh)" : "SiLU"})`,
    );
}

function ropeFreqs(cfg: TextConfig): number[] | null {
  const s = cfg.rope_scaling;
  if (s?.rope_type !== "llama3") return null;
  const dim = cfg.head_dim;
  const factor = s.factor ?? 8;
  const low = s.low_freq_factor ?? 1;
  const high = s.high_freq_factor ?? 4;
  const orig = s.original_max_position_embeddings ?? 8192;
  const lowWave = orig / low;
  const highWave = orig / high;
  const out: number[] = [];
  for (let i = 0; i < dim; i += 2) {
    const f = Math.fround(1 / Math.fround(cfg.rope_theta ** (i / dim)));
    const wave = (2 * Math.PI) / f;
    if (wave < highWave) out.push(1);
    else if (wave > lowWave) out.push(factor);
    else {
      const smooth = (orig / wave - low) / (high - low);
      out.push(1 / ((1 - smooth) / factor + smooth));
    }
  }
  return out;
}

/** The metadata (without the tokenizer) and the tensor list for a language model. */
export function planGguf(lm: CausalLM, opts: GgufOptions = {}): GgufPlan {
  const cfg = lm.config;
  const arch = GGUF_ARCH[cfg.model_type];
  if (!arch)
    throw new ExportError(
      `LLM model_type "${cfg.model_type}" has no GGUF export; supported: ${Object.keys(GGUF_ARCH).join(", ")}`,
    );
  checkActivation(cfg, arch);
  const type = opts.type ?? "f16";
  if (!GGUF_TYPES.includes(type)) throw new ExportError(`unknown GGUF type "${type}"; use ${GGUF_TYPES.join(", ")}`);
  const rotary = lm.rope.rotaryDim;
  const headDim = cfg.head_dim;
  if (arch === "llama" && rotary !== headDim)
    throw new ExportError(`llama: partial rotary (${rotary} of ${headDim}) cannot be expressed for llama.cpp's llama`);
  if (arch === "phi2" && cfg.fields.bool("qk_layernorm", false))
    throw new ExportError("phi2: qk_layernorm is not supported by llama.cpp's phi2");
  const scaling = cfg.rope_scaling;
  if (scaling && !(scaling.rope_type === "linear" || (scaling.rope_type === "llama3" && arch === "llama")))
    throw new ExportError(`${arch}: rope_scaling "${scaling.rope_type}" is not supported for GGUF export`);

  const rmsArch = arch === "llama" || arch === "qwen2" || arch === "qwen3" || arch === "gemma";
  const a = (k: string) => `${arch}.${k}`;
  const md: [string, GgufValue][] = [
    ["general.architecture", kv.str(arch)],
    ["general.type", kv.str("model")],
    ["general.name", kv.str(opts.name ?? `tinyllava-${arch}`)],
    [a("block_count"), kv.u32(cfg.num_hidden_layers)],
    [a("context_length"), kv.u32(cfg.max_position_embeddings)],
    [a("embedding_length"), kv.u32(cfg.hidden_size)],
    [a("feed_forward_length"), kv.u32(cfg.intermediate_size)],
    [a("attention.head_count"), kv.u32(cfg.num_attention_heads)],
    [a("attention.head_count_kv"), kv.u32(cfg.num_key_value_heads)],
    [a("rope.freq_base"), kv.f32(cfg.rope_theta)],
    [a("rope.dimension_count"), kv.u32(rotary)],
    rmsArch
      ? [a("attention.layer_norm_rms_epsilon"), kv.f32(cfg.rms_norm_eps)]
      : [a("attention.layer_norm_epsilon"), kv.f32(cfg.layer_norm_eps)],
  ];
  if (headDim * cfg.num_attention_heads !== cfg.hidden_size || cfg.fields.has("head_dim") || arch === "gemma") {
    md.push([a("attention.key_length"), kv.u32(headDim)], [a("attention.value_length"), kv.u32(headDim)]);
  }
  if (arch === "llama") md.push([a("vocab_size"), kv.u32(cfg.vocab_size)]);
  if (arch === "stablelm")
    md.push([a("use_parallel_residual"), kv.bool(cfg.fields.bool("use_parallel_residual", false))]);
  if (scaling?.rope_type === "linear") {
    md.push([a("rope.scaling.type"), kv.str("linear")], [a("rope.scaling.factor"), kv.f32(scaling.factor ?? 1)]);
  }
  md.push(["general.file_type", kv.u32(FILE_TYPE[type])], ["general.quantization_version", kv.u32(2)]);

  const sd = lm.stateDict();
  const live = (t: Tensor) => () => ({ t, owned: false });
  const planned: PlannedTensor[] = [];
  const add = (name: string, shape: number[], from: string[], get: PlannedTensor["get"]) =>
    planned.push({ name, shape: [...shape], from, get });
  const nHead = cfg.num_attention_heads;
  const nKv = cfg.num_key_value_heads;
  const qkNorms = new Map<string, { shape: number[]; parts: [number, string, Tensor][] }>();
  const embed = sd.get("model.embed_tokens.weight");
  if (!embed) throw new ExportError("the language model has no model.embed_tokens.weight");

  for (const [key, t] of sd) {
    if (key.endsWith(".inv_freq")) continue;
    const dot = key.lastIndexOf(".");
    const mod = key.slice(0, dot);
    const param = key.slice(dot + 1);
    let name: string | undefined;
    let bid: number | null = null;
    const m = /^model\.layers\.(\d+)\.(.+)$/.exec(mod);
    if (m) {
      bid = Number(m[1]);
      const local = m[2] as string;
      // StableLM's per-head q/k LayerNorms: self_attn.{q,k}_layernorm.norms.H → one stacked [heads, head_dim]
      const ph = /^self_attn\.([qk])_layernorm\.norms\.(\d+)$/.exec(local);
      if (ph && arch === "stablelm" && param === "weight") {
        const gname = `blk.${bid}.attn_${ph[1]}_norm.weight`;
        const g = qkNorms.get(gname) ?? { shape: t.shape, parts: [] };
        g.parts.push([Number(ph[2]), key, t]);
        if (!qkNorms.has(gname)) {
          qkNorms.set(gname, g);
          // placeholder entry keeps the tensor order; filled once all heads are seen
          add(gname, [], [], () => {
            throw new ExportError("unfilled");
          });
        }
        continue;
      }
      const base = BLOCK_NAMES[local];
      if (base) name = `blk.${bid}.${base}.${param}`;
    } else {
      const base = GLOBAL_NAMES[mod];
      if (base) name = `${base}.${param}`;
    }
    if (!name) throw new ExportError(`${arch}: no llama.cpp tensor for "${key}"`);
    if (arch === "gemma" && name === "output.weight") {
      const same = tidy(() => allclose(t, embed, 0, 0));
      if (!same)
        throw new ExportError("gemma: llama.cpp always ties the output to token_embd, but lm_head differs here");
      continue;
    }
    let get = live(t);
    if (arch === "llama" && /\.attn_[qk]\.(weight|bias)$/.test(name)) {
      const heads = name.includes(".attn_q.") ? nHead : nKv;
      get = () => ({ t: noGrad(() => permuteForLlamaRope(t, heads)), owned: true });
    } else if (arch === "gemma" && name.endsWith("norm.weight")) {
      get = () => ({ t: noGrad(() => tidy(() => t.to("float32").add(1))), owned: true });
    }
    add(name, t.shape, [key], get);
  }
  for (const [gname, g] of qkNorms) {
    const parts = g.parts.sort((x, y) => x[0] - y[0]);
    const heads = gname.includes("attn_q_norm") ? nHead : nKv;
    if (parts.length !== heads || parts.some(([h], i) => h !== i))
      throw new ExportError(`stablelm: ${gname} needs ${heads} per-head norms, found ${parts.length}`);
    const idx = planned.findIndex((p) => p.name === gname);
    planned[idx] = {
      name: gname,
      shape: [heads, ...g.shape],
      from: parts.map((p) => p[1]),
      get: () => ({ t: noGrad(() => stack(parts.map((p) => p[2]))), owned: true }),
    };
  }
  const has = (n: string) => planned.some((p) => p.name === n);
  if ((arch === "phi2" || arch === "stablelm") && !has("output.weight")) {
    // llama.cpp's phi2/stablelm always read an output matrix: the tied embeddings
    add("output.weight", embed.shape, ["model.embed_tokens.weight"], live(embed));
  }
  if (arch === "phi2" && !has("output.bias")) {
    const dtype: DType = "float32";
    add("output.bias", [cfg.vocab_size], [], () => ({ t: zeros([cfg.vocab_size], { dtype }), owned: true }));
  }
  const freqs = arch === "llama" ? ropeFreqs(cfg) : null;
  if (freqs) {
    add("rope_freqs.weight", [freqs.length], [], () => ({ t: tensor(freqs, { dtype: "float32" }), owned: true }));
  }
  const ok = ACCEPTED[arch] as { global: string[]; block: string[] };
  for (const p of planned) {
    const bm = /^blk\.(\d+)\.(.+)$/.exec(p.name);
    const accepted = bm ? ok.block.includes(bm[2] as string) : ok.global.includes(p.name);
    if (!accepted) throw new ExportError(`${arch}: llama.cpp does not load a tensor "${p.name}" (from ${p.from})`);
  }
  // token_embd, then the blocks in order, then the output tensors (llama.cpp itself does not care about the order)
  const order = (n: string) => (n === "token_embd.weight" ? 0 : n.startsWith("blk.") ? 1 : 2);
  planned.sort((x, y) => order(x.name) - order(y.name) || blockIndex(x.name) - blockIndex(y.name));
  return { arch, metadata: md, tensors: planned };
}

function blockIndex(n: string): number {
  const m = /^blk\.(\d+)\./.exec(n);
  return m ? Number(m[1]) : 0;
}

/** The ggml type a planned tensor gets for the chosen file type. */
export function ggmlTypeFor(name: string, shape: readonly number[], type: GgufType): GgmlType {
  if (shape.length <= 1 || name.endsWith("_norm.weight")) return GGML_TYPE.F32;
  const t = TENSOR_TYPE[type];
  if (t === GGML_TYPE.Q8_0 && (shape.at(-1) as number) % 32 !== 0) return GGML_TYPE.F16;
  return t;
}

const CHUNK_ELEMENTS = 1 << 20;

/** Encodes a torch tensor (HF layout) as ggml bytes, in chunks of whole rows. */
function* encode(t: Tensor, type: GgmlType): Generator<Uint8Array> {
  const shape = t.shape;
  const rows = shape.length === 0 ? 1 : (shape[0] as number);
  const rowElems = shape.slice(1).reduce((x, y) => x * y, 1);
  const step = Math.max(1, Math.floor(CHUNK_ELEMENTS / Math.max(rowElems, 1)));
  for (let r = 0; r < rows; r += step) {
    const n = Math.min(step, rows - r);
    yield tidy(() =>
      noGrad(() => {
        const c = shape.length === 0 ? t : t.narrow(0, r, n);
        switch (type) {
          case GGML_TYPE.F32:
            return c.to("float32").contiguous().toBuffer();
          case GGML_TYPE.F16:
            return c.to("float16").contiguous().toBuffer();
          case GGML_TYPE.BF16:
            return c.to("bfloat16").contiguous().toBuffer();
          case GGML_TYPE.Q8_0:
            return quantizeQ8_0(c.to("float32").contiguous().dataSync() as Float32Array);
          default:
            throw new ExportError(`cannot encode ggml type ${type}`);
        }
      }),
    );
  }
}

/** GGUF tensor specs (ggml dims, type, streamed bytes) for a plan. */
export function tensorSpecs(plan: GgufPlan, type: GgufType): GgufTensorSpec[] {
  return plan.tensors.map((p) => {
    const gtype = ggmlTypeFor(p.name, p.shape, type);
    const ne = [...p.shape].reverse();
    tensorBytes(ne, gtype); // validates the block size now rather than mid-write
    return {
      name: p.name,
      ne,
      type: gtype,
      chunks: function* () {
        const { t, owned } = p.get();
        try {
          const got = t.shape;
          if (got.length !== p.shape.length || got.some((d, i) => d !== p.shape[i]))
            throw new ExportError(`${p.name}: tensor has shape [${got}], planned [${p.shape}]`);
          yield* encode(t, gtype);
        } finally {
          if (owned) t.dispose();
        }
      },
    };
  });
}

/** Where the GGUF's vocabulary comes from: a tokenizer folder, a ready vocabulary, or a synthetic one of the model's
 * vocab size (for random-weight models without a tokenizer; token ids are fed directly). */
export type GgufVocabSource = { tokenizerDir: string; pre?: string } | { vocab: GgufVocab } | { synthetic: true };

export interface GgufExportResult extends GgufWriteResult {
  arch: string;
  type: GgufType;
}

/** The vocabulary for a language model from a source. */
export function vocabFor(lm: CausalLM, source: GgufVocabSource): GgufVocab {
  const cfg = lm.config;
  const ids = { bos: cfg.bos_token_id, eos: cfg.eos_token_id, pad: cfg.pad_token_id };
  const arch = GGUF_ARCH[cfg.model_type] ?? cfg.model_type;
  if ("vocab" in source) return source.vocab;
  if ("synthetic" in source) return syntheticVocab(cfg.vocab_size, ids);
  return vocabFromTokenizerDir(source.tokenizerDir, {
    vocabSize: cfg.vocab_size,
    arch,
    configIds: ids,
    pre: source.pre,
  });
}

/** Writes a language model (in memory; any dtype) as a llama.cpp GGUF file, streamed and atomic. */
export function writeGguf(
  lm: CausalLM,
  source: GgufVocabSource,
  outPath: string,
  opts: GgufOptions = {},
): GgufExportResult {
  const type = opts.type ?? "f16";
  const plan = planGguf(lm, { ...opts, type });
  const vocab = vocabFor(lm, source);
  if (vocab.tokens.length !== lm.config.vocab_size)
    throw new ExportError(
      `the vocabulary has ${vocab.tokens.length} tokens but the embedding has ${lm.config.vocab_size} rows`,
    );
  // convert_hf_to_gguf.py's Phi2Model always writes add_bos_token = false
  const v = plan.arch === "phi2" ? { ...vocab, addBos: false } : vocab;
  const metadata = [...plan.metadata, ...vocabMetadata(v)];
  const res = writeGgufFile(outPath, metadata, tensorSpecs(plan, type));
  return { ...res, arch: plan.arch, type };
}
