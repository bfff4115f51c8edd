import type { Module } from "../../nn/module.js";
import type { Tensor } from "../../torch/tensor.js";

export interface ConnectorDims {
  /** vision tower width (input) */
  visionHidden: number;
  /** LLM width (output) */
  hidden: number;
  numQueries: number;
  numResamplerLayers: number;
}

/** Maps vision features [B, tokens, visionHidden] to LLM embeddings [B, tokens', hidden]. */
export interface Connector extends Module {
  forward(features: Tensor): Tensor;
}
