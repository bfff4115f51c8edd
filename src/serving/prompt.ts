// The prompt of a chat request: the model's template over the user/assistant turns (pipeline.formatPrompt, the image
// in the first user turn as Factory's demo puts it), with a system message in place of the template's fixed system
// prompt.
import { GenerationError } from "../errors.js";
import type { VisionLanguagePipeline } from "../pipeline/index.js";
import { IMAGE_TOKEN, SYSTEM, TEMPLATES, type Turn } from "../processing/templates.js";

export interface Conversation {
  turns: Turn[];
  system: string | null;
  hasImage: boolean;
}

/** The prompt text. Factory's chat templates (phi, qwen2_*, llama, gemma) all start with the same system prompt
 * followed by a space: a system message replaces that text (an empty one removes it). `raw` prepends it verbatim;
 * `pretrain` has no system prompt (refused). Outside `raw`, a literal "<image>" in a message is removed: image
 * placeholders come only from image parts, so text cannot ask for a second image. */
export function promptOf(p: Pick<VisionLanguagePipeline, "template" | "formatPrompt">, c: Conversation): string {
  if (p.template === "raw") return (c.system ?? "") + p.formatPrompt(c.turns, c.hasImage);
  const clean = (s: string) => s.replaceAll(IMAGE_TOKEN, "");
  const prompt = p.formatPrompt(
    c.turns.map((t) => ({ role: t.role, content: clean(t.content) })),
    c.hasImage,
  );
  if (c.system === null) return prompt;
  if (!(p.template in TEMPLATES) || !prompt.startsWith(`${SYSTEM} `))
    throw new GenerationError(`the ${p.template} template has no system prompt that a system message could replace`);
  const system = clean(c.system).trim();
  return (system ? `${system} ` : "") + prompt.slice(SYSTEM.length + 1);
}
