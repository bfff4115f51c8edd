// Logits processors and the next-token choice, as Hugging Face's generate applies them (the order matters):
// repetition penalty (a processor), then the sampling warpers temperature → top-k → top-p, then argmax (greedy) or a
// multinomial draw from softmax (sampling). Everything runs on float32 [B, V] logits, one row per sequence.
import { ConfigError } from "../errors.js";
import { type Generator, tensor, where } from "../torch/creation.js";
import * as F from "../torch/functional.js";
import { tidy } from "../torch/memory.js";
import type { Tensor } from "../torch/tensor.js";

export interface SamplingOptions {
  /** sample from the distribution (default: true when temperature > 0 is given, as Factory's eval scripts decide) */
  doSample?: boolean;
  /** > 0; 1 leaves the logits unchanged */
  temperature?: number;
  /** keep the k most likely tokens (0 = off) */
  topK?: number;
  /** nucleus: keep the smallest set whose probability reaches p (1 = off) */
  topP?: number;
  /** > 0; 1 = off. HF's rule: a seen token's logit is divided by it when positive, multiplied when negative */
  repetitionPenalty?: number;
}

export interface ResolvedSampling {
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
}

function check(name: string, v: number, ok: boolean, expected: string): void {
  if (!ok) throw new ConfigError(`${name} ${v}: expected ${expected}`);
}

export function resolveSampling(o: SamplingOptions): ResolvedSampling {
  const temperature = o.temperature ?? 1;
  check("temperature", temperature, Number.isFinite(temperature) && temperature >= 0, "a number ≥ 0");
  const topK = o.topK ?? 0;
  check("topK", topK, Number.isInteger(topK) && topK >= 0, "an integer ≥ 0");
  const topP = o.topP ?? 1;
  check("topP", topP, Number.isFinite(topP) && topP > 0 && topP <= 1, "a number in (0, 1]");
  const repetitionPenalty = o.repetitionPenalty ?? 1;
  check(
    "repetitionPenalty",
    repetitionPenalty,
    Number.isFinite(repetitionPenalty) && repetitionPenalty > 0,
    "a number > 0",
  );
  // temperature 0 means greedy (as Factory's scripts: do_sample = temperature > 0)
  const doSample = o.doSample ?? (o.temperature !== undefined && temperature > 0);
  if (doSample && temperature === 0) throw new ConfigError("doSample with temperature 0: use greedy decoding instead");
  return { doSample, temperature, topK, topP, repetitionPenalty };
}

/** HF's RepetitionPenaltyLogitsProcessor over each row's `seen` ids. */
export function applyRepetitionPenalty(logits: Tensor, seen: number[][], penalty: number): Tensor {
  if (penalty === 1 || seen.every((s) => s.length === 0)) return logits;
  return tidy(() => {
    const V = logits.size(1);
    // one index row per sequence, padded by repeating its first id (a repeated index gets the same value)
    const width = Math.max(...seen.map((s) => s.length));
    const idx = seen.map((s) => {
      const u = [...new Set(s.filter((id) => id >= 0 && id < V))];
      if (u.length === 0) return new Array(width).fill(-1);
      return [...u, ...new Array(width - u.length).fill(u[0])];
    });
    const rowsWithout = idx.map((r) => r[0] === -1);
    const safe = idx.map((r) => r.map((x) => Math.max(x, 0)));
    const index = tensor(safe, { dtype: "int64" });
    const score = logits.gather(1, index);
    const penalised = where(score.lt(0), score.mul(penalty), score.div(penalty));
    let out = logits.scatter(1, index, penalised);
    if (rowsWithout.some(Boolean)) {
      // rows with nothing seen keep their logits (the dummy index 0 was penalised above)
      const keepRow = tensor(rowsWithout, { dtype: "bool" }).view(-1, 1);
      out = where(keepRow, logits, out);
    }
    return out;
  });
}

/** HF's TopKLogitsWarper: −inf outside each row's k largest. */
export function topKFilter(logits: Tensor, k: number): Tensor {
  const V = logits.size(-1);
  if (k <= 0 || k >= V) return logits;
  return tidy(() => {
    const kth = logits.topk(k, -1).values.narrow(-1, k - 1, 1);
    return logits.maskedFill(logits.lt(kth), Number.NEGATIVE_INFINITY);
  });
}

/** HF's TopPLogitsWarper: sort ascending, drop tokens whose cumulative probability is ≤ 1 − p (keeping at least
 * the most likely one). */
export function topPFilter(logits: Tensor, p: number): Tensor {
  if (p >= 1) return logits;
  return tidy(() => {
    const { values, indices } = logits.sort(-1, false);
    const cum = values.softmax(-1).cumsum(-1);
    const V = logits.size(-1);
    const remove = cum.le(1 - p);
    // never remove the last (most likely) token
    const last = tensor([...new Array(V - 1).fill(false), true], { dtype: "bool" });
    const removeSorted = remove.logicalAnd(last.logicalNot());
    const removeOrig = removeSorted.scatter(-1, indices, removeSorted);
    return logits.maskedFill(removeOrig, Number.NEGATIVE_INFINITY);
  });
}

/** The processed logits (float32 [B, V]) the next token is chosen from. */
export function processLogits(logits: Tensor, seen: number[][], s: ResolvedSampling): Tensor {
  return tidy(() => {
    let x = logits.dtype === "float32" ? logits : logits.to("float32");
    x = applyRepetitionPenalty(x, seen, s.repetitionPenalty);
    if (!s.doSample) return x;
    if (s.temperature !== 1) x = x.div(s.temperature);
    x = topKFilter(x, s.topK);
    return topPFilter(x, s.topP);
  });
}

/** The next token of each row: argmax (greedy) or a draw from softmax(processed logits). */
export function chooseTokens(processed: Tensor, s: ResolvedSampling, generator?: Generator): number[] {
  return tidy(() => {
    const ids = s.doSample ? F.multinomial(processed.softmax(-1), 1, false, generator).view(-1) : processed.argmax(-1);
    return Array.from(ids.toArray(), Number);
  });
}
