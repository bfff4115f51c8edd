// Factory's Perceiver resampler (`connector_type: resampler`): Linear(vision→h), `num_queries` learned latents,
// `num_resampler_layers` × [PerceiverAttention + residual, FeedForward + residual], final LayerNorm. Attention:
// LayerNorm on media and latents, q from latents, k/v from concat(media, latents), 8 heads × 64, no biases.
// Keys: _connector.{latents, linear, layers.{i}.0.{norm_media,norm_latents,to_q,to_kv,to_out}, layers.{i}.1.{0,1,3}, norm}.
import { LayerNorm, Linear } from "../../nn/layers.js";
import * as lowp from "../../nn/lowp.js";
import { Module, ModuleList } from "../../nn/module.js";
import { cat, empty } from "../../torch/creation.js";
import type { DType } from "../../torch/dtype.js";
import type { Tensor } from "../../torch/tensor.js";
import type { Connector, ConnectorDims } from "./types.js";

const HEADS = 8;
const DIM_HEAD = 64;

class PerceiverAttention extends Module {
  readonly normMedia: LayerNorm;
  readonly normLatents: LayerNorm;
  readonly toQ: Linear;
  readonly toKv: Linear;
  readonly toOut: Linear;
  constructor(dim: number, dtype: DType) {
    super();
    const inner = HEADS * DIM_HEAD;
    this.normMedia = this.registerModule("norm_media", new LayerNorm(dim, 1e-5, { dtype }));
    this.normLatents = this.registerModule("norm_latents", new LayerNorm(dim, 1e-5, { dtype }));
    this.toQ = this.registerModule("to_q", new Linear(dim, inner, { dtype, bias: false }));
    this.toKv = this.registerModule("to_kv", new Linear(dim, 2 * inner, { dtype, bias: false }));
    this.toOut = this.registerModule("to_out", new Linear(inner, dim, { dtype, bias: false }));
  }
  forward(media: Tensor, latents: Tensor): Tensor {
    const x = this.normMedia.forward(media);
    const l = this.normLatents.forward(latents);
    const [B, N] = l.shape as [number, number];
    const heads = (t: Tensor) => t.view(B, t.size(1), HEADS, DIM_HEAD).transpose(1, 2);
    const q = heads(this.toQ.forward(l)).mul(DIM_HEAD ** -0.5);
    const [k, v] = this.toKv.forward(cat([x, l], 1)).chunk(2, -1) as [Tensor, Tensor];
    const sim = lowp.matmul(q, heads(k).transpose(-2, -1));
    const stable = sim.sub(sim.amax(-1, true).detach()); // as Factory does; softmax is shift-invariant
    const out = lowp.matmul(stable.softmax(-1), heads(v));
    return this.toOut.forward(out.transpose(1, 2).reshape(B, N, HEADS * DIM_HEAD));
  }
}

class FeedForward extends Module {
  readonly norm: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(dim: number, dtype: DType) {
    super();
    this.norm = this.registerModule("0", new LayerNorm(dim, 1e-5, { dtype }));
    this.fc1 = this.registerModule("1", new Linear(dim, 4 * dim, { dtype, bias: false }));
    this.fc2 = this.registerModule("3", new Linear(4 * dim, dim, { dtype, bias: false })); // "2" is the GELU
  }
  forward(x: Tensor): Tensor {
    return this.fc2.forward(this.fc1.forward(this.norm.forward(x)).gelu());
  }
}

class ResamplerBlock extends Module {
  readonly attn: PerceiverAttention;
  readonly ff: FeedForward;
  constructor(dim: number, dtype: DType) {
    super();
    this.attn = this.registerModule("0", new PerceiverAttention(dim, dtype));
    this.ff = this.registerModule("1", new FeedForward(dim, dtype));
  }
}

class PerceiverResampler extends Module {
  readonly latents: Tensor;
  readonly linear: Linear;
  readonly layers: ModuleList<ResamplerBlock>;
  readonly norm: LayerNorm;
  constructor(dims: ConnectorDims, dtype: DType) {
    super();
    this.latents = this.registerParameter("latents", empty([dims.numQueries, dims.hidden], { dtype }).normal_(0, 1));
    this.linear = this.registerModule("linear", new Linear(dims.visionHidden, dims.hidden, { dtype }));
    this.layers = this.registerModule(
      "layers",
      new ModuleList(Array.from({ length: dims.numResamplerLayers }, () => new ResamplerBlock(dims.hidden, dtype))),
    );
    this.norm = this.registerModule("norm", new LayerNorm(dims.hidden, 1e-5, { dtype }));
  }
  forward(features: Tensor): Tensor {
    const x = this.linear.forward(features);
    let latents = this.latents.unsqueeze(0).expand(x.size(0), this.latents.size(0), this.latents.size(1));
    for (const block of this.layers) {
      latents = block.attn.forward(x, latents).add(latents);
      latents = block.ff.forward(latents).add(latents);
    }
    return this.norm.forward(latents);
  }
}

export class ResamplerConnector extends Module implements Connector {
  readonly resampler: PerceiverResampler;
  constructor(dims: ConnectorDims, dtype: DType) {
    super();
    this.resampler = this.registerModule("_connector", new PerceiverResampler(dims, dtype));
  }
  forward(features: Tensor): Tensor {
    return this.resampler.forward(features);
  }
}
