#!/usr/bin/env node
// Builds native/ (the libtorch Node-API addon) with CMake, into native/build/Release/tinyllava_native.node.
// libtorch: $LIBTORCH (a folder with include/ and lib/, e.g. an unpacked libtorch or a wheel's torch/), else the
// system's (Debian libtorch-dev). Skips the build when the addon is newer than every source file.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const native = join(root, "native");
const out = join(native, "build", "Release", "tinyllava_native.node");
const force = process.argv.includes("--force");

function newestSource() {
  let newest = statSync(join(native, "CMakeLists.txt")).mtimeMs;
  for (const f of readdirSync(join(native, "src"))) newest = Math.max(newest, statSync(join(native, "src", f)).mtimeMs);
  return newest;
}

function libtorchVersion() {
  const candidates = process.env.LIBTORCH
    ? [join(process.env.LIBTORCH, "include", "torch", "csrc", "api", "include", "torch", "version.h")]
    : ["/usr/include/torch/csrc/api/include/torch/version.h"];
  for (const c of candidates) {
    if (!existsSync(c)) continue;
    const text = readFileSync(c, "utf8");
    const get = (k) => Number(new RegExp(`#define TORCH_VERSION_${k} (\\d+)`).exec(text)?.[1]);
    return { major: get("MAJOR"), minor: get("MINOR"), patch: get("PATCH"), header: c };
  }
  return null;
}

const v = libtorchVersion();
if (!v) {
  console.error(
    process.env.LIBTORCH
      ? `tinyllava: LIBTORCH=${process.env.LIBTORCH} has no include/torch/csrc/api/include/torch/version.h; point LIBTORCH at a folder with include/ and lib/ (an unpacked libtorch or a PyTorch wheel's torch/ folder)`
      : "tinyllava: no libtorch found. Run `bash scripts/setup.sh` (installs Debian's libtorch-dev) or set LIBTORCH=/path/to/libtorch",
  );
  process.exit(1);
}
if (v.major < 1 || (v.major === 1 && v.minor < 13)) {
  console.error(
    `tinyllava: libtorch ${v.major}.${v.minor}.${v.patch} (${v.header}) is too old; version 1.13 or newer is required`,
  );
  process.exit(1);
}
if (!force && existsSync(out) && statSync(out).mtimeMs > newestSource()) {
  process.exit(0);
}
console.log(
  `tinyllava: building the native addon against libtorch ${v.major}.${v.minor}.${v.patch}${process.env.LIBTORCH ? ` (LIBTORCH=${process.env.LIBTORCH})` : " (system)"}`,
);
const jobs = String(Math.max(1, (await import("node:os")).availableParallelism()));
const napiInclude = join(root, "node_modules", "node-api-headers", "include");
if (!existsSync(join(napiInclude, "node_api.h"))) {
  console.error("tinyllava: node-api-headers is missing; run `npm install` first");
  process.exit(1);
}
const build = join(native, "build");
execFileSync(
  "cmake",
  ["-S", native, "-B", build, "-DCMAKE_BUILD_TYPE=Release", `-DNODE_API_INCLUDE_DIR=${napiInclude}`],
  { stdio: "inherit" },
);
execFileSync("cmake", ["--build", build, "--parallel", jobs], { stdio: "inherit" });
