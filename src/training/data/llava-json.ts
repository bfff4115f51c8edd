// LLaVA-format training data: a JSON list of {id, image?, conversations: [{from: "human"|"gpt", value}]}, the format
// Factory's LazySupervisedDataset reads. Everything that can be checked without decoding images is checked up front,
// and all problems are reported together, each naming the file, the sample (index and id) and the field.
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { IMAGE_TOKEN, type TemplateName, type Turn } from "../../processing/templates.js";
import { DataError, type DataErrorPlace, describePlace } from "./errors.js";

export interface LlavaTurn {
  from: "human" | "gpt";
  value: string;
}

export interface LlavaRecord {
  id: string;
  /** image file, relative to the image folder (or absolute, as Python's os.path.join allows) */
  image?: string;
  conversations: LlavaTurn[];
}

export interface ValidateOptions {
  /** folder the `image` fields are relative to (Factory's image_folder) */
  imageFolder?: string | null;
  /** check that every image file exists (default true) */
  checkImageFiles?: boolean;
  /** the stage's template: `pretrain` renders one "<image>" per round, so its samples must have a single round */
  template?: TemplateName;
}

/** Where an image field points, as os.path.join(image_folder, image) does. */
export function imagePath(imageFolder: string | null | undefined, image: string): string {
  if (isAbsolute(image) || !imageFolder) return image;
  return join(imageFolder, image);
}

/** The record's conversation as template turns. */
export function toTurns(record: LlavaRecord): Turn[] {
  return record.conversations.map((c) => ({ role: c.from === "human" ? "user" : "assistant", content: c.value }));
}

/** Offset of the first JSON syntax error in `s`, or −1 (V8's messages do not always say where). */
export function jsonErrorOffset(s: string): number {
  let i = 0;
  const fail = (): never => {
    throw i;
  };
  const ws = () => {
    while (s[i] === " " || s[i] === "\t" || s[i] === "\n" || s[i] === "\r") i++;
  };
  const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  const string = () => {
    i++; // opening quote
    for (;;) {
      const c = s[i];
      if (c === undefined || c < " ") fail();
      if (c === '"') break;
      if (c !== "\\") i++;
      else if ('"\\/bfnrt'.includes(s[i + 1] ?? "x")) i += 2;
      else if (s[i + 1] === "u" && /^[0-9a-fA-F]{4}$/.test(s.slice(i + 2, i + 6))) i += 6;
      else {
        i++;
        fail();
      }
    }
    i++;
  };
  const container = (close: "}" | "]") => {
    i++;
    ws();
    if (s[i] === close) {
      i++;
      return;
    }
    for (;;) {
      if (close === "}") {
        ws();
        if (s[i] !== '"') fail();
        string();
        ws();
        if (s[i] !== ":") fail();
        i++;
      }
      value();
      ws();
      if (s[i] === close) break;
      if (s[i] !== ",") fail();
      i++;
    }
    i++;
  };
  const value = () => {
    ws();
    const c = s[i];
    const lit = ["true", "false", "null"].find((l) => s.startsWith(l, i));
    NUMBER.lastIndex = i;
    if (c === "{") container("}");
    else if (c === "[") container("]");
    else if (c === '"') string();
    else if (lit) i += lit.length;
    else if (NUMBER.exec(s)) i = NUMBER.lastIndex;
    else fail();
  };
  try {
    value();
    ws();
    if (i < s.length) fail();
    return -1;
  } catch (pos) {
    if (typeof pos === "number") return pos;
    throw pos;
  }
}

/** JSON.parse with an error that names the file, line, column and position. */
export function parseJsonFile(text: string, file: string): unknown {
  const src = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  try {
    return JSON.parse(src);
  } catch (e) {
    const found = jsonErrorOffset(src);
    const pos = found >= 0 ? found : src.length;
    const before = src.slice(0, pos);
    const line = before.split("\n").length;
    const column = pos - before.lastIndexOf("\n");
    throw new DataError(
      `${file}: not valid JSON at line ${line}, column ${column} (position ${pos}): ${(e as Error).message}`,
      { file },
    );
  }
}

const MAX_LISTED = 10;

/** Validates a parsed LLaVA list; throws one DataError listing every problem found (the first one in detail). */
export function validateLlavaData(data: unknown, file: string, opts: ValidateOptions = {}): LlavaRecord[] {
  if (!Array.isArray(data)) {
    const got = data === null ? "null" : typeof data === "object" ? "an object" : typeof data;
    throw new DataError(`${file}: expected a JSON list of samples, got ${got}`, { file });
  }
  const problems: { place: DataErrorPlace; text: string }[] = [];
  const records: LlavaRecord[] = [];
  let folderMissingReported = false;
  data.forEach((raw: unknown, index) => {
    let sampleId: string | undefined;
    const bad = (field: string | undefined, text: string) =>
      problems.push({ place: { file, index, sampleId, field }, text });
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      bad(undefined, `expected an object, got ${JSON.stringify(raw)?.slice(0, 60)}`);
      return;
    }
    const r = raw as Record<string, unknown>;
    const before = problems.length;
    if (typeof r.id === "string" && r.id.length > 0) sampleId = r.id;
    else if (typeof r.id === "number" && Number.isFinite(r.id)) sampleId = String(r.id);
    else bad("id", r.id === undefined ? "is missing" : `is ${JSON.stringify(r.id)}; expected a string or number`);

    // Factory tests `'image' in sample`: a present key means an image, so null is an error, not "no image"
    const hasImage = "image" in r;
    if (hasImage && (typeof r.image !== "string" || r.image.length === 0))
      bad("image", `is ${JSON.stringify(r.image)}; expected a file name (leave the field out for a text-only sample)`);

    const conv = r.conversations;
    if (!Array.isArray(conv)) {
      bad(
        "conversations",
        conv === undefined ? "is missing" : `is ${JSON.stringify(conv)?.slice(0, 60)}; expected a list of turns`,
      );
      return;
    }
    if (conv.length === 0) bad("conversations", "is empty");
    conv.forEach((t: unknown, k) => {
      const f = `conversations[${k}]`;
      if (t === null || typeof t !== "object" || Array.isArray(t)) {
        bad(f, `expected an object {from, value}, got ${JSON.stringify(t)?.slice(0, 60)}`);
        return;
      }
      const turn = t as Record<string, unknown>;
      const want = k % 2 === 0 ? "human" : "gpt";
      if (turn.from !== "human" && turn.from !== "gpt")
        bad(
          `${f}.from`,
          `${turn.from === undefined ? "is missing" : `is ${JSON.stringify(turn.from)}`}; expected "human" or "gpt"`,
        );
      else if (turn.from !== want)
        bad(`${f}.from`, `is "${turn.from}"; expected "${want}" (turns must alternate human/gpt, starting with human)`);
      if (typeof turn.value !== "string")
        bad(
          `${f}.value`,
          `${turn.value === undefined ? "is missing" : `is ${JSON.stringify(turn.value)?.slice(0, 60)}`}; expected a string`,
        );
      else if (k > 0 && turn.value.includes(IMAGE_TOKEN))
        // one image per sample, and Factory's model consumes images in placeholder order: a later "<image>" would
        // take the next sample's image
        bad(`${f}.value`, `contains "${IMAGE_TOKEN}"; only the first human turn may hold the image placeholder`);
    });
    if (conv.length > 0 && conv.length % 2 !== 0)
      bad(
        "conversations",
        `has ${conv.length} turns; expected complete human/gpt rounds (the last turn must be "gpt")`,
      );
    if (opts.template === "pretrain" && conv.length > 2)
      bad(
        "conversations",
        `has ${conv.length / 2} rounds; the pretrain template renders one "${IMAGE_TOKEN}" per round, and a sample has one image`,
      );

    const first = conv[0] as { value?: unknown } | undefined;
    const placeholder = typeof first?.value === "string" && first.value.includes(IMAGE_TOKEN);
    if (hasImage && typeof r.image === "string" && !placeholder && conv.length > 0)
      bad(
        "image",
        `the sample has an image but conversations[0].value has no "${IMAGE_TOKEN}" placeholder (Factory would silently ignore the image)`,
      );
    if (!hasImage && placeholder)
      bad("image", `is missing, but conversations[0].value has the "${IMAGE_TOKEN}" placeholder`);

    if (hasImage && typeof r.image === "string" && r.image.length > 0 && (opts.checkImageFiles ?? true)) {
      if (!opts.imageFolder && !isAbsolute(r.image)) {
        if (!folderMissingReported) bad("image", `"${r.image}" is relative but no image folder was given`);
        folderMissingReported = true;
      } else {
        const p = imagePath(opts.imageFolder, r.image);
        if (!existsSync(p)) bad("image", `image file ${p} not found`);
      }
    }
    if (problems.length === before)
      records.push({
        id: sampleId as string,
        ...(hasImage ? { image: r.image as string } : {}),
        conversations: (conv as LlavaTurn[]).map((c) => ({ from: c.from, value: c.value })),
      });
  });
  if (problems.length > 0) {
    const [p0] = problems;
    const head = `${describePlace(p0!.place)}: ${p0!.text}`;
    const rest = problems.slice(1, MAX_LISTED).map((p) => `  ${describePlace(p.place)}: ${p.text}`);
    const more = problems.length > MAX_LISTED ? [`  … and ${problems.length - MAX_LISTED} more`] : [];
    const tail =
      problems.length > 1 ? `\n${problems.length} problems in ${file}:\n${rest.concat(more).join("\n")}` : "";
    throw new DataError(head + tail, p0!.place);
  }
  return records;
}

/** Reads and validates a LLaVA JSON file. */
export function readLlavaJson(file: string, opts: ValidateOptions = {}): LlavaRecord[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new DataError(`${file}: cannot read the data file (${(e as Error).message})`, { file });
  }
  return validateLlavaData(parseJsonFile(text, file), file, opts);
}
