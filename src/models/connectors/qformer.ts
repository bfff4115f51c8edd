// Factory's BLIP-2 style Q-Former (`connector_type: qformer`): `num_queries` learned query tokens run through a
// BERT encoder (BERT-base: 12 layers, 768 wide, 12 heads, 3072 FFN) whose even layers cross-attend to the vision
// features, then Linear(768 → LLM width). As in Factory, the BERT word/position embeddings, the embedding
// LayerNorm's affine parameters and the text FFN branch are removed; queries use `intermediate_query`/`output_query`.
// Keys (under connector._connector.): query_tokens, bert.embeddings.position_ids,
// bert.encoder.layer.{i}.attention.{self.{query,key,value},output.{dense,LayerNorm}},
// bert.encoder.layer.{even i}.crossattention.(same), bert.encoder.layer.{i}.{intermediate_query,output_query}.dense,
// output_query.LayerNorm, projector.
import { getActivation } from "../../nn/activations.js";
import { LayerNorm, Linear } from "../../nn/layers.js";
import * as lowp from "../../nn/lowp.js";
import { Module, ModuleList } from "../../nn/module.js";
import { arange, empty } from "../../torch/creation.js";
import type { DType } from "../../torch/dtype.js";
import * as F from "../../torch/functional.js";
import type { Tensor } from "../../torch/tensor.js";
import type { Connector, ConnectorDims } from "./types.js";

export interface QFormerConfig {
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  layer_norm_eps: number;
  hidden_act: string;
  max_position_embeddings: number;
  cross_attention_freq: number;
  initializer_range: number;
}

/** google-bert/bert-base-uncased, which Factory loads from the hub. */
export const BERT_BASE: QFormerConfig = {
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  layer_norm_eps: 1e-12,
  hidden_act: "gelu",
  max_position_embeddings: 512,
  cross_attention_freq: 2,
  initializer_range: 0.02,
};

class BertSelfAttention extends Module {
  readonly query: Linear;
  readonly key: Linear;
  readonly value: Linear;
  constructor(
    readonly cfg: QFormerConfig,
    kvWidth: number,
    dtype: DType,
  ) {
    super();
    const h = cfg.hidden_size;
    this.query = this.registerModule("query", new Linear(h, h, { dtype }));
    this.key = this.registerModule("key", new Linear(kvWidth, h, { dtype }));
    this.value = this.registerModule("value", new Linear(kvWidth, h, { dtype }));
  }
  forward(x: Tensor, kv: Tensor): Tensor {
    const H = this.cfg.num_attention_heads;
    const D = this.cfg.hidden_size / H;
    const heads = (t: Tensor) => t.view(t.size(0), t.size(1), H, D).transpose(1, 2);
    const q = heads(this.query.forward(x));
    const k = heads(this.key.forward(kv));
    const v = heads(this.value.forward(kv));
    const probs = lowp.matmul(q, k.transpose(-1, -2)).div(Math.sqrt(D)).softmax(-1); // all-ones masks add 0
    const ctx = lowp.matmul(probs, v).transpose(1, 2).contiguous();
    return ctx.view(ctx.size(0), ctx.size(1), this.cfg.hidden_size);
  }
}

/** dense → residual → LayerNorm (BertSelfOutput / BertOutput). */
class BertOutput extends Module {
  readonly dense: Linear;
  readonly norm: LayerNorm;
  constructor(inDim: number, cfg: QFormerConfig, dtype: DType) {
    super();
    this.dense = this.registerModule("dense", new Linear(inDim, cfg.hidden_size, { dtype }));
    this.norm = this.registerModule("LayerNorm", new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, { dtype }));
  }
  forward(x: Tensor, residual: Tensor): Tensor {
    return this.norm.forward(this.dense.forward(x).add(residual));
  }
}

class BertAttention extends Module {
  readonly self_: BertSelfAttention;
  readonly output: BertOutput;
  constructor(cfg: QFormerConfig, kvWidth: number, dtype: DType) {
    super();
    this.self_ = this.registerModule("self", new BertSelfAttention(cfg, kvWidth, dtype));
    this.output = this.registerModule("output", new BertOutput(cfg.hidden_size, cfg, dtype));
  }
  forward(x: Tensor, kv: Tensor): Tensor {
    return this.output.forward(this.self_.forward(x, kv), x);
  }
}

class QFormerLayer extends Module {
  readonly attention: BertAttention;
  readonly crossattention: BertAttention | null;
  readonly intermediate: Linear;
  readonly output: BertOutput;
  private readonly act;
  constructor(cfg: QFormerConfig, index: number, visionWidth: number, dtype: DType) {
    super();
    this.attention = this.registerModule("attention", new BertAttention(cfg, cfg.hidden_size, dtype));
    this.crossattention =
      index % cfg.cross_attention_freq === 0
        ? this.registerModule("crossattention", new BertAttention(cfg, visionWidth, dtype))
        : null;
    const inter = new Module();
    this.intermediate = inter.registerModule("dense", new Linear(cfg.hidden_size, cfg.intermediate_size, { dtype }));
    this.registerModule("intermediate_query", inter);
    this.output = this.registerModule("output_query", new BertOutput(cfg.intermediate_size, cfg, dtype));
    this.act = getActivation(cfg.hidden_act, "qformer hidden_act");
  }
  forward(q: Tensor, vision: Tensor): Tensor {
    let h = this.attention.forward(q, q);
    if (this.crossattention) h = this.crossattention.forward(h, vision);
    return this.output.forward(this.act(this.intermediate.forward(h)), h);
  }
}

class QFormerModel extends Module {
  readonly queryTokens: Tensor;
  readonly layers: ModuleList<QFormerLayer>;
  readonly projector: Linear;
  constructor(
    readonly cfg: QFormerConfig,
    dims: ConnectorDims,
    dtype: DType,
  ) {
    super();
    this.queryTokens = this.registerParameter(
      "query_tokens",
      empty([1, dims.numQueries, cfg.hidden_size], { dtype }).normal_(0, cfg.initializer_range),
    );
    const bert = this.registerModule("bert", new Module());
    const embeddings = bert.registerModule("embeddings", new Module());
    // BERT keeps this buffer even though Factory removed the position embeddings; it is in Factory's checkpoints
    embeddings.registerBuffer("position_ids", arange(0, cfg.max_position_embeddings).unsqueeze(0));
    const encoder = bert.registerModule("encoder", new Module());
    this.layers = encoder.registerModule(
      "layer",
      new ModuleList(
        Array.from({ length: cfg.num_hidden_layers }, (_, i) => new QFormerLayer(cfg, i, dims.visionHidden, dtype)),
      ),
    );
    this.projector = this.registerModule("projector", new Linear(cfg.hidden_size, dims.hidden, { dtype }));
  }
  forward(vision: Tensor): Tensor {
    const B = vision.size(0);
    // embeddings = LayerNorm without affine (Factory set its weight and bias to None) of the query tokens
    let h = F.layerNorm(
      this.queryTokens.expand(B, this.queryTokens.size(1), this.cfg.hidden_size),
      [this.cfg.hidden_size],
      null,
      null,
      this.cfg.layer_norm_eps,
    );
    for (const layer of this.layers) h = layer.forward(h, vision);
    return this.projector.forward(h);
  }
}

export class QFormerConnector extends Module implements Connector {
  readonly qformer: QFormerModel;
  constructor(dims: ConnectorDims, dtype: DType, cfg: QFormerConfig = BERT_BASE) {
    super();
    this.qformer = this.registerModule("_connector", new QFormerModel(cfg, dims, dtype));
  }
  forward(features: Tensor): Tensor {
    return this.qformer.forward(features);
  }
}
