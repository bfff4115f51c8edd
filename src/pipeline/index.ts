// A loaded model with its tokenizer, image processor and conversation template: what the CLI and apps use.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { greedyGenerate } from "../generation/greedy.js";
import { loadTinyLlava } from "../models/load.js";
import type { TinyLlava } from "../models/tinyllava.js";
import { ImageProcessor } from "../processing/image.js";
import { defaultTemplate, promptFor, type TemplateName } from "../processing/templates.js";
import { TinyTokenizer } from "../processing/tokenizer.js";
import type { DType } from "../torch/dtype.js";
import { tidy } from "../torch/memory.js";
import type { Tensor } from "../torch/tensor.js";

export class VisionLanguagePipeline {
  constructor(
    readonly model: TinyLlava,
    readonly tokenizer: TinyTokenizer,
    readonly images: ImageProcessor,
    readonly template: TemplateName,
  ) {}

  static load(
    dir: string,
    opts: { dtype?: DType; template?: TemplateName; tokenizerDir?: string } = {},
  ): VisionLanguagePipeline {
    const model = loadTinyLlava(dir, { dtype: opts.dtype });
    const tokDir =
      opts.tokenizerDir ??
      (existsSync(join(dir, "tokenizer.json")) || existsSync(join(dir, "vocab.json"))
        ? dir
        : join(dir, "language_model"));
    const tokenizer = TinyTokenizer.fromFolder(tokDir);
    const images = ImageProcessor.fromFolder(dir, model.config.vision, model.config.image_aspect_ratio);
    return new VisionLanguagePipeline(
      model,
      tokenizer,
      images,
      opts.template ?? defaultTemplate(model.config.text.model_type),
    );
  }

  /** Token ids for a question (with the image placeholder when an image is given). */
  encodePrompt(question: string, hasImage: boolean): number[] {
    const prompt = this.template === "raw" ? question : promptFor(this.template, question, { hasImage });
    return this.model.config.source_format === "llava" && this.tokenizer.tokenId("<image>") !== null
      ? this.tokenizer.encodeWithImageToken(prompt)
      : this.tokenizer.encodeWithImages(prompt);
  }

  async answer(
    question: string,
    image: string | Buffer | null,
    opts: { maxNewTokens?: number } = {},
  ): Promise<{ text: string; ids: number[] }> {
    const pixels: Tensor | null = image ? (await this.images.preprocess(image)).unsqueeze(0) : null;
    const ids = this.encodePrompt(question, image !== null);
    const eos = [this.tokenizer.eosTokenId, this.model.config.text.eos_token_id]
      .flat()
      .filter((x): x is number => typeof x === "number");
    const out = tidy(() =>
      greedyGenerate(this.model, ids, pixels, { maxNewTokens: opts.maxNewTokens ?? 64, eosTokenIds: eos }),
    );
    pixels?.dispose();
    return { text: this.tokenizer.decode(out).trim(), ids: out }; // Factory strips the decoded answer too
  }

  dispose(): void {
    this.model.dispose();
  }
}
