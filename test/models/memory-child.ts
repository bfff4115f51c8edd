// Child process of memory.test.ts: builds a decoder (or a vision tower) with N layers, runs one no-grad forward at
// a real sequence length, prints the allocator's peak and the weights' bytes as JSON.
import { Fields, parseTextConfig, parseVisionConfig } from "../../src/config/index.js";
import { buildLanguageModel, buildVisionTower } from "../../src/models/registry.js";
import { memoryStats, noGrad, randn, tidy } from "../../src/torch/index.js";

const [kind, layersArg] = process.argv.slice(2);
const layers = Number(layersArg);
let run: () => void;
let weights: number;
if (kind === "llm") {
  const cfg = parseTextConfig(
    new Fields(
      {
        model_type: "qwen2",
        vocab_size: 512,
        hidden_size: 256,
        intermediate_size: 1024,
        num_hidden_layers: layers,
        num_attention_heads: 8,
        num_key_value_heads: 2,
        tie_word_embeddings: true,
      },
      "text_config",
    ),
  );
  const lm = buildLanguageModel(cfg, { dtype: "float32" });
  weights = memoryStats().liveTensorBytes;
  run = () => tidy(() => noGrad(() => void lm.forward({ inputsEmbeds: randn([1, 768, 256]) })));
} else {
  const cfg = parseVisionConfig(
    new Fields(
      {
        model_type: "siglip_vision_model",
        hidden_size: 192,
        intermediate_size: 768,
        num_hidden_layers: layers,
        num_attention_heads: 6,
        image_size: 384,
        patch_size: 14,
      },
      "vision_config",
    ),
  );
  const tower = buildVisionTower(cfg, "float32");
  weights = memoryStats().liveTensorBytes;
  run = () => tidy(() => noGrad(() => void tower.hiddenState(randn([1, 3, 384, 384]), layers)));
}
run();
const s = memoryStats();
process.stdout.write(`${JSON.stringify({ weights, peak: s.peakBytes, live: s.liveTensorBytes })}\n`);
