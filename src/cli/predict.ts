// `tinyllava predict`: one question about one image.

import { assertDtype } from "../models/tinyllava.js";
import { VisionLanguagePipeline } from "../pipeline/index.js";
import type { TemplateName } from "../processing/templates.js";

export async function predict(o: {
  model: string;
  image?: string;
  prompt: string;
  maxNewTokens: string;
  dtype: string;
  template?: string;
}): Promise<void> {
  const maxNewTokens = Number(o.maxNewTokens);
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1)
    throw new Error(`--max-new-tokens ${o.maxNewTokens}: expected a positive integer`);
  const pipe = VisionLanguagePipeline.load(o.model, {
    dtype: assertDtype(o.dtype),
    template: o.template as TemplateName | undefined,
  });
  const t0 = performance.now();
  const r = await pipe.answer(o.prompt, o.image ?? null, { maxNewTokens });
  console.log(r.text);
  console.error(`(${r.ids.length} tokens in ${((performance.now() - t0) / 1000).toFixed(2)} s)`);
  pipe.dispose();
}
