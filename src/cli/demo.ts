// `tinyllava demo`: the main job on a built-in default. Until the training milestone lands this is a small real
// run of the whole stack on the bundled tiny (randomly initialised) TinyLLaVA: preprocess an image, tokenise a
// Factory-template conversation, finetune the connector + LLM for a few AdamW steps (vision frozen, cosine schedule),
// save the result atomically as safetensors, reload it and answer greedily.
import { copyFileSync, existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { factoryKey } from "../models/checkpoint.js";
import { loadTinyLlava } from "../models/load.js";
import { IGNORE_INDEX } from "../models/tinyllava.js";
import { VisionLanguagePipeline } from "../pipeline/index.js";
import { renderConversation } from "../processing/templates.js";
import { AdamW, clipGradNorm, LRScheduler, saveSafetensors, tensor, tidy } from "../torch/index.js";

/** The package's assets/ folder (src/cli under tsx, dist/src/cli when compiled). */
function assetsDir(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++, d = dirname(d)) {
    if (existsSync(join(d, "assets", "tiny-tinyllava", "config.json"))) return join(d, "assets");
  }
  throw new Error("the bundled assets/ folder is missing from the package");
}

export async function demo(opts: { steps: number }): Promise<void> {
  const assets = assetsDir();
  const modelDir = join(assets, "tiny-tinyllava");
  const image = join(assets, "shapes_64x64.png");
  const pipe = VisionLanguagePipeline.load(modelDir);
  const { model, tokenizer } = pipe;
  console.log(
    `model: ${modelDir} (${model.config.text.model_type} LLM, ${model.config.vision.model_type}, connector ${model.config.connector_type}, ${(model.numParameters() / 1e3).toFixed(1)}k parameters)`,
  );
  const pixels = (await pipe.images.preprocess(image)).unsqueeze(0);
  const question = "What color is the circle?";
  const answer = "The circle is red.";
  // tokenise the whole conversation (as Factory does, so " The" stays one token after "ASSISTANT:"); supervise
  // what follows the prompt the model will see at inference time, −100 elsewhere
  const segs = renderConversation(
    pipe.template,
    [
      { role: "user", content: question },
      { role: "assistant", content: answer },
    ],
    { hasImage: true },
  );
  const ids = tokenizer.encodeWithImages(segs.map((x) => x.text).join(""));
  const promptLen = pipe.encode(pipe.questionPrompt(question, true)).length;
  const labels = ids.map((t, i) => (i < promptLen || t < 0 ? IGNORE_INDEX : t));
  model.visionTower.requiresGrad_(false);
  const trainable = model.parameters().filter((p) => p.requiresGrad);
  const opt = new AdamW(trainable, { lr: 2e-3, weightDecay: 0 });
  const sched = new LRScheduler(opt, "cosine", opts.steps, { warmupRatio: 0.1 });
  const inputIds = tensor([ids], { dtype: "int64" });
  const labelT = tensor([labels], { dtype: "int64" });
  const t0 = performance.now();
  for (let step = 0; step < opts.steps; step++) {
    const loss = tidy(() => {
      const out = model.forward({ inputIds, labels: labelT, pixelValues: pixels });
      out.loss!.backward();
      clipGradNorm(trainable, 1.0);
      opt.step();
      opt.zeroGrad();
      return out.loss!.item();
    });
    sched.step();
    if (step === 0 || step === opts.steps - 1 || (step + 1) % 10 === 0)
      console.log(`step ${step + 1}/${opts.steps}  loss ${loss.toFixed(4)}  lr ${opt.getLr().toExponential(2)}`);
  }
  const ms = (performance.now() - t0) / opts.steps;
  console.log(`train: ${ms.toFixed(1)} ms/step (${trainable.length} trainable tensors, vision frozen)`);
  const out = mkdtempSync(join(tmpdir(), "tinyllava-demo-"));
  const sd = new Map([...model.stateDict()].map(([k, v]) => [factoryKey(k), v]));
  saveSafetensors(join(out, "model.safetensors"), sd, { format: "pt" });
  for (const f of ["config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"])
    copyFileSync(join(modelDir, f), join(out, f));
  const reloaded = loadTinyLlava(out);
  console.log(`saved to ${out} (TinyLLaVA Factory key layout) and reloaded: ${reloaded.numParameters()} parameters`);
  const reply = await new VisionLanguagePipeline(reloaded, tokenizer, pipe.images, pipe.template).answer(
    question,
    image,
    { maxNewTokens: 16 },
  );
  console.log(
    `Q: ${question}\nA: ${JSON.stringify(reply.text)}  (ids ${reply.tokens.join(" ")}; expected after training: ${JSON.stringify(answer)})`,
  );
  opt.dispose();
  pipe.dispose();
  reloaded.dispose();
}
