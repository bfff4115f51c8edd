// A deterministic computation used by both threads in worker.test.ts.
import * as torch from "../../src/torch/index.js";

export function mlpForward(x: torch.Tensor): torch.Tensor {
  const g = new torch.Generator(123);
  const w1 = torch.randn([8, 4], { dtype: "float64", generator: g });
  const w2 = torch.randn([3, 8], { dtype: "float64", generator: g });
  return torch.F.linear(torch.F.linear(x, w1).gelu(), w2).softmax(-1);
}

/** Real tensor work (64×64 float64 matmuls) for at least `ms` milliseconds; returns the iterations and the time. */
export function busyMatmuls(ms: number): { iterations: number; elapsedMs: number } {
  const t0 = performance.now();
  let iterations = 0;
  const g = new torch.Generator(1);
  while (performance.now() - t0 < ms) {
    torch.tidy(() => {
      const a = torch.randn([64, 64], { dtype: "float64", generator: g });
      return a.matmul(a).tanh().sum().item();
    });
    iterations++;
  }
  return { iterations, elapsedMs: performance.now() - t0 };
}
