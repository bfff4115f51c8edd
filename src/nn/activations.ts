// Activations by their Hugging Face config names (hidden_act / hidden_activation).
import { ConfigError } from "../errors.js";
import type { Tensor } from "../torch/tensor.js";

export type Activation = (x: Tensor) => Tensor;

function quickGelu(x: Tensor): Tensor {
  const s = x.mul(1.702);
  const g = s.sigmoid();
  s.dispose();
  const out = x.mul(g);
  g.dispose();
  return out;
}

const ACTIVATIONS: Record<string, Activation> = {
  gelu: (x) => x.gelu("none"),
  gelu_new: (x) => x.gelu("tanh"),
  gelu_fast: (x) => x.gelu("tanh"),
  gelu_pytorch_tanh: (x) => x.gelu("tanh"),
  quick_gelu: quickGelu,
  silu: (x) => x.silu(),
  swish: (x) => x.silu(),
  relu: (x) => x.relu(),
  tanh: (x) => x.tanh(),
  sigmoid: (x) => x.sigmoid(),
};

export function getActivation(name: string, where = "hidden_act"): Activation {
  const a = ACTIVATIONS[name];
  if (!a)
    throw new ConfigError(`${where}: unknown activation "${name}" (supported: ${Object.keys(ACTIVATIONS).join(", ")})`);
  return a;
}
