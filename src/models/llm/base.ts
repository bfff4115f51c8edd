// The decoder-only LM skeleton every family shares (Llama's shape): token embeddings → N decoder layers → final
// norm → lm_head, with rotary self-attention (MHA/GQA/MQA) and a causal + padding mask. Families (llama.ts,
// qwen2.ts, …) pick the pieces that differ: norms, MLP, biases, q/k norms, residual wiring, embedding scale.

import type { TextConfig } from "../../config/index.js";
import { type Activation, getActivation } from "../../nn/activations.js";
import { KVCache } from "../../nn/kv-cache.js";
import { Embedding, LayerNorm, Linear, linearGroup, linearWith, RMSNorm } from "../../nn/layers.js";
import * as lowp from "../../nn/lowp.js";
import { Module, ModuleList } from "../../nn/module.js";
import { runLayers } from "../../nn/recompute.js";
import { RotaryEmbedding } from "../../nn/rope.js";
import { arange, ones } from "../../torch/creation.js";
import type { DType } from "../../torch/dtype.js";
import { tidy } from "../../torch/memory.js";
import type { Tensor } from "../../torch/tensor.js";

export interface BuildContext {
  dtype: DType;
  /** checkpoint keys (internal names below `language_model.`) when building to load weights: lets a family
   * detect optional tensors (e.g. Phi's lm_head bias) */
  keys?: Set<string>;
}

export type NormFactory = (dim: number) => Module & { forward(x: Tensor): Tensor };

/** transformers' RMSNorm: normalised in float32 whatever the model dtype (float64 included), then cast back. */
export const rmsNorm =
  (eps: number, dtype: DType, unitOffset = false): NormFactory =>
  (dim) =>
    new RMSNorm(dim, eps, { dtype, unitOffset, float32Compute: true });
export const layerNorm =
  (eps: number, dtype: DType, bias = true): NormFactory =>
  (dim) =>
    new LayerNorm(dim, eps, { dtype, bias });

/** Additive attention mask [B, 1, L, S]: 0 where a query may attend, the dtype's lowest value elsewhere (causal, and
 * padding keys masked out when `attentionMask` [B, S] is given). S = past + L. */
export function causalMask(attentionMask: Tensor | null, batch: number, L: number, dtype: DType, past = 0): Tensor {
  const S = past + L;
  const lowest =
    dtype === "float64"
      ? -Number.MAX_VALUE
      : dtype === "float32"
        ? -3.4028234663852886e38
        : dtype === "float16"
          ? -65504
          : -3.3895313892515355e38;
  const allowed = ones([L, S], { dtype: "bool" }).tril(past); // [L, S]
  let keep = allowed.unsqueeze(0).unsqueeze(0); // [1,1,L,S]
  if (attentionMask) {
    keep = keep.logicalAnd(attentionMask.to("bool").view(batch, 1, 1, S));
    // a padding query would see no key at all: its softmax (float32, where float64's lowest is −inf) would be NaN,
    // and 0 · NaN reaches real rows through the values. It attends to itself instead (real queries always may).
    const self = ones([L, S], { dtype: "bool" })
      .tril(past)
      .logicalAnd(ones([L, S], { dtype: "bool" }).triu(past));
    keep = keep.logicalOr(self.unsqueeze(0).unsqueeze(0));
  } else keep = keep.expand(batch, 1, L, S);
  return ones([1], { dtype }).mul(0).expand(batch, 1, L, S).maskedFill(keep.logicalNot(), lowest);
}

export interface AttentionOptions {
  hidden: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  qkvBias: boolean;
  outBias: boolean;
  outName?: string;
  rope: RotaryEmbedding;
  dtype: DType;
  /** per-head norms on q and k before RoPE (Qwen3: RMSNorm over head_dim; StableLM/Phi: LayerNorm) */
  qkNorm?: { q: Module & { forward(x: Tensor): Tensor }; k: Module & { forward(x: Tensor): Tensor } } | null;
}

export class Attention extends Module {
  readonly qProj: Linear;
  readonly kProj: Linear;
  readonly vProj: Linear;
  readonly oProj: Linear;
  readonly qNorm: (Module & { forward(x: Tensor): Tensor }) | null;
  readonly kNorm: (Module & { forward(x: Tensor): Tensor }) | null;

  constructor(
    readonly o: AttentionOptions,
    names: { qNorm?: string; kNorm?: string } = {},
  ) {
    super();
    const dt = { dtype: o.dtype };
    this.qProj = this.registerModule(
      "q_proj",
      new Linear(o.hidden, o.numHeads * o.headDim, { ...dt, bias: o.qkvBias }),
    );
    this.kProj = this.registerModule(
      "k_proj",
      new Linear(o.hidden, o.numKvHeads * o.headDim, { ...dt, bias: o.qkvBias }),
    );
    this.vProj = this.registerModule(
      "v_proj",
      new Linear(o.hidden, o.numKvHeads * o.headDim, { ...dt, bias: o.qkvBias }),
    );
    this.oProj = this.registerModule(
      o.outName ?? "o_proj",
      new Linear(o.numHeads * o.headDim, o.hidden, { ...dt, bias: o.outBias }),
    );
    this.qNorm = o.qkNorm ? this.registerModule(names.qNorm ?? "q_norm", o.qkNorm.q) : null;
    this.kNorm = o.qkNorm ? this.registerModule(names.kNorm ?? "k_norm", o.qkNorm.k) : null;
  }

  /** x [B, L, hidden]; cos/sin [B, 1, L, rotary]; mask additive [B, 1, L, S] (S = past + L) or null when every
   * query may see every key (one new token, no padding). With a cache, this call's keys/values are appended to it and
   * attention runs over all S positions. */
  forward(x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | null, cache: LayerCache | null = null): Tensor {
    const [B, L] = x.shape as [number, number];
    const { numHeads: H, numKvHeads: KV, headDim: D } = this.o;
    const [qp, kp, vp] = linearGroup([this.qProj, this.kProj, this.vProj], x) as [Tensor, Tensor, Tensor];
    let q = qp.view(B, L, H, D);
    let k = kp.view(B, L, KV, D);
    let v = vp.view(B, L, KV, D).transpose(1, 2);
    if (this.qNorm && this.kNorm) {
      q = this.qNorm.forward(q);
      k = this.kNorm.forward(k);
    }
    q = this.o.rope.apply(q.transpose(1, 2), cos, sin);
    k = this.o.rope.apply(k.transpose(1, 2), cos, sin);
    if (cache) [k, v] = cache.kv.update(cache.layer, k, v);
    const S = k.size(2);
    if (cache && L <= 8) {
      // a few new tokens against the cache: the fused decode attention (native/src/kernels.cpp)
      const fused = lowp.attendDecode(q, k, v, mask, 1 / Math.sqrt(D), S - L);
      if (fused) return this.oProj.forward(fused.transpose(1, 2).reshape(B, L, H * D));
    }
    // grouped-query attention without repeating K/V: the G = H/KV query heads that share a key/value head are
    // stacked along the query axis ([B, KV, G·L, D]), so each K/V head is read in place (head h uses kv h // G, as
    // repeat_interleave would)
    const G = H / KV;
    const qg = G === 1 ? q : q.reshape(B, KV, G * L, D);
    // scores are the biggest activations ([B, H, L, S]): scaled and masked in place, and freed as soon as the
    // softmax has them, as PyTorch's refcounting frees HF's reassigned attn_weights (autograd needs neither)
    const scores = lowp.matmul(qg, k.transpose(-2, -1)).mul_(1 / Math.sqrt(D)); // [B, KV, G·L, S]
    if (mask) (G === 1 ? scores : scores.view(B, KV, G, L, S)).add_(G === 1 ? mask : mask.unsqueeze(1));
    // softmax in float32 as transformers' eager attention
    const probs = softmaxFreeing(scores, x.dtype);
    const attn = lowp.matmul(probs.view(B, KV, G * L, S), v).view(B, H, L, D);
    probs.dispose();
    return this.oProj.forward(attn.transpose(1, 2).reshape(B, L, H * D));
  }
}

/** softmax(scores) in float32, cast to `dtype`; `scores` (and the float32 copy) freed on the way. */
export function softmaxFreeing(scores: Tensor, dtype: DType): Tensor {
  const p32 = scores.softmax(-1, "float32");
  scores.dispose();
  if (p32.dtype === dtype) return p32;
  const p = p32.to(dtype);
  p32.dispose();
  return p;
}

/** One layer's view of the cache. */
export interface LayerCache {
  kv: KVCache;
  layer: number;
}

/** Gated MLP: down(act(gate(x)) · up(x)) — Llama, Qwen, Gemma, StableLM. */
export class GatedMLP extends Module {
  readonly gate: Linear;
  readonly up: Linear;
  readonly down: Linear;
  constructor(
    hidden: number,
    inter: number,
    readonly act: Activation,
    dtype: DType,
    bias = false,
  ) {
    super();
    this.gate = this.registerModule("gate_proj", new Linear(hidden, inter, { dtype, bias }));
    this.up = this.registerModule("up_proj", new Linear(hidden, inter, { dtype, bias }));
    this.down = this.registerModule("down_proj", new Linear(inter, hidden, { dtype, bias }));
  }
  forward(x: Tensor): Tensor {
    return this.down.forward(linearGroup([this.gate, this.up], x, this.act));
  }
}

/** Two-layer MLP: fc2(act(fc1(x))) with biases — Phi. */
export class FcMLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(
    hidden: number,
    inter: number,
    readonly act: Activation,
    dtype: DType,
  ) {
    super();
    this.fc1 = this.registerModule("fc1", new Linear(hidden, inter, { dtype }));
    this.fc2 = this.registerModule("fc2", new Linear(inter, hidden, { dtype }));
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.act(this.fc1.forward(x)));
  }
}

export interface DecoderLayer extends Module {
  forward(x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | null, cache?: LayerCache | null): Tensor;
}

/** Pre-norm layer: h = x + attn(norm1(x)); out = h + mlp(norm2(h)). */
export class PreNormLayer extends Module implements DecoderLayer {
  readonly inputNorm: Module & { forward(x: Tensor): Tensor };
  readonly attn: Attention;
  readonly postNorm: Module & { forward(x: Tensor): Tensor };
  readonly mlp: Module & { forward(x: Tensor): Tensor };
  constructor(norm: NormFactory, hidden: number, attn: Attention, mlp: Module & { forward(x: Tensor): Tensor }) {
    super();
    this.inputNorm = this.registerModule("input_layernorm", norm(hidden));
    this.attn = this.registerModule("self_attn", attn);
    this.postNorm = this.registerModule("post_attention_layernorm", norm(hidden));
    this.mlp = this.registerModule("mlp", mlp);
  }
  forward(x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | null, cache: LayerCache | null = null): Tensor {
    const h = x.add(this.attn.forward(this.inputNorm.forward(x), cos, sin, mask, cache));
    return h.add(this.mlp.forward(this.postNorm.forward(h)));
  }
}

/** Parallel layer: n = norm(x); out = x + attn(n) + mlp(n) — Phi, StableLM with use_parallel_residual. */
export class ParallelLayer extends Module implements DecoderLayer {
  readonly inputNorm: Module & { forward(x: Tensor): Tensor };
  readonly attn: Attention;
  readonly mlp: Module & { forward(x: Tensor): Tensor };
  constructor(norm: NormFactory, hidden: number, attn: Attention, mlp: Module & { forward(x: Tensor): Tensor }) {
    super();
    this.inputNorm = this.registerModule("input_layernorm", norm(hidden));
    this.attn = this.registerModule("self_attn", attn);
    this.mlp = this.registerModule("mlp", mlp);
  }
  forward(x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | null, cache: LayerCache | null = null): Tensor {
    const n = this.inputNorm.forward(x);
    return x.add(this.attn.forward(n, cos, sin, mask, cache)).add(this.mlp.forward(n));
  }
}

/** The `model.*` part: embeddings, layers, final norm. */
export class DecoderBody extends Module {
  readonly embedTokens: Embedding;
  readonly layers: ModuleList<DecoderLayer>;
  readonly norm: Module & { forward(x: Tensor): Tensor };
  constructor(
    cfg: TextConfig,
    dtype: DType,
    layers: DecoderLayer[],
    norm: Module & { forward(x: Tensor): Tensor },
    normName = "norm",
  ) {
    super();
    this.embedTokens = this.registerModule("embed_tokens", new Embedding(cfg.vocab_size, cfg.hidden_size, { dtype }));
    this.layers = this.registerModule("layers", new ModuleList(layers));
    this.norm = this.registerModule(normName, norm);
  }
}

export interface LMForwardArgs {
  inputsEmbeds: Tensor;
  /** the embeddings already carry `embedScale` (so the decoder must not apply it again) */
  embedsScaled?: boolean;
  /** [B, S] 1 for real tokens, 0 for padding; S = cached positions + L (the whole sequence so far) */
  attentionMask?: Tensor | null;
  /** [B, L] int64 positions of the new tokens (default past … past + L − 1) */
  positionIds?: Tensor | null;
  /** keys/values of earlier positions; this call appends its own */
  cache?: KVCache | null;
  /** compute hidden states (and so logits) for the last position only (HF's logits_to_keep = 1) */
  lastOnly?: boolean;
}

/** A causal LM: `model.*` + `lm_head` (tied to the embeddings when the config says so). */
export class CausalLM extends Module {
  readonly model: DecoderBody;
  readonly lmHead: Linear | null;
  readonly rope: RotaryEmbedding;
  /** multiplier applied to the input embeddings (Gemma: √hidden), or 1 */
  embedScale = 1;

  constructor(
    readonly config: TextConfig,
    public dtype: DType,
    body: DecoderBody,
    rope: RotaryEmbedding,
    opts: { lmHeadBias?: boolean } = {},
  ) {
    super();
    this.model = this.registerModule("model", body);
    this.rope = rope;
    this.lmHead = config.tie_word_embeddings
      ? null
      : this.registerModule(
          "lm_head",
          new Linear(config.hidden_size, config.vocab_size, { dtype, bias: opts.lmHeadBias ?? false }),
        );
  }

  get hiddenSize(): number {
    return this.config.hidden_size;
  }

  embed(ids: Tensor): Tensor {
    return this.model.embedTokens.forward(ids);
  }

  /** A cache sized for this model: `capacity` positions for `batch` rows. */
  newCache(batch: number, capacity: number): KVCache {
    return new KVCache({
      layers: this.config.num_hidden_layers,
      batch,
      kvHeads: this.config.num_key_value_heads,
      headDim: this.config.head_dim,
      capacity,
      dtype: this.dtype,
    });
  }

  /** Hidden states after the final norm, [B, L, hidden] ([B, 1, hidden] with `lastOnly`). */
  hidden({ inputsEmbeds, attentionMask, positionIds, embedsScaled, cache, lastOnly }: LMForwardArgs): Tensor {
    return tidy(() => {
      const [B, L] = inputsEmbeds.shape as [number, number];
      const past = cache?.length ?? 0;
      let h = this.embedScale === 1 || embedsScaled ? inputsEmbeds : inputsEmbeds.mul(this.embedScale);
      const pos =
        positionIds ??
        arange(past, past + L)
          .unsqueeze(0)
          .expand(B, L);
      if (attentionMask && attentionMask.size(-1) !== past + L)
        throw new RangeError(`attentionMask covers ${attentionMask.size(-1)} positions; expected ${past + L}`);
      const { cos, sin } = this.rope.cosSin(pos, h.dtype);
      // one new token without padding sees every key: no mask needed
      const mask = L === 1 && !attentionMask ? null : causalMask(attentionMask ?? null, B, L, h.dtype, past);
      const layers = this.model.layers;
      h = runLayers(
        layers.length,
        h,
        (i, x, [c, s, m]) =>
          layers.at(i).forward(x, c as Tensor, s as Tensor, m ?? null, cache ? { kv: cache, layer: i } : null),
        mask ? [cos, sin, mask] : [cos, sin],
      );
      cache?.advance(L);
      if (lastOnly && L > 1) h = h.narrow(1, L - 1, 1);
      return this.model.norm.forward(h);
    });
  }

  logits(hidden: Tensor): Tensor {
    if (this.lmHead) return this.lmHead.forward(hidden);
    const e = this.model.embedTokens;
    return linearWith(hidden, e.weight, e.int8, null);
  }

  forward(args: LMForwardArgs): Tensor {
    return this.logits(this.hidden(args));
  }
}

export function activation(cfg: TextConfig): Activation {
  return getActivation(cfg.hidden_act, `text_config.hidden_act`);
}

export function ropeFor(cfg: TextConfig): RotaryEmbedding {
  return new RotaryEmbedding({
    headDim: cfg.head_dim,
    theta: cfg.rope_theta,
    partialRotaryFactor: cfg.partial_rotary_factor,
    scaling: cfg.rope_scaling,
  });
}

export function attentionOptions(cfg: TextConfig, dtype: DType, rope: RotaryEmbedding): AttentionOptions {
  return {
    hidden: cfg.hidden_size,
    numHeads: cfg.num_attention_heads,
    numKvHeads: cfg.num_key_value_heads,
    headDim: cfg.head_dim,
    qkvBias: cfg.attention_bias,
    outBias: cfg.attention_bias,
    rope,
    dtype,
  };
}
