// A deterministic computation used by both threads in worker.test.ts.
import * as torch from "../../src/torch/index.js";

export function mlpForward(x: torch.Tensor): torch.Tensor {
  const g = new torch.Generator(123);
  const w1 = torch.randn([8, 4], { dtype: "float64", generator: g });
  const w2 = torch.randn([3, 8], { dtype: "float64", generator: g });
  return torch.F.linear(torch.F.linear(x, w1).gelu(), w2).softmax(-1);
}
