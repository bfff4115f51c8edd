// The parity suite fails loudly, naming what is missing, on an empty or missing fixtures folder and on an incomplete
// copy (a model without golden.json, no connectors/), while the complete cases in it still run and pass.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { REFERENCE, ROOT } from "../helpers.js";
import { discoverFixtures } from "./discover.js";

const tmp = mkdtempSync(join(tmpdir(), "tl-parity-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

function runParity(fixtures: string): { code: number | null; out: string } {
  // without NODE_TEST_CONTEXT: a child that sees it reports to this runner instead of exiting with its own status
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const r = spawnSync(process.execPath, ["--import", "tsx", "--test", join(ROOT, "test", "parity", "parity.test.ts")], {
    encoding: "utf8",
    env: { ...env, TINYLLAVA_REFERENCE_FIXTURES: fixtures },
    cwd: ROOT,
  });
  return { code: r.status, out: `${r.stdout}\n${r.stderr}` };
}

/** A folder whose files are symlinks to `src`'s (recursively), minus the relative paths in `skip`. */
function linkTree(src: string, dst: string, skip: Set<string>, rel = ""): void {
  mkdirSync(dst, { recursive: true });
  for (const e of readdirSync(src, { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (skip.has(r)) continue;
    if (e.isDirectory()) linkTree(join(src, e.name), join(dst, e.name), skip, r);
    else symlinkSync(join(src, e.name), join(dst, e.name));
  }
}

test("the repo's fixtures are complete and discovery finds every case", () => {
  const f = discoverFixtures(REFERENCE);
  assert.deepEqual(f.problems, []);
  assert.ok(f.models.length >= 1 && f.tokenizers.length >= 1 && f.preprocessCases >= 1 && f.connectors.length >= 1);
});

test("an empty or missing fixtures folder fails the suite and says so", () => {
  const empty = join(tmp, "empty");
  mkdirSync(empty);
  const r = runParity(empty);
  assert.notEqual(r.code, 0, "the suite must fail");
  assert.match(r.out, /fixtures folder is empty/);
  assert.match(r.out, /# fail [1-9]/);
  const missing = runParity(join(tmp, "nonexistent"));
  assert.notEqual(missing.code, 0);
  assert.match(missing.out, /nonexistent: fixtures folder not found/);
});

test("a partial copy (a model without golden.json, no connectors/) fails, naming both; the rest still runs", () => {
  const models = readdirSync(join(REFERENCE, "models")).sort();
  assert.ok(models.length >= 2, "needs two model fixtures");
  const [broken, kept] = models as [string, string];
  const part = join(tmp, "partial");
  const skip = new Set(["connectors", `models/${broken}/golden.json`]);
  for (const m of models.slice(2)) skip.add(`models/${m}`);
  linkTree(REFERENCE, part, skip);
  const f = discoverFixtures(part);
  assert.deepEqual(f.models, [kept]);
  const r = runParity(part);
  assert.notEqual(r.code, 0, "the suite must fail");
  assert.match(r.out, new RegExp(`models/${broken}: missing golden\\.json`));
  assert.match(r.out, /connectors: no connectors folder/);
  assert.match(r.out, new RegExp(`ok \\d+ - ${kept}\\n`), "the complete model is still checked");
  assert.match(r.out, /no connectors cases discovered/, "the summary counts what was discovered");
  assert.match(r.out, /# fail 2\n/, "only the completeness and summary tests fail");
});
