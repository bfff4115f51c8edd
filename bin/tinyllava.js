#!/usr/bin/env node
// The `tinyllava` command: runs the compiled CLI (dist/). `npm run setup` (or `npm start` / `npm test`) builds it.
import { existsSync } from "node:fs";

const main = new URL("../dist/src/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  console.error(
    "tinyllava is not built yet: run `bash scripts/setup.sh` (installs libtorch, builds the addon and the CLI)",
  );
  process.exit(1);
}
await import(main.href);
