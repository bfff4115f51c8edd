// The pad/eos ids Factory's tokenizer has in training. Factory changes the pad token per LLM family after loading
// (tinyllava/model/llm/*.py tokenizer_and_post_load), and both the label check and the collator depend on whether
// pad == eos.
import { ConfigError } from "../../errors.js";
import type { TinyTokenizer } from "../../processing/tokenizer.js";

export interface SpecialIds {
  padTokenId: number;
  eosTokenId: number | null;
}

function tokenContent(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string")
    return (v as { content: string }).content;
  return null;
}

/** Factory's pad/eos ids for an LLM family (HF model_type): phi, gemma and llama (TinyLlama) set pad = unk — for
 * Phi-2 that is <|endoftext|>, the eos, so pad == eos; qwen2 (and qwen3, trained the same way) and stablelm keep the
 * tokenizer's pad. */
export function factorySpecialIds(modelType: string, tokenizer: TinyTokenizer): SpecialIds {
  const eosTokenId = tokenizer.eosTokenId;
  let padToken: string | null;
  if (modelType === "phi" || modelType === "gemma" || modelType === "llama") {
    padToken = tokenContent(tokenizer.config.unk_token);
    if (padToken === null)
      throw new ConfigError(
        `${tokenizer.source}: Factory pads ${modelType} with the unk token, but the tokenizer has no unk_token`,
      );
  } else {
    padToken = tokenizer.padToken;
    if (padToken === null)
      throw new ConfigError(`${tokenizer.source}: the tokenizer has no pad_token (needed to pad training batches)`);
  }
  const padTokenId = tokenizer.tokenId(padToken);
  if (padTokenId === null)
    throw new ConfigError(`${tokenizer.source}: pad token "${padToken}" is not in the vocabulary`);
  return { padTokenId, eosTokenId };
}
