// What the parity suite checks, found in a reference fixtures folder, and everything that is missing from it. A missing
// or empty folder, a category without cases, or a case without its golden files is a problem (the suite fails on any).
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

export interface Fixtures {
  /** model folders with config, weights and goldens */
  models: string[];
  /** tokenizer folders with tokenizer.json and golden.json */
  tokenizers: string[];
  /** those whose tokenizer.json has a byte-level pre-tokenizer (also checked as vocab.json + merges.txt) */
  byteLevelTokenizers: string[];
  /** preprocess/*.json specs with their .safetensors */
  preprocess: string[];
  /** cases listed in those specs */
  preprocessCases: number;
  /** connector folders with weights and goldens */
  connectors: string[];
  /** what is missing, one line each, naming the path */
  problems: string[];
}

const isDir = (p: string) => existsSync(p) && statSync(p).isDirectory();
const isFile = (p: string) => existsSync(p) && statSync(p).isFile();

/** Sub-folders of `dir` (sorted); a problem when `dir` is missing or has none. */
function folders(dir: string, what: string, problems: string[]): string[] {
  if (!isDir(dir)) {
    problems.push(`${dir}: no ${what} folder`);
    return [];
  }
  const names = readdirSync(dir)
    .filter((n) => isDir(join(dir, n)))
    .sort();
  if (names.length === 0) problems.push(`${dir}: no ${what} in it (empty)`);
  return names;
}

/** Keeps the names whose folder has every required file; the others are problems naming the missing files. */
function complete(dir: string, names: string[], required: (string | string[])[], problems: string[]): string[] {
  return names.filter((n) => {
    const missing = required
      .filter((r) => !(Array.isArray(r) ? r : [r]).some((f) => isFile(join(dir, n, f))))
      .map((r) => (Array.isArray(r) ? r.join(" or ") : r));
    if (missing.length) problems.push(`${join(dir, n)}: missing ${missing.join(", ")}`);
    return missing.length === 0;
  });
}

function readJson(path: string, problems: string[]): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    problems.push(`${path}: not valid JSON (${(e as Error).message})`);
    return undefined;
  }
}

function hasByteLevel(node: unknown): boolean {
  if (node === null || typeof node !== "object") return false;
  const n = node as { type?: unknown; pretokenizers?: unknown[] };
  return n.type === "ByteLevel" || (Array.isArray(n.pretokenizers) && n.pretokenizers.some(hasByteLevel));
}

export function discoverFixtures(root: string): Fixtures {
  const problems: string[] = [];
  const out: Fixtures = {
    models: [],
    tokenizers: [],
    byteLevelTokenizers: [],
    preprocess: [],
    preprocessCases: 0,
    connectors: [],
    problems,
  };
  if (!isDir(root)) {
    problems.push(`${root}: fixtures folder not found (TINYLLAVA_REFERENCE_FIXTURES or test/fixtures/reference)`);
    return out;
  }
  if (readdirSync(root).length === 0) {
    problems.push(
      `${root}: fixtures folder is empty (expected models/, tokenizers/, preprocess/, connectors/, images/)`,
    );
    return out;
  }
  const images = join(root, "images");
  const imageNames = new Set(isDir(images) ? readdirSync(images) : []);
  if (imageNames.size === 0) problems.push(`${images}: no images folder, or it is empty`);
  const needImage = (where: string, name: unknown) => {
    if (typeof name !== "string" || !imageNames.has(name))
      problems.push(`${where}: image ${JSON.stringify(name)} is not in ${images}`);
  };

  const modelsDir = join(root, "models");
  out.models = complete(
    modelsDir,
    folders(modelsDir, "models", problems),
    [
      "config.json",
      ["model.safetensors", "model.safetensors.index.json"],
      ["tokenizer.json", "vocab.json"],
      "golden.json",
      "golden.safetensors",
    ],
    problems,
  ).filter((n) => {
    const g = readJson(join(modelsDir, n, "golden.json"), problems) as { image?: unknown } | undefined;
    if (g === undefined) return false;
    needImage(join(modelsDir, n, "golden.json"), g.image);
    return true;
  });

  const tokDir = join(root, "tokenizers");
  out.tokenizers = complete(
    tokDir,
    folders(tokDir, "tokenizers", problems),
    ["tokenizer.json", "golden.json"],
    problems,
  );
  out.byteLevelTokenizers = out.tokenizers.filter((n) => {
    const t = readJson(join(tokDir, n, "tokenizer.json"), problems) as { pre_tokenizer?: unknown } | undefined;
    return t !== undefined && hasByteLevel(t.pre_tokenizer);
  });

  const preDir = join(root, "preprocess");
  if (!isDir(preDir)) problems.push(`${preDir}: no preprocess folder`);
  else {
    const specs = readdirSync(preDir)
      .filter((f) => f.endsWith(".json"))
      .sort();
    if (specs.length === 0) problems.push(`${preDir}: no preprocessing specs (*.json) in it`);
    for (const f of specs) {
      const st = f.replace(/\.json$/, ".safetensors");
      if (!isFile(join(preDir, st))) {
        problems.push(`${join(preDir, f)}: missing ${st}`);
        continue;
      }
      const spec = readJson(join(preDir, f), problems) as { cases?: { image?: unknown }[] } | undefined;
      if (spec === undefined) continue;
      if (!Array.isArray(spec.cases) || spec.cases.length === 0) {
        problems.push(`${join(preDir, f)}: no cases`);
        continue;
      }
      for (const c of spec.cases) needImage(join(preDir, f), c.image);
      out.preprocess.push(f);
      out.preprocessCases += spec.cases.length;
    }
  }

  const connDir = join(root, "connectors");
  out.connectors = complete(
    connDir,
    folders(connDir, "connectors", problems),
    ["connector.safetensors", "golden.json", "golden.safetensors"],
    problems,
  );
  return out;
}
