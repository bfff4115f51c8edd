// TinyLLaVA Factory's conversation templates, exactly: system S + " ", user "USER: {q} ", assistant
// "ASSISTANT: {a}{sep}" where sep is the family's end-of-text token; the image goes first in the first user turn as
// "<image>\n" + question; inference prompts end with "ASSISTANT:" (no trailing space). `pretrain` renders
// "<image>{caption}\n"; `raw` uses the text verbatim.
import { ConfigError } from "../errors.js";

export const SYSTEM =
  "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

export interface Turn {
  role: "user" | "assistant";
  content: string;
}

export interface Template {
  name: string;
  /** appended after each assistant answer */
  sep: string;
}

export const TEMPLATES: Record<string, Template> = {
  phi: { name: "phi", sep: "<|endoftext|>" },
  qwen2_base: { name: "qwen2_base", sep: "<|endoftext|>" },
  llama: { name: "llama", sep: "</s>" },
  gemma: { name: "gemma", sep: "<eos>" },
  qwen2_instruct: { name: "qwen2_instruct", sep: "<|im_end|>" },
};

export type TemplateName = keyof typeof TEMPLATES | "pretrain" | "raw";

/** The default template for an LLM family (HF model_type). */
export function defaultTemplate(modelType: string): TemplateName {
  switch (modelType) {
    case "phi":
      return "phi";
    case "qwen2":
    case "qwen3":
      return "qwen2_base";
    case "gemma":
      return "gemma";
    case "stablelm":
      return "phi"; // Factory trains StableLM-2 with the phi template (<|endoftext|> separator)
    default:
      return "llama";
  }
}

export interface RenderedSegment {
  text: string;
  /** true for assistant answers (what training supervises) */
  target: boolean;
}

/** Renders a conversation as segments; concatenated they are the prompt text. With `forGeneration`, ends with
 * "ASSISTANT:" for the model to continue. `hasImage` puts "<image>\n" before the first user message. */
export function renderConversation(
  name: TemplateName,
  turns: Turn[],
  opts: { hasImage?: boolean; forGeneration?: boolean } = {},
): RenderedSegment[] {
  if (name === "raw") return turns.map((t) => ({ text: t.content, target: t.role === "assistant" }));
  if (name === "pretrain") {
    const caption = turns.find((t) => t.role === "assistant")?.content ?? "";
    return [
      { text: opts.hasImage === false ? "" : "<image>", target: false },
      { text: `${caption}\n`, target: true },
    ];
  }
  const tpl = TEMPLATES[name];
  if (!tpl)
    throw new ConfigError(
      `unknown conversation template "${name}"; known: ${[...Object.keys(TEMPLATES), "pretrain", "raw"].join(", ")}`,
    );
  const segs: RenderedSegment[] = [{ text: `${SYSTEM} `, target: false }];
  let first = true;
  for (const t of turns) {
    if (t.role === "user") {
      const q = first && opts.hasImage && !t.content.includes("<image>") ? `<image>\n${t.content}` : t.content;
      first = false;
      segs.push({ text: `USER: ${q} `, target: false });
    } else {
      segs.push({ text: "ASSISTANT: ", target: false });
      segs.push({ text: `${t.content}${tpl.sep}`, target: true });
    }
  }
  if (opts.forGeneration) segs.push({ text: "ASSISTANT:", target: false });
  return segs;
}

/** The prompt text for one question (inference). */
export function promptFor(name: TemplateName, question: string, opts: { hasImage?: boolean } = {}): string {
  return renderConversation(name, [{ role: "user", content: question }], { ...opts, forGeneration: true })
    .map((s) => s.text)
    .join("");
}
