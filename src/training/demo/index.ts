// Everything the demo trains on: the synthetic shapes dataset (images + LLaVA JSON), the tokenizer learned from it,
// the tiny model's config and the held-out evaluator. prepareDemo writes the data folder and the model folder
// skeleton that training completes with model.safetensors.
import { join } from "node:path";
import type { Json } from "../../config/index.js";
import type { TinyTokenizer } from "../../processing/tokenizer.js";
import { type DemoData, type DemoDataFiles, type DemoDataOptions, generateDemoData } from "./data.js";
import {
  type DemoModelOptions,
  demoModelConfig,
  demoPreprocessorConfig,
  tokenizerVocabSize,
  writeDemoModelFolder,
} from "./model.js";
import { demoCorpus, demoTokenizerFiles, writeDemoTokenizer } from "./tokenizer.js";

export * from "./data.js";
export * from "./evaluate.js";
export * from "./language.js";
export * from "./model.js";
export * from "./shapes.js";
export * from "./tokenizer.js";

export interface PrepareDemoOptions extends DemoDataOptions {
  /** the data goes to dir/data, the model folder skeleton to dir/model */
  dir: string;
  /** tokenizer model_max_length and the LLM's max_position_embeddings (default 256) */
  maxLength?: number;
  sizes?: DemoModelOptions["sizes"];
}

export interface PreparedDemo {
  data: DemoData;
  files: DemoDataFiles;
  /** config.json, preprocessor_config.json and the tokenizer files; training adds model.safetensors */
  modelDir: string;
  tokenizer: TinyTokenizer;
  config: Json;
  preprocessor: Json;
}

/** Generates the dataset, learns the tokenizer on it and writes the model folder skeleton. */
export async function prepareDemo(o: PrepareDemoOptions): Promise<PreparedDemo> {
  const { data, files } = await generateDemoData(join(o.dir, "data"), o);
  const maxLength = o.maxLength ?? 256;
  const corpus = demoCorpus([
    { records: data.pretrain, template: "pretrain" },
    { records: data.finetune, template: "qwen2_base" },
    { records: data.eval, template: "qwen2_base" },
  ]);
  const tokFiles = demoTokenizerFiles(corpus, { modelMaxLength: maxLength });
  const modelDir = join(o.dir, "model");
  const tokenizer = writeDemoTokenizer(modelDir, tokFiles);
  const eos = tokenizer.eosTokenId ?? 0;
  const config = demoModelConfig({
    vocabSize: tokenizerVocabSize(tokFiles["tokenizer.json"]),
    imageSize: data.options.imageSize,
    eosTokenId: eos,
    padTokenId: tokenizer.padTokenId ?? eos,
    maxLength,
    sizes: o.sizes,
  });
  const preprocessor = demoPreprocessorConfig(data.options.imageSize);
  writeDemoModelFolder(modelDir, { config, preprocessor, tokenizer: tokFiles });
  return { data, files, modelDir, tokenizer, config, preprocessor };
}
