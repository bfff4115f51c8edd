// The bits of Python semantics the official scorers depend on, reproduced exactly: str.strip()/split() whitespace
// (Unicode, and Python 2.7's slightly larger set), code-point lengths, round() on the exact binary value
// (half-to-even in Python 3, half-away-from-zero in Python 2.7), '%.Nf' formatting, float(str) parsing,
// numpy's round, repr(float) and json.dumps (ensure_ascii, default separators) for the files the pipeline writes.

/** Characters for which Python 3's str.isspace() is true (str.strip()/str.split() with no argument). */
export const PY_WHITESPACE =
  "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000";
/** Python 2.7's unicode whitespace (Unicode 5.2): also U+180E MONGOLIAN VOWEL SEPARATOR. */
export const PY2_WHITESPACE = `${PY_WHITESPACE}\u180e`;

const setCache = new Map<string, Set<string>>();
function charSet(chars: string): Set<string> {
  let s = setCache.get(chars);
  if (!s) {
    s = new Set(Array.from(chars));
    setCache.set(chars, s);
  }
  return s;
}

/** str.strip(chars); without `chars`, strips Python whitespace (`ws`). Works on code points. */
export function pyStrip(s: string, chars?: string, ws: string = PY_WHITESPACE): string {
  const set = charSet(chars ?? ws);
  const cps = Array.from(s);
  let a = 0;
  let b = cps.length;
  while (a < b && set.has(cps[a] as string)) a++;
  while (b > a && set.has(cps[b - 1] as string)) b--;
  return a === 0 && b === cps.length ? s : cps.slice(a, b).join("");
}

/** str.split() with no argument: runs of whitespace separate, no empty strings. */
export function pySplit(s: string, ws: string = PY_WHITESPACE): string[] {
  const set = charSet(ws);
  const out: string[] = [];
  let cur = "";
  for (const c of s) {
    if (set.has(c)) {
      if (cur) out.push(cur);
      cur = "";
    } else cur += c;
  }
  if (cur) out.push(cur);
  return out;
}

/** len(str): code points, not UTF-16 units. */
export function pyLen(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Python 2.7's unicode.lower(): simple case mapping per code point (no final-sigma context, İ → i). */
export function py2Lower(s: string): string {
  let out = "";
  for (const c of s) out += c === "\u0130" ? "i" : c.toLowerCase();
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Exact decimal rounding of doubles.

/** |x| = m · 2^e exactly (x finite, non-zero). */
function decompose(x: number): { m: bigint; e: number } {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, x);
  const hi = dv.getUint32(0);
  const lo = dv.getUint32(4);
  const expBits = (hi >>> 20) & 0x7ff;
  const frac = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (expBits === 0) return { m: frac, e: -1074 };
  return { m: frac | (1n << 52n), e: expBits - 1075 };
}

/** |x|·10^n rounded to an integer from its exact binary value; ties to even or away from zero. */
function scaledRound(x: number, n: number, tie: "even" | "away"): bigint {
  if (x === 0) return 0n;
  const { m, e } = decompose(x);
  const num = m * 10n ** BigInt(n);
  if (e >= 0) return num << BigInt(e);
  const k = BigInt(-e);
  const q = num >> k;
  const twiceRem = (num - (q << k)) * 2n;
  const half = 1n << k;
  if (twiceRem > half || (twiceRem === half && (tie === "away" || (q & 1n) === 1n))) return q + 1n;
  return q;
}

/**
 * round(x, n) for n ≥ 0. Python 3 rounds the exact binary value half-to-even (round(0.125, 2) = 0.12,
 * round(2.675, 2) = 2.67); Python 2.7 (`tie: "away"`) rounds exact halves away from zero. The decimal result is
 * converted back to the nearest double, as CPython does.
 */
export function pyRound(x: number, n: number, tie: "even" | "away" = "even"): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const q = scaledRound(Math.abs(x), n, tie);
  const v = Number(`${q}e-${n}`);
  return x < 0 ? -v : v;
}

/** '%.{n}f' % x (also '{:.nf}'.format): correctly rounded, ties to even on the exact value. */
export function pyFormatFixed(x: number, n: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  const neg = x < 0 || Object.is(x, -0);
  const digits = scaledRound(Math.abs(x), n, "even")
    .toString()
    .padStart(n + 1, "0");
  const body = n === 0 ? digits : `${digits.slice(0, -n)}.${digits.slice(-n)}`;
  return neg ? `-${body}` : body;
}

/** numpy's round(x, n) (np.around, also round() of an np.float64): rint(x·10^n) / 10^n in doubles. */
export function numpyRound(x: number, n: number): number {
  const f = 10 ** n;
  const y = x * f;
  if (!Number.isFinite(y)) return x;
  const fl = Math.floor(y);
  const d = y - fl;
  const r = d > 0.5 ? fl + 1 : d < 0.5 ? fl : fl % 2 === 0 ? fl : fl + 1;
  return r / f;
}

// ---------------------------------------------------------------------------------------------------------------
// float(str)

const ND = /\p{Nd}/u;

/** Value of a Unicode decimal digit (category Nd): digits come in runs of whole 0–9 blocks. */
function decimalValue(cp: number): number {
  let start = cp;
  while (start > 0 && ND.test(String.fromCodePoint(start - 1))) start--;
  return (cp - start) % 10;
}

const FLOAT_RE = /^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)$/i;

/**
 * Python's float(s): surrounding whitespace stripped, Unicode decimal digits accepted, "_" only between digits,
 * inf/infinity/nan in any case. Returns null where Python raises ValueError.
 */
export function pyFloat(s: string): number | null {
  const t = pyStrip(s);
  let ascii = "";
  for (const c of t) {
    const cp = c.codePointAt(0) as number;
    if (cp < 128) ascii += c;
    else if (ND.test(c)) ascii += String(decimalValue(cp));
    else return null;
  }
  if (ascii.includes("_")) {
    for (let i = 0; i < ascii.length; i++) {
      if (ascii[i] !== "_") continue;
      if (!/[0-9]/.test(ascii[i - 1] ?? "") || !/[0-9]/.test(ascii[i + 1] ?? "")) return null;
    }
    ascii = ascii.replaceAll("_", "");
  }
  if (!FLOAT_RE.test(ascii)) return null;
  const body = ascii.replace(/^[+-]/, "").toLowerCase();
  const sign = ascii.startsWith("-") ? -1 : 1;
  if (body === "nan") return Number.NaN;
  if (body === "inf" || body === "infinity") return sign * Number.POSITIVE_INFINITY;
  return Number(ascii);
}

// ---------------------------------------------------------------------------------------------------------------
// repr(float) and json.dumps

/** repr(x) for a Python float: shortest round-trip digits, exponent form below 1e-4 or from 1e16 on. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mant, expStr] = Math.abs(x).toExponential().split("e") as [string, string];
  const digits = mant.replace(".", "");
  const decpt = Number(expStr) + 1;
  let body: string;
  if (decpt < -3 || decpt > 16) {
    const e = decpt - 1;
    body = `${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ""}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  } else if (decpt <= 0) body = `0.${"0".repeat(-decpt)}${digits}`;
  else if (decpt >= digits.length) body = `${digits}${"0".repeat(decpt - digits.length)}.0`;
  else body = `${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
  return x < 0 ? `-${body}` : body;
}

/** Marks a number that Python holds as a float (so json.dumps writes 84.0, not 84). */
export class PyFloat {
  constructor(readonly value: number) {}
}

function jsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c >= 0x20 && c <= 0x7e) out += s[i];
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c === 0x08) out += "\\b";
    else if (c === 0x0c) out += "\\f";
    else out += `\\u${c.toString(16).padStart(4, "0")}`;
  }
  return `${out}"`;
}

/**
 * json.dumps(value) / json.dump(value, f, indent=N) as Python writes it: ensure_ascii escapes, ", "/": "
 * separators (","/": " with an indent), NaN/Infinity, floats as repr(). Maps keep their insertion order (plain
 * objects reorder integer-like keys in JavaScript); integral numbers are ints unless wrapped in PyFloat.
 */
export function pyJsonDumps(value: unknown, indent?: number): string {
  const itemSep = indent === undefined ? ", " : ",";
  const enc = (v: unknown, level: number): string => {
    if (v === null || v === undefined) return "null";
    if (v === true) return "true";
    if (v === false) return "false";
    if (v instanceof PyFloat) return floatJson(v.value);
    if (typeof v === "number") return Number.isInteger(v) && !Object.is(v, -0) ? String(v) : floatJson(v);
    if (typeof v === "string") return jsonString(v);
    const nl = indent === undefined ? "" : `\n${" ".repeat(indent * (level + 1))}`;
    const close = indent === undefined ? "" : `\n${" ".repeat(indent * level)}`;
    if (Array.isArray(v)) {
      if (v.length === 0) return "[]";
      return `[${nl}${v.map((x) => enc(x, level + 1)).join(`${itemSep}${nl}`)}${close}]`;
    }
    const entries = v instanceof Map ? [...v.entries()] : Object.entries(v as Record<string, unknown>);
    if (entries.length === 0) return "{}";
    return `{${nl}${entries.map(([k, x]) => `${jsonString(String(k))}: ${enc(x, level + 1)}`).join(`${itemSep}${nl}`)}${close}}`;
  };
  return enc(value, 0);
}

function floatJson(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "Infinity" : "-Infinity";
  return pyFloatRepr(x);
}

/** Hashable key with Python dict semantics for JSON scalars: 1 == 1.0 == True, "1" differs from 1. */
export function pyKey(v: unknown): string {
  if (typeof v === "boolean") return `n:${v ? 1 : 0}`;
  if (typeof v === "number") return `n:${v}`;
  if (typeof v === "string") return `s:${v}`;
  return `j:${JSON.stringify(v)}`;
}

/** Python's str() of a JSON scalar as it appears in messages and keys ("1", "abc", "True", "None"). */
export function pyStr(v: unknown): string {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  return String(v);
}
