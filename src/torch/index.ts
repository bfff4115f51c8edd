// The engine's public face: `import * as torch from "tinyllava/torch"`.
export * from "./autograd.js";
export * from "./creation.js";
export * from "./dtype.js";
export * as F from "./functional.js";
export * from "./memory.js";
export * from "./optim.js";
export * from "./runtime.js";
export * from "./safetensors.js";
export { type Scalar, type Shape, Tensor, type TensorOrScalar } from "./tensor.js";
export * from "./worker.js";
