// Factory's `linear`, `mlp{N}x_gelu` and `identity` connectors. Keys: `_connector.weight` (linear),
// `_connector.{0,2,4,…}` (mlp: Linear, then N−1 × [GELU, Linear]).
import { Linear } from "../../nn/layers.js";
import { Module } from "../../nn/module.js";
import type { DType } from "../../torch/dtype.js";
import type { Tensor } from "../../torch/tensor.js";
import type { Connector, ConnectorDims } from "./types.js";

class Sequential extends Module {
  readonly linears: Linear[] = [];
  constructor(dims: ConnectorDims, depth: number, dtype: DType) {
    super();
    for (let i = 0; i < depth; i++) {
      const lin = new Linear(i === 0 ? dims.visionHidden : dims.hidden, dims.hidden, { dtype });
      this.registerModule(String(2 * i), lin); // odd indices are the parameter-free GELUs
      this.linears.push(lin);
    }
  }
  forward(x: Tensor): Tensor {
    let h = this.linears[0]!.forward(x);
    for (let i = 1; i < this.linears.length; i++) h = this.linears[i]!.forward(h.gelu());
    return h;
  }
}

export class MlpConnector extends Module implements Connector {
  readonly mlp: Sequential;
  constructor(dims: ConnectorDims, depth: number, dtype: DType) {
    super();
    this.mlp = this.registerModule("_connector", new Sequential(dims, depth, dtype));
  }
  forward(features: Tensor): Tensor {
    return this.mlp.forward(features);
  }
}

export class LinearConnector extends Module implements Connector {
  readonly linear: Linear;
  constructor(dims: ConnectorDims, dtype: DType) {
    super();
    this.linear = this.registerModule("_connector", new Linear(dims.visionHidden, dims.hidden, { dtype }));
  }
  forward(features: Tensor): Tensor {
    return this.linear.forward(features);
  }
}

export class IdentityConnector extends Module implements Connector {
  constructor(dims: ConnectorDims) {
    super();
    if (dims.visionHidden !== dims.hidden) {
      throw new RangeError(
        `identity connector needs equal widths, but the vision tower gives ${dims.visionHidden} and the LLM takes ${dims.hidden}`,
      );
    }
  }
  forward(features: Tensor): Tensor {
    return features.mul(1);
  }
}
