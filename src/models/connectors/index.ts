// Connector registry, keyed by Factory's exact `connector_type` names (no substring matching).
import { ConfigError } from "../../errors.js";
import type { DType } from "../../torch/dtype.js";
import { IdentityConnector, LinearConnector, MlpConnector } from "./mlp.js";
import { BERT_BASE, type QFormerConfig, QFormerConnector } from "./qformer.js";
import { ResamplerConnector } from "./resampler.js";
import type { Connector, ConnectorDims } from "./types.js";

export type { Connector, ConnectorDims } from "./types.js";

export interface ConnectorOptions {
  dtype: DType;
  /** overrides of the BERT-base Q-Former config (Factory always uses bert-base-uncased) */
  qformer?: Partial<QFormerConfig>;
}

const MLP = /^mlp(\d+)x_gelu$/;

export function buildConnector(type: string, dims: ConnectorDims, opts: ConnectorOptions): Connector {
  const mlp = MLP.exec(type);
  if (mlp) {
    const depth = Number(mlp[1]);
    if (depth < 1) throw new ConfigError(`connector_type "${type}": depth must be at least 1`);
    return new MlpConnector(dims, depth, opts.dtype);
  }
  switch (type) {
    case "linear":
      return new LinearConnector(dims, opts.dtype);
    case "identity":
      return new IdentityConnector(dims);
    case "resampler":
      return new ResamplerConnector(dims, opts.dtype);
    case "qformer":
      return new QFormerConnector(dims, opts.dtype, { ...BERT_BASE, ...opts.qformer });
    default:
      throw new ConfigError(
        `unknown connector_type "${type}"; supported: linear, mlp{N}x_gelu (e.g. mlp2x_gelu), identity, resampler, qformer`,
      );
  }
}
