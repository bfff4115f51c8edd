// `tinyllava serve`: the OpenAI-compatible chat server with the web page (src/serving), until Ctrl-C / SIGTERM.
import { existsSync, statSync } from "node:fs";
import type { TemplateName } from "../processing/templates.js";
import { startServer } from "../serving/server.js";
import { setNumThreads } from "../torch/runtime.js";
import { TEMPLATE_NAMES } from "./generate.js";
import { choice, dtype, int, UsageError } from "./options.js";

export interface ServeFlags {
  model: string;
  host: string;
  port: string;
  apiKey?: string;
  maxConcurrency: string;
  maxQueue: string;
  maxTokens: string;
  dtype: string;
  quantize?: string;
  template?: string;
  imageAspect?: string;
  allowRemoteImages?: boolean;
  maxImageBytes: string;
  maxImagePixels: string;
  threads?: string;
  quiet?: boolean;
}

export async function serveCommand(o: ServeFlags): Promise<void> {
  if (!existsSync(o.model) || !statSync(o.model).isDirectory())
    throw new UsageError(`--model ${o.model}: folder not found`);
  const apiKey = o.apiKey ?? process.env.TINYLLAVA_API_KEY ?? null;
  if (apiKey !== null && apiKey.trim() === "") throw new UsageError("--api-key: empty key");
  const host = o.host.trim();
  if (host === "") throw new UsageError("--host: empty");
  // this thread only serves HTTP: one libtorch/OpenBLAS thread here (measured: with all cores set on this thread too,
  // the model's thread decodes slower); the model's thread then sets its own count when it loads (all cores, or
  // --threads)
  setNumThreads(1);
  const server = await startServer({
    model: {
      kind: "folder",
      dir: o.model,
      dtype: dtype(o.dtype),
      quantize: o.quantize === undefined ? null : choice("--quantize", o.quantize, ["int8"] as const),
      template:
        o.template === undefined ? undefined : (choice("--template", o.template, TEMPLATE_NAMES) as TemplateName),
      imageAspect:
        o.imageAspect === undefined ? undefined : choice("--image-aspect", o.imageAspect, ["square", "pad"] as const),
    },
    host,
    port: int("--port", o.port, { min: 0, max: 65535 }),
    apiKey,
    maxConcurrency: int("--max-concurrency", o.maxConcurrency, { min: 1, max: 256 }),
    maxQueue: int("--max-queue", o.maxQueue, { min: 0, max: 100_000 }),
    defaultMaxTokens: int("--max-tokens", o.maxTokens, { min: 1 }),
    threads: o.threads === undefined ? undefined : int("--threads", o.threads, { min: 1 }),
    images: {
      allowRemote: o.allowRemoteImages ?? false,
      maxBytes: int("--max-image-bytes", o.maxImageBytes, { min: 1 }),
      maxPixels: int("--max-image-pixels", o.maxImagePixels, { min: 1, max: 100_000_000 }),
    },
    log: o.quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
  });
  process.stderr.write(
    `tinyllava serve: ready — web page ${server.url}/, API ${server.url}/v1 (${apiKey ? "API key required" : "no API key"})\n`,
  );
  if (host !== "127.0.0.1" && host !== "localhost" && host !== "::1" && !apiKey)
    process.stderr.write(`tinyllava serve: warning: listening on ${host} without --api-key\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.stderr.write("tinyllava serve: shutting down\n");
      server.close().then(resolve, resolve);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}
