// Rotary position embeddings (RoPE) as Hugging Face computes them: inv_freq = 1 / θ^(2i/d) over the rotary part of
// each head (d = head_dim × partial_rotary_factor), cos/sin of positions × inv_freq duplicated over both halves,
// x·cos + rotate_half(x)·sin on the first d channels, the rest passed through.

import type { RopeScaling } from "../config/index.js";
import { ConfigError } from "../errors.js";
import { arange, cat, tensor } from "../torch/creation.js";
import type { DType } from "../torch/dtype.js";
import * as F from "../torch/functional.js";
import { tidy } from "../torch/memory.js";
import { native } from "../torch/native.js";
import { Tensor } from "../torch/tensor.js";

export interface RopeOptions {
  headDim: number;
  theta: number;
  partialRotaryFactor?: number;
  scaling?: RopeScaling | null;
}

export class RotaryEmbedding {
  readonly rotaryDim: number;
  private readonly invFreq: number[];
  private readonly positionScale: number;

  constructor(readonly opts: RopeOptions) {
    const d = Math.floor(opts.headDim * (opts.partialRotaryFactor ?? 1));
    if (d % 2 !== 0 || d <= 0)
      throw new ConfigError(`rotary dimension ${d} (head_dim × partial_rotary_factor) must be even and positive`);
    this.rotaryDim = d;
    let inv = Array.from({ length: d / 2 }, (_, i) => 1 / opts.theta ** ((2 * i) / d));
    let scale = 1;
    const s = opts.scaling;
    if (s) {
      switch (s.rope_type) {
        case "linear":
          scale = 1 / (s.factor ?? 1);
          break;
        case "llama3": {
          const factor = s.factor ?? 8;
          const low = s.low_freq_factor ?? 1;
          const high = s.high_freq_factor ?? 4;
          const orig = s.original_max_position_embeddings ?? 8192;
          const lowWave = orig / low;
          const highWave = orig / high;
          inv = inv.map((f) => {
            const wave = (2 * Math.PI) / f;
            if (wave < highWave) return f;
            if (wave > lowWave) return f / factor;
            const smooth = (orig / wave - low) / (high - low);
            return (1 - smooth) * (f / factor) + smooth * f;
          });
          break;
        }
        default:
          throw new ConfigError(
            `rope_scaling type "${s.rope_type}" is not supported (supported: default, linear, llama3)`,
          );
      }
    }
    this.invFreq = inv;
    this.positionScale = scale;
  }

  /** cos and sin for positions [B, L] (int64) → each [B, 1, L, rotaryDim] in `dtype`. Computed in float32 and cast,
   * as transformers does (its inv_freq is float32 too), whatever the model dtype — with PyTorch's own float32 cos/sin
   * (MKL VML where installed, see F.cosSin), since a last-bit difference there shows in float64 logits. */
  cosSin(positions: Tensor, dtype: DType): { cos: Tensor; sin: Tensor } {
    return tidy(() => {
      const invFreq = this.invFreqTensor();
      const pos = positions.to("float32").mul(this.positionScale).unsqueeze(-1); // [B, L, 1]
      const freqs = pos.mul(invFreq); // [B, L, d/2]
      const emb = cat([freqs, freqs], -1);
      const { cos, sin } = F.cosSin(emb);
      return { cos: cos.to(dtype).unsqueeze(1), sin: sin.to(dtype).unsqueeze(1) };
    });
  }

  private invFreqTensor(): Tensor {
    if (this.opts.scaling && this.opts.scaling.rope_type !== "linear")
      return tensor(this.invFreq, { dtype: "float32" });
    // 1 / θ^(arange(0, d, 2) / d) in float32 ops, as transformers' default rope init
    const d = this.rotaryDim;
    const exps = arange(0, d, 2, { dtype: "int64" }).to("float32").div(d);
    return exps.rpow(this.opts.theta).rdiv(1);
  }

  /** Applies the rotation to x [B, H, L, head_dim]. */
  apply(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
    // inference in float32/bfloat16/float16: one fused kernel with the same roundings (native/src/fused.cpp)
    if (x.dtype !== "float64") {
      const h = native.ropeFused(x.handle, cos.handle, sin.handle);
      if (h !== undefined) return Tensor.wrap(h);
    }
    return tidy(() => {
      const d = this.rotaryDim;
      const full = x.size(-1);
      const rot = d === full ? x : x.narrow(-1, 0, d);
      const half = d / 2;
      const x1 = rot.narrow(-1, 0, half);
      const x2 = rot.narrow(-1, half, half);
      const rotated = cat([x2.neg(), x1], -1);
      const out = rot.mul(cos).add(rotated.mul(sin));
      return d === full ? out : cat([out, x.narrow(-1, d, full - d)], -1);
    });
  }
}
