// Types of run.mjs's exports (for bench/llamacpp/crosscheck.ts and the TypeScript benchmark driver).
export declare const NODE_LLAMA_CPP_VERSION: string;
export declare const DEPS: string;
export declare function ensureNodeLlamaCpp(): void;
export declare function greedy(
  modelPath: string,
  tokens: number[],
  opts?: { newTokens?: number; threads?: number },
): Promise<number[]>;
export declare function tokenize(modelPath: string, text: string, opts?: { threads?: number }): Promise<number[]>;
export declare function randomTokens(n: number, lo: number, hi: number, seed?: number): number[];
export interface LlamaCppBenchResult {
  engine: "llama.cpp";
  runtime: string;
  model: string;
  arch: string | null;
  file_type: number | null;
  threads: number;
  prompt_tokens: number;
  new_tokens: number;
  load_ms: number;
  prefill_ms: number;
  prefill_tok_s: number;
  decode_ms: number;
  decode_tok_s: number;
  flash_attention: boolean | "auto" | null;
  weights_mb: number;
  peak_rss_mb: number;
  generated_head: number[];
}
export declare function bench(
  modelPath: string,
  opts?: { promptTokens?: number; newTokens?: number; threads?: number; seed?: number },
): Promise<LlamaCppBenchResult>;
