// VQA-style answer normalisation, in the three flavours the official pipelines use:
//  - EvalAIAnswerProcessor (m4c_evaluator.py, Python 3): TextVQA scoring and the VQAv2/VizWiz upload converters;
//  - the VQA v2 evaluator (vqaEval.py @ a013f00, run under Python 2.7): ASCII-only \d, Python 2 case mapping;
//  - the VizWiz VQA API evaluator (Python 3): its own contraction table with curly ’ forms.
// Quirks kept on purpose (they change scores):
//  - the period regex is compiled as `(?!<=\d)(\.)(?!\d)`: "(?!<=" is a negative *lookahead* for "<=", a no-op,
//    so every "." not followed by a digit is removed; and `re.UNICODE` (= 32) is passed as sub()'s `count`, so at
//    most 32 periods are removed;
//  - whether a punctuation mark is deleted or replaced by a space is decided on the *input* text (mark next to a
//    space, or a digit-comma-digit anywhere), then applied to the running output;
//  - the number map is applied before articles are dropped, contractions last.
import { CONTRACTIONS, VIZWIZ_CONTRACTIONS } from "./contractions.js";
import { PY_WHITESPACE, PY2_WHITESPACE, py2Lower, pySplit, pyStrip } from "./python.js";

/** The punctuation list (same order) of EvalAI's processor, vqaEval.py @ a013f00 and the VizWiz evaluator. */
export const PUNCTUATIONS = [
  ";",
  "/",
  "[",
  "]",
  '"',
  "{",
  "}",
  "(",
  ")",
  "=",
  "+",
  "\\",
  "_",
  "-",
  ">",
  "<",
  "@",
  "`",
  ",",
  "?",
  "!",
] as const;

export const NUMBER_MAP: ReadonlyMap<string, string> = new Map([
  ["none", "0"],
  ["zero", "0"],
  ["one", "1"],
  ["two", "2"],
  ["three", "3"],
  ["four", "4"],
  ["five", "5"],
  ["six", "6"],
  ["seven", "7"],
  ["eight", "8"],
  ["nine", "9"],
  ["ten", "10"],
]);
export const ARTICLES: ReadonlySet<string> = new Set(["a", "an", "the"]);

/** What differs between the official normalisers. */
interface Flavor {
  /** "comma between digits" test that switches every punctuation mark to deletion */
  commaStrip: RegExp;
  /** "." not followed by a digit (global) */
  periodStrip: RegExp;
  whitespace: string;
  lower: (s: string) => string;
  contractions: ReadonlyMap<string, string>;
}

const straight = new Map(Object.entries(CONTRACTIONS));

/** Python 3 `re` with str patterns: \d is any Unicode decimal digit. */
const EVALAI: Flavor = {
  commaStrip: /(?<=\p{Nd}),+(?=\p{Nd})/u,
  periodStrip: /(?!<=\p{Nd})(\.)(?!\p{Nd})/gu,
  whitespace: PY_WHITESPACE,
  lower: (s) => s.toLowerCase(),
  contractions: straight,
};
/** Python 2.7 `re` without re.UNICODE: \d is [0-9]; unicode.lower() is the simple case mapping. */
const VQA_PY2: Flavor = {
  commaStrip: /([0-9])(,)([0-9])/,
  periodStrip: /(?!<=[0-9])(\.)(?!\d)/g,
  whitespace: PY2_WHITESPACE,
  lower: py2Lower,
  contractions: straight,
};
const VIZWIZ: Flavor = {
  commaStrip: /(\p{Nd})(,)(\p{Nd})/u,
  periodStrip: /(?!<=\p{Nd})(\.)(?!\p{Nd})/gu,
  whitespace: PY_WHITESPACE,
  lower: (s) => s.toLowerCase(),
  contractions: new Map(Object.entries(VIZWIZ_CONTRACTIONS)),
};

/** `re.sub(pattern, "", text, re.UNICODE)`: the flag lands in `count`, so only the first 32 matches go. */
const PERIOD_SUB_COUNT = 32;

/** Any character processPunctuation can change (the marks and "."); without one it is the identity. */
const TOUCHED = /[;/[\]"{}()=+\\_\-><@`,?!.]/;

function processPunctuation(inText: string, f: Flavor): string {
  if (!TOUCHED.test(inText)) return inText;
  let out = inText;
  const commaBetweenDigits = f.commaStrip.test(inText);
  for (const p of PUNCTUATIONS) {
    if (inText.includes(`${p} `) || inText.includes(` ${p}`) || commaBetweenDigits) out = out.replaceAll(p, "");
    else out = out.replaceAll(p, " ");
  }
  let n = 0;
  return out.replace(f.periodStrip, (m) => (n++ < PERIOD_SUB_COUNT ? "" : m));
}

function processDigitArticle(inText: string, f: Flavor): string {
  const words: string[] = [];
  for (let w of pySplit(f.lower(inText), f.whitespace)) {
    w = NUMBER_MAP.get(w) ?? w;
    if (!ARTICLES.has(w)) words.push(w);
  }
  return words.map((w) => f.contractions.get(w) ?? w).join(" ");
}

/** EvalAIAnswerProcessor.__call__ (m4c_evaluator.py): the normaliser of TextVQA and the VQAv2/VizWiz converters. */
export function evalAIAnswer(item: string): string {
  // word_tokenize: lower, drop "," and "?", "'s" → " 's", strip
  let s = pyStrip(EVALAI.lower(item).replaceAll(",", "").replaceAll("?", "").replaceAll("'s", " 's"));
  s = pyStrip(s.replaceAll("\n", " ").replaceAll("\t", " "));
  return processDigitArticle(processPunctuation(s, EVALAI), EVALAI);
}

/** vqaEval.py @ a013f00 processPunctuation + processDigitArticle (Python 2.7). */
export function vqaV2Normalize(s: string): string {
  return processDigitArticle(processPunctuation(s, VQA_PY2), VQA_PY2);
}

/** The answer clean-up vqaEval.py @ a013f00 applies to every answer: \n and \t → space, strip. */
export function vqaV2Clean(s: string): string {
  return pyStrip(s.replaceAll("\n", " ").replaceAll("\t", " "), undefined, PY2_WHITESPACE);
}

/** The VizWiz evaluator's prediction normalisation: \n/\t → space, strip, punctuation, digits/articles. */
export function vizwizNormalize(s: string): string {
  const t = pyStrip(s.replaceAll("\n", " ").replaceAll("\t", " "));
  return processDigitArticle(processPunctuation(t, VIZWIZ), VIZWIZ);
}
