// What the demo says about a scene: captions for stage 1 (pretraining the connector) and questions with one-word
// answers for stage 2 (finetuning). A question is only asked when exactly one answer is right for its scene: colour
// by shape only when that shape occurs once, shape by colour only when that colour occurs once, and so on (scenes
// never repeat a (colour, shape) pair and hold one shape per position, so "the red circle" and "the shape on the
// left" always name one object).
import type { Rng } from "../data/sampler.js";
import { POSITION_NAMES, type PositionName, pick, type Scene, type SceneObject, uniform } from "./shapes.js";

export const QUESTION_TYPES = ["color", "shape", "count", "position"] as const;
export type QuestionType = (typeof QUESTION_TYPES)[number];

/** What a question is keyed by and asks for: `count`, `where` (an object named by colour and shape → its place),
 * `colorOfPlace` / `shapeOfPlace` (a place → its shape's colour or form), `colorOfShape` (a form → its colour),
 * `shapeOfColor` (a colour → its form). */
export const QUESTION_FORMS = [
  "count",
  "where",
  "colorOfPlace",
  "shapeOfPlace",
  "colorOfShape",
  "shapeOfColor",
] as const;
export type QuestionForm = (typeof QUESTION_FORMS)[number];

export interface QuestionAnswer {
  type: QuestionType;
  form: QuestionForm;
  question: string;
  /** one lowercase word: a colour, a shape, a position, or a count in digits */
  answer: string;
  /** the answer as a sentence that first restates what the question asks about, e.g. "The shape on the left is red."
   * (the `sentence` answer style) */
  reply: string;
  /** the `object` answer style's reply where it differs from `reply`: a question keyed by place is answered with the
   * whole object there ("The shape on the left is a red circle."), whether it asks for the colour or the form */
  objectReply?: string;
}

/** How captions and questions refer to a position. */
export const PLACE_PHRASE: Record<PositionName, string> = {
  top: "at the top",
  bottom: "at the bottom",
  left: "on the left",
  right: "on the right",
  center: "in the center",
};

const NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five"];

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** "a", "a and b", "a, b and c". */
function joinList(parts: string[]): string {
  if (parts.length <= 1) return parts.join("");
  return `${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}`;
}

/** "a" or "an", by the next word's first letter (every demo word starting with a vowel is read with a vowel sound). */
export function article(word: string): string {
  return /^[aeiou]/i.test(word) ? "an" : "a";
}

/** "a red circle", "an orange square" */
function named(o: SceneObject): string {
  return `${article(o.color)} ${o.color} ${o.shape}`;
}

function describe(o: SceneObject): string {
  return `${named(o)} ${PLACE_PHRASE[o.position]}`;
}

/** A caption naming every shape with its colour and place. With probability `gridShare` it goes through the five
 * places in reading order, naming what each holds ("At the top: a red circle. On the left: nothing. …"); otherwise
 * it lists the shapes in random order, in one of three phrasings ("A red circle on the left and a blue square at the
 * top.", "There are two shapes: …", "Two shapes: …"). The list asks the model for each shape's place (where-questions),
 * the scan for each place's shape (questions keyed by place); see DEMO_DATA_DEFAULTS for what the scan did. */
export function sceneCaption(scene: Scene, rng: Rng, gridShare = 0): string {
  if (gridShare > 0 && uniform(rng) < gridShare)
    return POSITION_NAMES.map((p) => {
      const o = scene.objects.find((x) => x.position === p);
      return `${capitalise(PLACE_PHRASE[p])}: ${o ? named(o) : "nothing"}.`;
    }).join(" ");
  const n = scene.objects.length;
  const order = rng.permutation(n);
  const list = joinList(order.map((i) => describe(scene.objects[i] as SceneObject)));
  const count = NUMBER_WORDS[n] ?? String(n);
  switch (rng.below(3)) {
    case 0:
      return `${capitalise(list)}.`;
    case 1:
      return n === 1 ? `There is ${list}.` : `There are ${count} shapes: ${list}.`;
    default:
      return `${capitalise(count)} shape${n === 1 ? "" : "s"}: ${list}.`;
  }
}

/** Every question the demo asks about the scene, each with its one correct answer. */
export function sceneQuestions(scene: Scene): QuestionAnswer[] {
  const objs = scene.objects;
  const out: QuestionAnswer[] = [];
  const n = objs.length;
  const countReply = n === 1 ? "There is 1 shape." : `There are ${n} shapes.`;
  const count = { type: "count", form: "count", answer: String(n), reply: countReply } as const;
  out.push({ ...count, question: "How many shapes are there?" });
  out.push({ ...count, question: "How many shapes are in the picture?" });
  for (const o of objs) {
    const place = PLACE_PHRASE[o.position];
    const a = article(o.shape);
    out.push({
      type: "position",
      form: "where",
      question: `Where is the ${o.color} ${o.shape}?`,
      answer: o.position,
      reply: `The ${o.color} ${o.shape} is ${place}.`,
    });
    out.push({
      type: "color",
      form: "colorOfPlace",
      question: `What color is the shape ${place}?`,
      answer: o.color,
      reply: `The shape ${place} is ${o.color}.`,
      objectReply: `The shape ${place} is ${named(o)}.`,
    });
    out.push({
      type: "shape",
      form: "shapeOfPlace",
      question: `What shape is ${place}?`,
      answer: o.shape,
      reply: `The shape ${place} is ${a} ${o.shape}.`,
      objectReply: `The shape ${place} is ${named(o)}.`,
    });
    if (objs.filter((p) => p.shape === o.shape).length === 1)
      out.push({
        type: "color",
        form: "colorOfShape",
        question: `What color is the ${o.shape}?`,
        answer: o.color,
        reply: `The ${o.shape} is ${o.color}.`,
      });
    if (objs.filter((p) => p.color === o.color).length === 1)
      out.push({
        type: "shape",
        form: "shapeOfColor",
        question: `What shape is the ${o.color} object?`,
        answer: o.shape,
        reply: `The ${o.color} object is ${a} ${o.shape}.`,
      });
  }
  return out;
}

/** Relative weights of the question forms in training conversations (a form missing from the record weighs 0). */
export type QuestionWeights = Partial<Record<QuestionForm, number>>;

/** `k` distinct questions about the scene. Without weights the first ones cover the question types in a random order
 * (one each) and further ones are drawn from what is left. With weights each round first draws a form in proportion
 * to its weight among the forms that still have a question for this scene (all of them equally when none of those
 * weighs anything), then one question of that form. */
export function sampleQuestions(scene: Scene, rng: Rng, k: number, weights?: QuestionWeights): QuestionAnswer[] {
  const all = sceneQuestions(scene);
  const chosen: QuestionAnswer[] = [];
  const take = (pool: QuestionAnswer[]) => {
    const q = pick(rng, pool);
    chosen.push(q);
    all.splice(all.indexOf(q), 1);
  };
  if (weights) {
    while (chosen.length < k && all.length > 0) {
      const forms = QUESTION_FORMS.filter((f) => all.some((q) => q.form === f));
      const w = forms.map((f) => weights[f] ?? 0);
      const total = w.reduce((a, b) => a + b, 0);
      let form = forms[forms.length - 1] as QuestionForm;
      if (total > 0) {
        let u = uniform(rng) * total;
        for (let i = 0; i < forms.length; i++) {
          u -= w[i] as number;
          if (u < 0) {
            form = forms[i] as QuestionForm;
            break;
          }
        }
      } else form = pick(rng, forms);
      take(all.filter((q) => q.form === form));
    }
    return chosen;
  }
  for (const t of rng.permutation(QUESTION_TYPES.length).map((i) => QUESTION_TYPES[i] as QuestionType)) {
    if (chosen.length >= k) break;
    const pool = all.filter((q) => q.type === t);
    if (pool.length > 0) take(pool);
  }
  while (chosen.length < k && all.length > 0) take(all);
  return chosen;
}

/** One question of the given type (a random phrasing among the valid ones). */
export function questionOfType(scene: Scene, type: QuestionType, rng: Rng): QuestionAnswer {
  const pool = sceneQuestions(scene).filter((q) => q.type === type);
  return pick(rng, pool);
}
