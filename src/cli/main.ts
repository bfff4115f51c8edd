// `tinyllava <command>`: one file per command, thin over the library.
import { Command } from "commander";
import { libtorchVersion } from "../torch/runtime.js";
import { VERSION } from "../version.js";

const program = new Command();
program
  .name("tinyllava")
  .description("TinyLLaVA small vision-language models in TypeScript on libtorch")
  .version(
    `tinyllava ${VERSION} (libtorch ${libtorchVersion()})`,
    "-v, --version",
    "print the tinyllava and libtorch versions",
  )
  .option("--threads <n>", "libtorch/OpenBLAS threads (default: all cores, or TINYLLAVA_NUM_THREADS)")
  .hook("preAction", async (cmd) => {
    const t = cmd.opts().threads;
    if (t !== undefined) (await import("../torch/runtime.js")).setNumThreads(Number(t));
  });

program
  .command("info")
  .description("print the engine's versions, threads and BLAS")
  .action(async () => (await import("./info.js")).info());

program
  .command("demo")
  .description("the main job on a built-in default (see README)")
  .option("--steps <n>", "training steps", "60")
  .action(async (o) => (await import("./demo.js")).demo({ steps: Number(o.steps) }));

program
  .command("predict")
  .description("answer a question about an image with a TinyLLaVA model folder (greedy decoding)")
  .requiredOption("-m, --model <dir>", "model folder (config.json + safetensors + tokenizer)")
  .option("-i, --image <path>", "image file (PNG, JPEG, WebP, GIF)")
  .requiredOption("-p, --prompt <text>", "the question")
  .option("--max-new-tokens <n>", "maximum tokens to generate", "64")
  .option("--dtype <dtype>", "float32, bfloat16, float16 or float64", "float32")
  .option(
    "--template <name>",
    "conversation template (phi, qwen2_base, qwen2_instruct, llama, gemma, raw); default from the LLM family",
  )
  .action(async (o) => (await import("./predict.js")).predict(o));

program.parseAsync(process.argv).catch((e: Error) => {
  console.error(`tinyllava: ${e.name && e.name !== "Error" ? `${e.name}: ` : ""}${e.message}`);
  process.exit(1);
});
