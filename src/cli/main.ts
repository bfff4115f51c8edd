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
  .option("--debug", "print stack traces of errors")
  .hook("preAction", async (cmd) => {
    const t = cmd.opts().threads;
    if (t !== undefined) {
      const { int } = await import("./options.js");
      (await import("../torch/runtime.js")).setNumThreads(int("--threads", t, { min: 1 }));
    }
  });

program
  .command("info")
  .description("print the engine's versions, threads and BLAS")
  .action(async () => (await import("./info.js")).info());

program
  .command("demo")
  .description("the main job: train a tiny TinyLLaVA from scratch on synthetic shapes, evaluate it, keep it (offline)")
  .option("--out <dir>", "where the data, checkpoints and the model folder go", "tinyllava-demo")
  .option("--seed <n>", "seed of the data, the weights and the training", "0")
  .option("--quick", "small settings (a minute; CI): learns well above chance, target 40%")
  .option("--train-images <n>", "training pictures")
  .option("--pretrain-steps <n>", "stage 1 steps")
  .option("--finetune-steps <n>", "stage 2 steps")
  .option("--target <accuracy>", "held-out accuracy to reach (exit code 1 below it)")
  .option("--force", "replace a demo model already in --out")
  .action(async (o) => (await import("./demo.js")).demo(o));

const generationFlags = (c: Command) =>
  c
    .requiredOption("-m, --model <dir>", "model folder (config.json + safetensors + tokenizer)")
    .option("-i, --image <path>", "image file (PNG, JPEG, WebP, GIF)")
    .option(
      "--template <name>",
      "conversation template (phi, qwen2_base, qwen2_instruct, llama, gemma, pretrain, raw); default: the checkpoint's / the LLM family's",
    )
    .option("--max-new-tokens <n>", "most tokens to generate", "512")
    .option("--temperature <t>", "sampling temperature (0 or unset: greedy)")
    .option("--top-p <p>", "nucleus sampling: keep the smallest set of tokens with probability ≥ p")
    .option("--top-k <k>", "sample among the k most likely tokens")
    .option("--repetition-penalty <r>", "HF's repetition penalty (> 1 discourages repeats)")
    .option("--num-beams <n>", "beam search with n beams")
    .option("--seed <s>", "random seed for sampling (same seed, same text)")
    .option("--stop <text...>", "extra stop strings")
    .option("--dtype <dtype>", "float32, bfloat16, float16 or float64", "float32")
    .option("--quantize <kind>", "weight-only quantisation of the language model at load time: int8")
    .option("--image-aspect <mode>", "square (resize) or pad (expand to square with the mean colour first)");

generationFlags(
  program
    .command("generate")
    .description("answer a question about an image (streamed), or print one JSON object with --json"),
)
  .requiredOption(
    "-p, --prompt <text>",
    "the question (with --template raw: the whole prompt; <image> marks the image)",
  )
  .option("--json", "print {text, tokens, finish_reason, timings} instead of streaming")
  .action(async (o) => (await import("./generate.js")).generateCommand(o));

generationFlags(
  program.command("chat").description("multi-turn chat about an image: /image PATH, /reset, /exit"),
).action(async (o) => (await import("./chat.js")).chatCommand(o));

program
  .command("merge-lora")
  .description("fold a LoRA adapter (PEFT adapter folder) into its base model and write a plain model folder")
  .requiredOption("-m, --model <dir>", "base model folder (config.json + safetensors + tokenizer)")
  .requiredOption("-a, --adapter <dir>", "adapter folder (adapter_config.json + adapter_model.safetensors)")
  .requiredOption("-o, --out <dir>", "output model folder (written in the base folder's key layout)")
  .option("--dtype <dtype>", "float32, bfloat16, float16 or float64 (default: the base config's torch_dtype)")
  .action(async (o) => (await import("./merge-lora.js")).mergeLoraCommand(o));

{
  const { addTrainFlags } = await import("./train.js");
  addTrainFlags(
    program
      .command("train")
      .description("train with TinyLLaVA's recipes (pretrain / finetune; full, frozen, partially-tune, LoRA)"),
  ).action(async (o) => (await import("./train.js")).trainCommand(o));
}

program
  .command("bench")
  .description("benchmarks at real shapes beside PyTorch and llama.cpp (needs a checkout): bench generate | train")
  .argument("<what>", "generate (inference) or train (one training step)")
  .option("--preset <name>", "qwen2-0.5b-siglip or phi-2-siglip (train: also demo)", "qwen2-0.5b-siglip")
  .option("--dtype <dtype>", "float32 or bfloat16", "float32")
  .option("--quantize <kind>", "int8 (weight-only; llama.cpp side: q8_0)")
  .option("--new-tokens <n>", "decode steps", "128")
  .option("--prompt-text-tokens <n>", "text tokens beside the image's", "40")
  .option("--reference <list>", "pytorch,llamacpp | pytorch | llamacpp | none", "pytorch,llamacpp")
  .option("--repeats <n>", "measure n times, keep the best", "1")
  .option("--batch <n>", "train: samples per step (demo 16, released shapes 1)")
  .option("--text-tokens <n>", "train: text tokens per sample beside the image's (demo 76, released shapes 40)")
  .option("--steps <n>", "train: timed steps after 2 warm-up steps (demo 20, released shapes 3)")
  .option("--gradient-checkpointing", "train: recompute each layer's activations in the backward pass")
  .action(async (what, o) => (await import("./bench.js")).benchCommand(what, o));

program
  .command("eval")
  .description("score benchmark answers with the official rules (eval score), report a model (eval report)")
  .helpOption(false)
  .allowUnknownOption()
  .argument("[args...]", "score|report and their options (tinyllava eval score --help)")
  .action(async (args: string[]) => (await import("./eval.js")).evalCommand(args));

program
  .command("serve")
  .description("OpenAI-compatible chat server (/v1/chat/completions with images, streaming) and a web page at /")
  .requiredOption("-m, --model <dir>", "model folder (config.json + safetensors + tokenizer)")
  .option("--host <host>", "address to listen on", "127.0.0.1")
  .option("--port <n>", "port (0: any free port)", "8000")
  .option("--api-key <key>", "require 'Authorization: Bearer <key>' on /v1/* (default: TINYLLAVA_API_KEY, else none)")
  .option("--max-concurrency <n>", "most requests generating at once (rows of a batch)", "8")
  .option("--max-queue <n>", "most requests waiting beyond those (then 429 with Retry-After)", "64")
  .option("--max-tokens <n>", "max_tokens of a request that gives none", "512")
  .option("--dtype <dtype>", "float32, bfloat16, float16 or float64", "float32")
  .option("--quantize <kind>", "weight-only quantisation of the language model at load time: int8")
  .option("--template <name>", "conversation template (default: the checkpoint's / the LLM family's)")
  .option("--image-aspect <mode>", "square (resize) or pad (expand to square with the mean colour first)")
  .option("--allow-remote-images", "fetch http(s) image URLs (default: data: URLs and base64 only)")
  .option("--max-image-bytes <n>", "largest encoded image accepted", String(20 * 2 ** 20))
  .option("--max-image-pixels <n>", "largest image accepted, width × height (checked before decoding)", "50000000")
  .option("--quiet", "no request log on stderr")
  .action(async (o, cmd) =>
    (await import("./serve.js")).serveCommand({ ...o, threads: cmd.optsWithGlobals().threads }),
  );

program
  .command("export")
  .description("export the language model to another format: gguf (llama.cpp)")
  .argument("<format>", "gguf")
  .requiredOption("-m, --model <dir>", "TinyLLaVA model folder (config.json + safetensors + tokenizer)")
  .requiredOption("-o, --out <file>", "output file (e.g. model.gguf)")
  .option("--type <type>", "tensor type: f32, f16, bf16 or q8_0 (1-D tensors stay f32)", "f16")
  .option("--name <name>", "general.name (default: the folder's name)")
  .option("--tokenizer <dir>", "tokenizer folder (default: the model folder)")
  .option("--tokenizer-pre <name>", "llama.cpp pre-tokenizer name when it cannot be detected (qwen2, gpt-2, llama-bpe)")
  .action(async (format, o) => (await import("./export.js")).exportCommand(format, o));

program.parseAsync(process.argv).catch((e: Error) => {
  // one clear line; the stack only with --debug
  if (program.opts().debug) console.error(e);
  else console.error(`tinyllava: ${e.name && e.name !== "Error" ? `${e.name}: ` : ""}${e.message}`);
  process.exit(e.name === "UsageError" ? 2 : 1);
});
