// Weights for a model built from scratch (as the reference parts initialise themselves) and random-weight models at
// any config (benchmarks, serving a preset), optionally quantised to int8 layer by layer as the weights are drawn.
import type { Json, TinyLlavaConfig } from "../config/index.js";
import { withoutInit } from "../nn/layers.js";
import { IncrementalInt8 } from "../nn/quant.js";
import { noGrad } from "../torch/autograd.js";
import { Generator } from "../torch/creation.js";
import type { DType } from "../torch/dtype.js";
import { TinyLlava } from "./tinyllava.js";

/** Initialises a freshly built model as its reference parts start from scratch, deterministically for a seed:
 * - vision tower as transformers' SiglipPreTrainedModel._init_weights: position embedding N(0, (scale/√width)²)
 *   (scale = positionEmbeddingScale, transformers' 1 by default), patch
 *   conv lecun-normal N(0, 1/fan_in) (untruncated here), attention and MLP weights Xavier-uniform, attention biases 0,
 *   MLP biases N(0, 1e-6), LayerNorms 1/0;
 * - connector as PyTorch's nn.Linear default (what Factory's mlp2x_gelu starts from): U(±1/√fan_in), bias too;
 * - LLM as Qwen2PreTrainedModel._init_weights: Linear and Embedding weights N(0, initializer_range) (the config's
 *   text_config.initializer_range unless given), biases 0, RMSNorm weights 1.
 * The module defaults (PyTorch's N(0, 1) embeddings, which tied to the LM head give logits of scale √hidden and a
 * first loss near 40) train far more slowly. `onInit(name)` is called after each tensor is set (e.g. to quantise it at
 * once: IncrementalInt8). Returns the number of tensors set. */
export function initFromScratch(
  model: TinyLlava,
  opts: {
    seed?: number;
    initializerRange?: number;
    positionEmbeddingScale?: number;
    onInit?: (name: string) => void;
  } = {},
): number {
  const fromConfig = (model.config.raw.text_config as Json | undefined)?.initializer_range;
  const std = opts.initializerRange ?? (typeof fromConfig === "number" ? fromConfig : 0.02);
  const gen = new Generator(opts.seed ?? 0);
  const visionWidth = model.config.vision.hidden_size;
  const params = new Map(model.namedParameters());
  let n = 0;
  noGrad(() => {
    for (const [name, p] of params) {
      const leaf = name.split(".").pop() as string;
      const [fanOut, ...rest] = p.shape as number[];
      const fanIn = rest.reduce((a, b) => a * b, 1);
      if (/norm/.test(name)) p.fill_(leaf === "weight" ? 1 : 0);
      else if (name.startsWith("vision_tower.")) {
        if (name.endsWith("position_embedding.weight"))
          p.normal_(0, (opts.positionEmbeddingScale ?? 1) / Math.sqrt(visionWidth), gen);
        else if (name.includes("patch_embedding")) {
          if (leaf === "weight") p.normal_(0, Math.sqrt(1 / fanIn), gen);
          else p.zero_();
        } else if (leaf === "weight") {
          const bound = Math.sqrt(6 / (fanIn + (fanOut as number)));
          p.uniform_(-bound, bound, gen);
        } else if (name.includes(".mlp.")) p.normal_(0, 1e-6, gen);
        else p.zero_();
      } else if (name.startsWith("connector.")) {
        // a bias takes its weight's fan-in
        const weight = leaf === "bias" ? params.get(name.replace(/bias$/, "weight")) : p;
        const bound = 1 / Math.sqrt((weight?.shape[1] as number | undefined) ?? fanIn);
        p.uniform_(-bound, bound, gen);
      } else if (leaf === "bias") p.zero_();
      else p.normal_(0, std, gen);
      n++;
      opts.onInit?.(name);
    }
  });
  return n;
}

/** A model of the given config with random weights (initFromScratch's init, seed 0), built without touching memory
 * it does not keep: with `int8`, each language-model Linear/Embedding is quantised as soon as its weights are drawn,
 * so peak memory is the quantised model's plus about one float layer (benchmarks, `serve` on a preset). */
export function randomModel(config: TinyLlavaConfig, dtype: DType, int8: boolean, seed = 0): TinyLlava {
  const model = withoutInit(() => new TinyLlava(config, dtype));
  const q = int8 ? new IncrementalInt8(model.languageModel, "language_model.") : null;
  initFromScratch(model, { seed, onInit: q ? (n) => q.loaded(n) : undefined });
  if (q) model.quantization = q.finish();
  model.eval();
  return model;
}
