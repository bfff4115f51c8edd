// Exporting models to other ecosystems' formats. GGUF: the language model of a TinyLLaVA folder for llama.cpp.
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { loadTinyLlava } from "../models/load.js";
import type { DType } from "../torch/dtype.js";
import { SafetensorsCheckpoint } from "../torch/safetensors.js";
import { type GgufExportResult, type GgufType, writeGguf } from "./gguf.js";

export {
  GGUF_ARCH,
  GGUF_TYPES,
  type GgufExportResult,
  type GgufOptions,
  type GgufPlan,
  type GgufType,
  type GgufVocabSource,
  ggmlTypeFor,
  permuteForLlamaRope,
  planGguf,
  vocabFor,
  writeGguf,
} from "./gguf.js";
export { ExportError, GGML_TYPE, GGUF_VALUE, type GgufValue, writeGgufFile } from "./gguf-format.js";
export { fp32ToBf16Bits, fp32ToFp16Bits, quantizeQ8_0 } from "./quant.js";
export { type GgufVocab, syntheticVocab, TOKEN_TYPE, vocabFromTokenizerDir, vocabMetadata } from "./vocab.js";

/** The dtype the language model's weights are stored in (float64 counts as float32): loading in it keeps every
 * conversion exact (bf16/f16 → f32 is exact), without a float32 copy of a bf16 model. */
export function storedLanguageModelDtype(modelDir: string): DType {
  const dirs = [modelDir, join(modelDir, "language_model")];
  for (const d of dirs) {
    if (!existsSync(join(d, "model.safetensors")) && !existsSync(join(d, "model.safetensors.index.json"))) continue;
    const ck = SafetensorsCheckpoint.open(d);
    try {
      const key = ck.keys().find((k) => k.endsWith("embed_tokens.weight") && !k.includes("vision"));
      const dt = key ? ck.info(key)?.dtype : undefined;
      if (dt === "bfloat16" || dt === "float16" || dt === "float32") return dt;
      return "float32";
    } finally {
      ck.close();
    }
  }
  return "float32";
}

export interface ExportGgufOptions {
  type?: GgufType;
  /** general.name (default: the folder's name) */
  name?: string;
  /** tokenizer folder (default: the model folder) */
  tokenizerDir?: string;
  /** llama.cpp pre-tokenizer name when it cannot be detected */
  tokenizerPre?: string;
}

const hasTokenizer = (d: string) => existsSync(join(d, "tokenizer.json")) || existsSync(join(d, "vocab.json"));

/** `tinyllava export gguf`: loads a TinyLLaVA folder and writes its language model as a GGUF file. The tokenizer is
 * the folder's (or its language_model/ folder's, for Factory's stage-1 layout) unless `tokenizerDir` says. */
export function exportTinyLlavaGguf(modelDir: string, outPath: string, opts: ExportGgufOptions = {}): GgufExportResult {
  const tokenizerDir =
    opts.tokenizerDir ??
    (!hasTokenizer(modelDir) && hasTokenizer(join(modelDir, "language_model"))
      ? join(modelDir, "language_model")
      : modelDir);
  const model = loadTinyLlava(modelDir, { dtype: storedLanguageModelDtype(modelDir) });
  return writeGguf(model.languageModel, { tokenizerDir, pre: opts.tokenizerPre }, outPath, {
    type: opts.type,
    name: opts.name ?? basename(resolve(modelDir)),
  });
}
