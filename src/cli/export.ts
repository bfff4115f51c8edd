// `tinyllava export gguf`: the language model of a TinyLLaVA folder as a llama.cpp GGUF file.
import { ExportError, exportTinyLlavaGguf, GGUF_TYPES, type GgufType } from "../export/index.js";

export async function exportCommand(
  format: string,
  o: { model: string; out: string; type: string; name?: string; tokenizer?: string; tokenizerPre?: string },
): Promise<void> {
  if (format !== "gguf") throw new ExportError(`unknown export format "${format}"; supported: gguf`);
  if (!(GGUF_TYPES as readonly string[]).includes(o.type))
    throw new ExportError(`--type ${o.type}: expected one of ${GGUF_TYPES.join(", ")}`);
  const t0 = performance.now();
  const r = exportTinyLlavaGguf(o.model, o.out, {
    type: o.type as GgufType,
    name: o.name,
    tokenizerDir: o.tokenizer,
    tokenizerPre: o.tokenizerPre,
  });
  const mb = (r.bytes / 1024 ** 2).toFixed(1);
  console.log(
    `${r.path}: GGUF v3, ${r.arch}, ${r.type}, ${r.tensors} tensors, ${mb} MiB (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
}
