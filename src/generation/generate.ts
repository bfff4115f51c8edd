// KV-cached generation for TinyLLaVA: the prompt (image features spliced in) runs once — the prefill — and then one
// token per step through the cache. Several prompts run as one batch, left-padded, with attention masks and position
// ids that make every row compute exactly what it would alone; each row stops on its own (EOS ids, stop strings,
// maxNewTokens, the context length) and leaves the batch. Greedy, sampling (temperature, top-k, top-p, repetition
// penalty, seeded) and beam search (numBeams, as HF's generate and so Factory's eval scripts expose it).
//
// The work is a synchronous step machine (`GenerationRun.steps()`): `generate()` drains it; `streamGenerate()` is an
// async iterator of text deltas that yields to the event loop between steps, so an AbortSignal stops it within one.
import { GenerationError } from "../errors.js";
import type { TinyLlava } from "../models/tinyllava.js";
import type { KVCache } from "../nn/kv-cache.js";
import { noGrad } from "../torch/autograd.js";
import { cat, Generator as RandomGenerator, tensor, zeros } from "../torch/creation.js";
import { emptyCache, keep, tidy } from "../torch/memory.js";
import type { Tensor } from "../torch/tensor.js";
import { chooseTokens, processLogits, type ResolvedSampling, resolveSampling, type SamplingOptions } from "./logits.js";
import { type Decoder, IncrementalDecoder, StopMatcher } from "./text.js";

export interface GenerateRequest {
  /** prompt ids with image placeholders (Factory's −200, or LLaVA's image token) */
  inputIds: number[];
  /** [N, 3, H, W]: one row per image placeholder of this prompt */
  pixelValues?: Tensor | null;
}

export interface GenerateOptions extends SamplingOptions {
  /** default 128 */
  maxNewTokens?: number;
  /** generation ends when one of these is produced (it is not part of the output) */
  eosTokenIds?: number[];
  /** generation ends at the first of these in the decoded text (which is cut before it) */
  stopStrings?: string[];
  /** for the text, stop strings and streaming; without it only ids are produced */
  tokenizer?: Decoder;
  /** seeds the sampler: the same seed gives the same text */
  seed?: number;
  /** beam search with this many beams (1 = off) */
  numBeams?: number;
  /** beam search: scores are divided by length ** lengthPenalty (HF's default 1) */
  lengthPenalty?: number;
  /** beam search: stop as soon as numBeams hypotheses are finished (HF's early_stopping=True) */
  earlyStopping?: boolean;
  /** most positions (prompt + generated) the model may see; default the LLM's max_position_embeddings */
  contextLength?: number;
  signal?: AbortSignal;
}

export type FinishReason = "stop" | "length" | "abort";

export interface GenerateOutput {
  tokens: number[];
  text: string;
  finishReason: FinishReason;
  /** positions the prompt took (image features included) */
  promptLength: number;
}

export interface GenerationTimings {
  visionMs: number;
  prefillMs: number;
  decodeMs: number;
  /** tokens produced after the first (each costs one decode step) */
  decodeTokens: number;
  decodeTokensPerSecond: number;
}

export interface StepEvent {
  /** which request */
  index: number;
  token: number;
  /** text this token completed (may be "") */
  delta: string;
  /** set on the row's last event */
  finishReason?: FinishReason;
}

interface Row {
  index: number;
  tokens: number[];
  decoder: IncrementalDecoder | null;
  text: string;
  /** text not yet emitted (held back while it may be the start of a stop string) */
  shown: number;
  finish: FinishReason | null;
  position: number;
  promptLength: number;
}

const now = () => performance.now();

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new GenerationError(`${name} ${v}: expected an integer ≥ ${min}`);
}

/** One generation over a batch of prompts, as a synchronous step machine. */
export class GenerationRun {
  readonly sampling: ResolvedSampling;
  readonly maxNewTokens: number;
  readonly timings: GenerationTimings = {
    visionMs: 0,
    prefillMs: 0,
    decodeMs: 0,
    decodeTokens: 0,
    decodeTokensPerSecond: 0,
  };
  private readonly rows: Row[] = [];
  private readonly eos: Set<number>;
  private readonly stops: StopMatcher;
  private readonly contextLength: number;
  private generator: RandomGenerator | null = null;

  constructor(
    readonly model: TinyLlava,
    readonly requests: GenerateRequest[],
    readonly opts: GenerateOptions = {},
  ) {
    if (requests.length === 0) throw new GenerationError("generate: no prompts given");
    this.sampling = resolveSampling(opts);
    this.maxNewTokens = opts.maxNewTokens ?? 128;
    checkInt("maxNewTokens", this.maxNewTokens, 1);
    this.eos = new Set(opts.eosTokenIds ?? []);
    const stopStrings = opts.stopStrings ?? [];
    if (stopStrings.length > 0 && !opts.tokenizer)
      throw new GenerationError("generate: stop strings need a tokenizer (to decode the text)");
    this.stops = new StopMatcher(stopStrings);
    this.contextLength = opts.contextLength ?? model.config.text.max_position_embeddings;
    checkInt("contextLength", this.contextLength, 1);
    if ((opts.numBeams ?? 1) !== 1) checkInt("numBeams", opts.numBeams as number, 1);
    requests.forEach((r, i) => {
      if (r.inputIds.length === 0) throw new GenerationError(`prompt ${i}: no tokens`);
    });
  }

  private rowFor(index: number, promptLength: number): Row {
    return {
      index,
      tokens: [],
      decoder: this.opts.tokenizer ? new IncrementalDecoder(this.opts.tokenizer) : null,
      text: "",
      shown: 0,
      finish: null,
      position: promptLength,
      promptLength,
    };
  }

  /** Runs the vision tower and the prefill; returns the cache and the last position's logits [B, V] (kept). */
  private prefill(requests: GenerateRequest[], first = 0): { cache: KVCache; logits: Tensor; mask: number[][] | null } {
    const model = this.model;
    const lm = model.languageModel;
    return noGrad(() => {
      const t0 = now();
      // every image of the batch through the vision tower at once
      const withImages = requests.filter((r) => r.pixelValues && r.pixelValues.size(0) > 0);
      const features = withImages.length
        ? keep(
            model.encodeImages(
              cat(
                withImages.map((r) => r.pixelValues as Tensor),
                0,
              ),
            ),
          )
        : null;
      // the tower's temporaries are of sizes the language model never asks for: hand them back to the OS rather than
      // keep them cached through the prefill and decoding (peak RSS 1.29× → 1.22× the weights, bfloat16 0.9B model)
      if (features) emptyCache();
      const t1 = now();
      this.timings.visionMs += t1 - t0;
      try {
        const { embeds, lengths } = tidy(() => {
          let img = 0;
          const list = requests.map((r) => {
            const n = r.pixelValues?.size(0) ?? 0;
            const feats = n > 0 && features ? features.narrow(0, img, n) : null;
            img += n;
            const e = model.embedInputs({ inputIds: tensor([r.inputIds], { dtype: "int64" }), imageFeatures: feats });
            return { e: e.inputsEmbeds, scaled: e.embedsScaled ?? false };
          });
          return { embeds: list, lengths: list.map((x) => x.e.size(1)) };
        });
        const maxLen = Math.max(...lengths);
        lengths.forEach((len, i) => {
          if (len >= this.contextLength)
            throw new GenerationError(
              `prompt ${first + i} takes ${len} positions (image features included); the model's context is ${this.contextLength}`,
            );
        });
        const B = requests.length;
        for (let i = 0; i < B; i++) this.rows.push(this.rowFor(first + i, lengths[i] as number));
        const padded = lengths.some((l) => l !== maxLen);
        const mask = padded ? lengths.map((l) => [...new Array(maxLen - l).fill(0), ...new Array(l).fill(1)]) : null;
        const capacity = Math.min(maxLen + this.maxNewTokens, Math.max(maxLen + 1, this.contextLength));
        const cache = lm.newCache(B, capacity);
        const logits = keep(
          tidy(() => {
            const H = embeds[0]?.e.size(2) as number;
            const rows = embeds.map(({ e }, i) => {
              const pad = maxLen - (lengths[i] as number);
              return pad === 0 ? e : cat([zeros([1, pad, H], { dtype: e.dtype }), e], 1);
            });
            const inputsEmbeds = rows.length === 1 ? (rows[0] as Tensor) : cat(rows, 0);
            // HF's position ids for left padding: cumsum(mask) − 1, padding at 1 (never attended to)
            const positionIds = mask
              ? tensor(
                  mask.map((m) => {
                    let c = -1;
                    return m.map((v) => (v ? ++c : 1));
                  }),
                  { dtype: "int64" },
                )
              : null;
            const hidden = lm.hidden({
              inputsEmbeds,
              embedsScaled: embeds[0]?.scaled,
              attentionMask: mask ? tensor(mask, { dtype: "int64" }) : null,
              positionIds,
              cache,
              lastOnly: true,
            });
            return lm.logits(hidden).select(1, 0);
          }),
        );
        for (const e of embeds) e.e.dispose();
        // the same for the prefill's full-length temporaries: decoding needs one position's
        emptyCache();
        this.timings.prefillMs += now() - t1;
        return { cache, logits, mask };
      } finally {
        features?.dispose();
      }
    });
  }

  /** Appends a token to a row; returns its event (with finishReason when the row ends). */
  private accept(row: Row, token: number): StepEvent {
    if (this.eos.has(token)) {
      row.finish = "stop";
      return { index: row.index, token, delta: this.release(row, true), finishReason: "stop" };
    }
    row.tokens.push(token);
    row.position++;
    if (row.decoder) {
      row.text += row.decoder.push(token);
      const at = this.stops.find(row.text, row.shown);
      if (at >= 0) {
        row.text = row.text.slice(0, at);
        row.finish = "stop";
        return { index: row.index, token, delta: this.release(row, true), finishReason: "stop" };
      }
    }
    if (row.tokens.length >= this.maxNewTokens || row.position >= this.contextLength) row.finish = "length";
    const delta = this.release(row, row.finish !== null);
    return row.finish
      ? { index: row.index, token, delta, finishReason: row.finish }
      : { index: row.index, token, delta };
  }

  /** The text a row may show now: all of it at the end, else what cannot be the start of a stop string. */
  private release(row: Row, final: boolean): string {
    if (!row.decoder) return "";
    if (final && row.finish !== "stop") row.text += row.decoder.flush();
    const upTo = final ? row.text.length : this.stops.safeLength(row.text);
    if (upTo <= row.shown) return "";
    const delta = row.text.slice(row.shown, upTo);
    row.shown = upTo;
    return delta;
  }

  /** The steps: each yields the events of one decode step (one per active row). */
  *steps(): Generator<StepEvent[], void, void> {
    if ((this.opts.numBeams ?? 1) > 1) {
      yield* this.beamSteps();
      return;
    }
    if (this.sampling.doSample)
      this.generator = new RandomGenerator(this.opts.seed ?? Math.floor(Math.random() * 2 ** 31));
    if (this.opts.signal?.aborted) throw abortError(this.opts.signal);
    const { cache, logits: first, mask: promptMask } = this.prefill(this.requests);
    let logits: Tensor = first;
    let active = this.rows.slice();
    let mask = promptMask;
    const lm = this.model.languageModel;
    const t = now();
    try {
      for (;;) {
        const chosen = tidy(() => {
          const processed = processLogits(
            logits,
            active.map((r) => r.tokens),
            this.sampling,
          );
          return chooseTokens(processed, this.sampling, this.generator ?? undefined);
        });
        logits.dispose();
        const events = active.map((row, i) => this.accept(row, chosen[i] as number));
        const still = active.map((r, i) => (r.finish ? -1 : i)).filter((i) => i >= 0);
        if (still.length < active.length && still.length > 0) {
          cache.selectRows(still);
          if (mask) mask = still.map((i) => mask?.[i] as number[]);
        }
        const nextTokens = still.map((i) => chosen[i] as number);
        active = still.map((i) => active[i] as Row);
        yield events;
        if (active.length === 0) break;
        if (this.opts.signal?.aborted) {
          const aborted: StepEvent[] = active.map((row) => {
            row.finish = "abort";
            return { index: row.index, token: -1, delta: this.release(row, true), finishReason: "abort" };
          });
          yield aborted;
          break;
        }
        if (mask) mask = mask.map((m) => [...m, 1]);
        logits = keep(
          noGrad(() =>
            tidy(() => {
              const hidden = lm.hidden({
                inputsEmbeds: lm.embed(
                  tensor(
                    nextTokens.map((x) => [x]),
                    { dtype: "int64" },
                  ),
                ),
                attentionMask: mask ? tensor(mask, { dtype: "int64" }) : null,
                positionIds: tensor(
                  active.map((r) => [r.position - 1]),
                  { dtype: "int64" },
                ),
                cache,
              });
              return lm.logits(hidden).select(1, 0);
            }),
          ),
        );
        this.timings.decodeTokens += active.length;
      }
    } finally {
      cache.dispose();
      if (!logits.isDisposed) logits.dispose();
      this.timings.decodeMs = now() - t;
      this.timings.decodeTokensPerSecond =
        this.timings.decodeMs > 0 ? (1000 * this.timings.decodeTokens) / this.timings.decodeMs : 0;
    }
  }

  /** Beam search for each prompt in turn, with HF's BeamSearchScorer rules: log-softmax scores (processed by the
   * repetition penalty) summed along each beam; the top 2·numBeams candidates per step; an EOS candidate ranked
   * within the first numBeams ends a hypothesis scored sum / generatedLength ** lengthPenalty; done when numBeams
   * hypotheses are finished and (earlyStopping, or) no running beam can still beat the worst of them. */
  private *beamSteps(): Generator<StepEvent[], void, void> {
    if (this.sampling.doSample)
      throw new GenerationError("beam search with sampling is not supported: use one or the other");
    const nb = this.opts.numBeams as number;
    const lp = this.opts.lengthPenalty ?? 1;
    const early = this.opts.earlyStopping ?? false;
    const lm = this.model.languageModel;
    const t = now();
    for (let r = 0; r < this.requests.length; r++) {
      if (this.opts.signal?.aborted) throw abortError(this.opts.signal);
      const { cache, logits: first } = this.prefill([this.requests[r] as GenerateRequest], r);
      const row = this.rows[this.rows.length - 1] as Row;
      let logits = first;
      const finished: { tokens: number[]; score: number }[] = [];
      let worst = Number.POSITIVE_INFINITY;
      const addHyp = (tokens: number[], sum: number) => {
        const score = sum / tokens.length ** lp;
        if (finished.length < nb || score > worst) {
          finished.push({ tokens, score });
          finished.sort((a, b) => b.score - a.score);
          if (finished.length > nb) finished.pop();
          worst = (finished[finished.length - 1] as { score: number }).score;
        } else worst = Math.min(worst, score);
      };
      let beams = [{ tokens: [] as number[], score: 0 }];
      let done = false;
      try {
        cache.selectRows(new Array(nb).fill(0));
        // beams 1… start at −1e9 so the first step expands beam 0 only (HF)
        beams = Array.from({ length: nb }, (_, i) => ({ tokens: [], score: i === 0 ? 0 : -1e9 }));
        for (let step = 0; step < this.maxNewTokens && row.promptLength + step < this.contextLength; step++) {
          const V = logits.size(-1);
          const cand = tidy(() => {
            const lg = (logits.size(0) === nb ? logits : logits.expand(nb, V)).to("float32");
            const scores = processLogits(
              lg.logSoftmax(-1),
              beams.map((b) => b.tokens),
              { ...this.sampling, doSample: false },
            ).add(
              tensor(
                beams.map((b) => [b.score]),
                { dtype: "float32" },
              ),
            );
            const keep = Math.max(2, 1 + this.eos.size) * nb;
            const top = scores.view(1, nb * V).topk(keep, -1);
            const v = top.values.toArray();
            const ix = top.indices.toArray();
            return v.map((score, i) => ({
              score,
              beam: Math.floor((ix[i] as number) / V),
              token: (ix[i] as number) % V,
            }));
          });
          logits.dispose();
          const next: { tokens: number[]; score: number; from: number; token: number }[] = [];
          for (let rank = 0; rank < cand.length && next.length < nb; rank++) {
            const c = cand[rank] as { score: number; beam: number; token: number };
            const parent = beams[c.beam] as { tokens: number[] };
            if (this.eos.has(c.token)) {
              if (rank >= nb) continue;
              addHyp(parent.tokens, c.score);
            } else next.push({ tokens: [...parent.tokens, c.token], score: c.score, from: c.beam, token: c.token });
          }
          const best = Math.max(...cand.map((c) => c.score));
          if (finished.length >= nb && (early || worst >= best / Math.max(step, 1) ** lp)) done = true;
          beams = next;
          if (done) break;
          cache.selectRows(next.map((b) => b.from));
          logits = keep(
            noGrad(() =>
              tidy(() =>
                lm
                  .logits(
                    lm.hidden({
                      inputsEmbeds: lm.embed(
                        tensor(
                          next.map((b) => [b.token]),
                          { dtype: "int64" },
                        ),
                      ),
                      positionIds: tensor(
                        next.map(() => [row.promptLength + step]),
                        { dtype: "int64" },
                      ),
                      cache,
                    }),
                  )
                  .select(1, 0),
              ),
            ),
          );
          this.timings.decodeTokens += 1;
        }
        if (!done) for (const b of beams) addHyp(b.tokens, b.score);
      } finally {
        cache.dispose();
        if (!logits.isDisposed) logits.dispose();
      }
      const best = finished[0] ?? { tokens: [] };
      const events: StepEvent[] = [];
      for (const token of best.tokens) {
        events.push(this.accept(row, token));
        if (row.finish) break;
      }
      if (!row.finish) {
        // the best hypothesis ended with EOS (or the search stopped with it complete)
        row.finish = "stop";
        events.push({ index: row.index, token: -1, delta: this.release(row, true), finishReason: "stop" });
      }
      yield events;
    }
    this.timings.decodeMs = now() - t;
  }

  outputs(): GenerateOutput[] {
    return this.rows.map((r) => ({
      tokens: r.tokens,
      text: r.text,
      finishReason: r.finish ?? "length",
      promptLength: r.promptLength,
    }));
  }
}

/** Generates for a batch of prompts; returns one output per prompt, in order. */
export function generate(model: TinyLlava, requests: GenerateRequest[], opts: GenerateOptions = {}): GenerateOutput[] {
  const run = new GenerationRun(model, requests, opts);
  for (const _ of run.steps());
  return run.outputs();
}

function abortError(signal: AbortSignal): Error {
  const r = signal.reason;
  return r instanceof Error ? r : new GenerationError("generation aborted");
}

/** Streams step events (text deltas per request), yielding to the event loop after every step. */
export async function* streamGenerate(
  model: TinyLlava,
  requests: GenerateRequest[],
  opts: GenerateOptions = {},
  run = new GenerationRun(model, requests, opts),
): AsyncGenerator<StepEvent, GenerationRun, void> {
  for (const events of run.steps()) {
    for (const e of events) yield e;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return run;
}
