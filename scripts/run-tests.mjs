#!/usr/bin/env node
// Runs every *.test.ts below the given folders with Node's test runner (TypeScript through tsx).
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function find(dir, out) {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) find(p, out);
    else if (p.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

const roots = process.argv.slice(2).filter((a) => !a.startsWith("-"));
const files = roots.flatMap((r) => find(r, [])).sort();
if (files.length === 0) {
  console.error(`no *.test.ts files under ${roots.join(", ")}`);
  process.exit(1);
}
const r = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=2", ...files], {
  stdio: "inherit",
});
process.exit(r.status ?? 1);
