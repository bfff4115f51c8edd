// Greedy decoding without a KV cache (each step re-runs the whole sequence). The KV-cached, batched, streaming
// generator is the inference milestone; this is the reference path it will be checked against.
import type { TinyLlava } from "../models/tinyllava.js";
import { noGrad } from "../torch/autograd.js";
import { tensor } from "../torch/creation.js";
import { tidy } from "../torch/memory.js";
import type { Tensor } from "../torch/tensor.js";

export interface GreedyOptions {
  maxNewTokens: number;
  /** stop when one of these ids is produced (not included in the output) */
  eosTokenIds?: number[];
}

export function greedyGenerate(
  model: TinyLlava,
  inputIds: number[],
  pixelValues: Tensor | null,
  opts: GreedyOptions,
): number[] {
  const out: number[] = [];
  const seq = [...inputIds];
  const eos = new Set(opts.eosTokenIds ?? []);
  for (let i = 0; i < opts.maxNewTokens; i++) {
    const next = tidy(() =>
      noGrad(() => {
        const { logits } = model.forward({ inputIds: tensor([seq], { dtype: "int64" }), pixelValues });
        return logits
          .select(1, logits.size(1) - 1)
          .argmax(-1)
          .item();
      }),
    );
    if (eos.has(next)) break;
    out.push(next);
    seq.push(next);
  }
  return out;
}
