// Run as a child process by native-boundary.test.ts: calls every exported function of the addon with a matrix of bad
// values, each in every argument position (the other arguments valid, derived from the NativeAddon interface in
// src/torch/native.ts), and all positions at once. Prints "CALL <n> <description>" before each call (so a crash names
// its call) and a JSON summary line at the end.
import { readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { EngineWorker } from "../../src/torch/index.js";
import { native } from "../../src/torch/native.js";
import { ROOT } from "../helpers.js";

type Kind = "tensor" | "tensorList" | "number" | "numberList" | "other";
interface Param {
  name: string;
  type: string;
}

/** The NativeAddon interface's methods and their parameter types (a small parser: types may nest brackets). */
export function parseInterface(): Map<string, Param[]> {
  const src = readFileSync(join(ROOT, "src", "torch", "native.ts"), "utf8");
  const start = src.indexOf("export interface NativeAddon {");
  let depth = 0;
  let i = src.indexOf("{", start);
  const bodyStart = i + 1;
  for (; i < src.length; i++) {
    if (src[i] === "{") depth++;
    else if (src[i] === "}" && --depth === 0) break;
  }
  const body = src
    .slice(bodyStart, i)
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/\/\/.*$/gm, "");
  const out = new Map<string, Param[]>();
  const re = /^\s*([A-Za-z_]\w*)\(/gm;
  for (let m = re.exec(body); m; m = re.exec(body)) {
    let d = 1;
    let j = m.index + m[0].length;
    const from = j;
    for (; j < body.length && d > 0; j++) {
      if ("([{".includes(body[j] as string)) d++;
      else if (")]}".includes(body[j] as string)) d--;
    }
    const params = splitTop(body.slice(from, j - 1)).map((p) => {
      const c = p.indexOf(":");
      return {
        name: p.slice(0, c).trim(),
        type: p
          .slice(c + 1)
          .replace(/\s+/g, " ")
          .trim(),
      };
    });
    out.set(m[1] as string, params);
    re.lastIndex = j;
  }
  return out;
}

function splitTop(s: string): string[] {
  const parts: string[] = [];
  let d = 0;
  let cur = "";
  for (const ch of s) {
    if ("([{".includes(ch)) d++;
    else if (")]}".includes(ch)) d--;
    if (ch === "," && d === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) parts.push(cur);
  return parts.map((p) => p.trim()).filter(Boolean);
}

function kindOf(type: string): Kind {
  if (type === "H[]") return "tensorList";
  if (type === "H" || type === "H | null") return "tensor";
  if (/^number(\[\])?( \| number(\[\])?)*( \| null)?$/.test(type)) return /\[\]/.test(type) ? "numberList" : "number";
  return "other";
}

const created: number[] = [];
function fresh(): number {
  const h = native.ones([2], 1, null);
  created.push(h);
  return h;
}

function validFor(type: string): unknown {
  switch (kindOf(type)) {
    case "tensor":
      return fresh();
    case "tensorList":
      return [fresh()];
    case "numberList":
      return [1];
    case "number":
      return 1;
    default:
  }
  if (type === "boolean") return false;
  if (type.startsWith("ArrayBufferView")) return new Float32Array(2);
  if (type === "OptimGroup[]") return [{ params: [fresh()] }];
  if (type.startsWith("{")) return {};
  if (type.endsWith("[]")) return [null];
  return null; // Dt, Dev, G
}

/** Frees every live handle of this thread found in a returned value; frees optimisers an optimiser factory made. */
function release(name: string, v: unknown): void {
  if (name === "adamw" || name === "sgd") {
    if (typeof v === "number") native.optFree(v);
    return;
  }
  if (typeof v === "number" && native.isAlive(v)) native.freeTensor(v);
  else if (Array.isArray(v)) for (const x of v) release(name, x);
}

async function main(): Promise<void> {
  const sig = parseInterface();
  const exported = Object.keys(native).sort();
  const declared = [...sig.keys()].sort();
  const disposed = native.ones([1], 1, null);
  native.freeTensor(disposed);
  const worker = new EngineWorker(new URL("./worker-fixture.ts", import.meta.url), { threads: 1 });
  const foreign = await worker.call<number>("liveHandle");
  // a handle of this thread, given to the worker
  const mine = fresh();
  const inWorker = await worker.call<string>("useHandle", mine);
  await worker.terminate();

  const bad: [string, unknown][] = [
    ["undefined", undefined],
    ["null", null],
    ["NaN", Number.NaN],
    ["-1", -1],
    ["1e300", 1e300],
    ["-Infinity", Number.NEGATIVE_INFINITY],
    ["2.5", 2.5],
    ['"x"', "x"],
    ["{}", {}],
    ["[]", []],
    ["[NaN]", [Number.NaN]],
    ["a disposed handle", disposed],
    ["a worker's handle", foreign],
  ];
  const handleValued = new Set(["a disposed handle", "a worker's handle"]);
  const threads = native.getNumThreads();
  let calls = 0;
  let threw = 0;
  const nonErrors: string[] = [];
  const wrongMessages: string[] = [];
  const call = (name: string, args: unknown[], what: string, expect?: RegExp) => {
    calls++;
    writeSync(1, `CALL ${calls} ${name} ${what}\n`);
    const fn = (native as unknown as Record<string, (...a: unknown[]) => unknown>)[name] as (
      ...a: unknown[]
    ) => unknown;
    try {
      release(name, fn(...args));
    } catch (e) {
      threw++;
      if (!(e instanceof Error) || !e.message) nonErrors.push(`${name}(${what}): threw ${String(e)}`);
      else if (expect && !expect.test(e.message)) wrongMessages.push(`${name}(${what}): ${e.message}`);
      return;
    }
    if (expect) wrongMessages.push(`${name}(${what}): returned instead of throwing`);
  };
  for (const name of exported) {
    const params = sig.get(name) ?? [];
    const arity = Math.max(params.length, 1);
    for (const [label, value] of bad) {
      // every position at once (also beyond the declared ones)
      call(name, new Array(7).fill(value), `all = ${label}`);
      for (let p = 0; p < arity; p++) {
        const type = params[p]?.type ?? "unknown";
        const kind = kindOf(type);
        // a handle is a legitimate (large) integer where a number is expected: only tensor positions get handles
        if (handleValued.has(label) && (kind === "number" || kind === "numberList")) continue;
        const args = params.map((q) => validFor(q.type));
        args[p] = value;
        // a tensor position must refuse every non-handle (except isAlive/freeTensor, which answer false for spent ones)
        let expect: RegExp | undefined;
        if (kind === "tensor" && !(type.includes("null") && (value === null || value === undefined))) {
          if (label === "a disposed handle" || label === "-1")
            expect = name === "freeTensor" || name === "isAlive" ? undefined : /used after dispose/;
          else if (label === "a worker's handle") expect = name === "isAlive" ? undefined : /another JS thread/;
          else expect = name === "isAlive" ? undefined : /expected a tensor handle/;
        }
        call(name, args, `${params[p]?.name ?? `#${p}`}: ${type} = ${label}`, expect);
      }
    }
  }
  native.setNumThreads(threads);
  native.setGradEnabled(true);
  native.freeMany(created.filter((h) => native.isAlive(h)));
  const summary = {
    exported,
    declared,
    calls,
    threw,
    nonErrors,
    wrongMessages,
    inWorker,
    isAliveForeign: native.isAlive(foreign),
    liveTensors: native.memStats().liveTensors,
  };
  writeSync(1, `SUMMARY ${JSON.stringify(summary)}\n`);
}

main().catch((e) => {
  writeSync(2, `fuzz driver failed: ${(e as Error).stack}\n`);
  process.exit(2);
});
