import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findPackageJson(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const p = join(dir, "package.json");
    try {
      const pkg = JSON.parse(readFileSync(p, "utf8"));
      if (pkg.name === "tinyllava") return pkg.version;
    } catch {
      // keep looking upwards
    }
    dir = dirname(dir);
  }
  return "0.0.0";
}

export const VERSION = findPackageJson();
