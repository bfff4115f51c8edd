// Activations by their Hugging Face config names (hidden_act / hidden_activation).
import { ConfigError } from "../errors.js";
import type { Tensor } from "../torch/tensor.js";

export type Activation = ((x: Tensor) => Tensor) & {
  /** the fused decode kernels' code for this activation (linearSmallGroup: 1 SiLU, 2 GELU tanh, 3 GELU erf) */
  kernel?: 1 | 2 | 3;
};

const fusable = (f: (x: Tensor) => Tensor, kernel: 1 | 2 | 3): Activation => Object.assign(f, { kernel });

function quickGelu(x: Tensor): Tensor {
  const s = x.mul(1.702);
  const g = s.sigmoid();
  s.dispose();
  const out = x.mul(g);
  g.dispose();
  return out;
}

const ACTIVATIONS: Record<string, Activation> = {
  gelu: fusable((x) => x.gelu("none"), 3),
  gelu_new: fusable((x) => x.gelu("tanh"), 2),
  gelu_fast: fusable((x) => x.gelu("tanh"), 2),
  gelu_pytorch_tanh: fusable((x) => x.gelu("tanh"), 2),
  quick_gelu: quickGelu,
  silu: fusable((x) => x.silu(), 1),
  swish: fusable((x) => x.silu(), 1),
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
