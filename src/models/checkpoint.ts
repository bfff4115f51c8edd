// Checkpoint key layouts. Internally a TinyLLaVA's parameters are named
//   vision_tower.vision_model.*      (HF SiglipVisionModel / CLIPVisionModel names)
//   connector.<Factory connector keys> (e.g. connector._connector.0.weight)
//   language_model.model.* / language_model.lm_head.*   (HF *ForCausalLM names)
// and every supported layout is mapped onto that:
//   TinyLLaVA Factory   vision_tower._vision_tower.vision_model.*, connector._connector.*, language_model.*
//   classic llava-hf    vision_tower.vision_model.*, multi_modal_projector.linear_{1,2}.*, language_model.{model,lm_head}.*
//   transformers 5      vision_tower.<no vision_model>*, multi_modal_projector.*, language_model.model.*
//   modern              model.vision_tower.vision_model.*, model.multi_modal_projector.*, model.language_model.*, lm_head.*
export type CheckpointLayout = "tinyllava-factory" | "llava-hf-classic" | "transformers-5" | "modern";

/** Maps one key of any supported layout to the internal name (null: a weight the model does not have). SigLIP's
 * attention-pooling head, unused by TinyLLaVA, is carried as buffers so checkpoints round-trip unchanged. */
export function canonicalKey(key: string): string | null {
  let k = key;
  if (k.startsWith("model.language_model.")) k = `language_model.model.${k.slice("model.language_model.".length)}`;
  else if (k.startsWith("model.vision_tower.")) k = `vision_tower.${k.slice("model.vision_tower.".length)}`;
  else if (k.startsWith("model.multi_modal_projector.")) k = k.slice("model.".length);
  else if (k.startsWith("lm_head.")) k = `language_model.${k}`;
  if (k.startsWith("vision_tower._vision_tower.")) k = `vision_tower.${k.slice("vision_tower._vision_tower.".length)}`;
  if (k.startsWith("vision_tower.") && !k.startsWith("vision_tower.vision_model.")) {
    k = `vision_tower.vision_model.${k.slice("vision_tower.".length)}`;
  }
  const mmp = /^multi_modal_projector\.linear_(\d+)\.(.+)$/.exec(k);
  if (mmp) k = `connector._connector.${2 * (Number(mmp[1]) - 1)}.${mmp[2]}`;
  if (
    k.startsWith("language_model.") &&
    !k.startsWith("language_model.model.") &&
    !k.startsWith("language_model.lm_head.")
  ) {
    k = `language_model.model.${k.slice("language_model.".length)}`;
  }
  return k;
}

/** Guesses the layout of a key set (for messages and for writing back in the same layout). */
export function detectLayout(keys: Iterable<string>): CheckpointLayout {
  let vm = false;
  for (const k of keys) {
    if (k.startsWith("vision_tower._vision_tower.") || k.startsWith("connector._connector."))
      return "tinyllava-factory";
    if (k.startsWith("model.language_model.") || k.startsWith("model.vision_tower.")) return "modern";
    if (k.startsWith("vision_tower.vision_model.")) vm = true;
  }
  return vm ? "llava-hf-classic" : "transformers-5";
}

/** Internal name → Factory name (what `save` writes, so Factory can load our checkpoints). */
export function factoryKey(key: string): string {
  if (key.startsWith("vision_tower.")) return `vision_tower._vision_tower.${key.slice("vision_tower.".length)}`;
  return key;
}
