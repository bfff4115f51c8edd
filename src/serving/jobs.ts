// What crosses between the HTTP thread and the model's worker thread (src/serving/engine.ts): how to load the model,
// what it is, one generation job, and the events of a job.
import type { TemplateName, Turn } from "../processing/templates.js";
import type { DType } from "../torch/dtype.js";
import type { GenerationParams } from "./protocol.js";

export type ModelSpec =
  | {
      kind: "folder";
      dir: string;
      dtype?: DType;
      quantize?: "int8" | null;
      template?: TemplateName;
      imageAspect?: "square" | "pad";
      /** the id the API shows (default: the folder's name) */
      id?: string;
    }
  | {
      /** a preset's real shapes with random weights (benchmarks): src/models/presets.ts */
      kind: "random";
      preset: string;
      /** a tokenizer whose vocabulary fits the preset's */
      tokenizerDir: string;
      dtype?: DType;
      quantize?: "int8" | null;
      template?: TemplateName;
      seed?: number;
      id?: string;
    };

export interface ModelInfo {
  id: string;
  template: TemplateName;
  /** the template has a system prompt that a system message can replace */
  systemPrompt: boolean;
  contextLength: number;
  dtype: DType;
  quantization: "int8" | null;
  parameters: number;
  /** bytes of the weights (parameters and buffers) as loaded */
  weightBytes: number;
  loadMs: number;
}

export interface JobSpec {
  id: string;
  turns: Turn[];
  system: string | null;
  /** encoded image bytes (already checked on the HTTP thread) */
  image: Uint8Array | null;
  params: GenerationParams;
  /** requests with the same key may share a batch */
  batchKey: string;
}

export type JobEvent =
  /** the prompt has been prefilled: generation is under way */
  | { type: "started"; promptTokens: number }
  | { type: "delta"; text: string }
  | {
      type: "done";
      finishReason: "stop" | "length" | "abort";
      promptTokens: number;
      completionTokens: number;
      /** rows that shared this job's batch (1 = alone) */
      batchSize: number;
    };

export interface WorkerStats {
  runs: number;
  rows: number;
  /** jobs being prepared or ready to start */
  waiting: number;
  /** the whole process's */
  rssBytes: number;
  /** the engine allocator's: bytes in use, kept for reuse, most in use at once */
  allocatedBytes: number;
  cachedBytes: number;
  peakBytes: number;
}
