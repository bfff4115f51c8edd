// safetensors: round trips for every dtype, sharded checkpoints, atomic writes, and each malformed file rejected
// with its own message.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { CheckpointError } from "../../src/errors.js";
import * as torch from "../../src/torch/index.js";
import {
  loadSafetensors,
  SafetensorsCheckpoint,
  SafetensorsFile,
  saveSafetensors,
  tensor,
  tidy,
} from "../../src/torch/index.js";

const dir = () => mkdtempSync(join(tmpdir(), "tl-st-"));

function rawFile(header: unknown, data: Buffer, opts: { headerLen?: bigint } = {}): Buffer {
  const h = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.headerLen ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

describe("safetensors", () => {
  test("round-trips every dtype (F64/F32/F16/BF16/I64/I32/U8/BOOL) bit-exactly", () => {
    const d = dir();
    tidy(() => {
      const src = new Map<string, torch.Tensor>([
        ["f64", tensor([1.5, -2.25, Math.PI], { dtype: "float64" })],
        [
          "f32",
          tensor(
            [
              [1, 2],
              [3, 4.5],
            ],
            { dtype: "float32" },
          ),
        ],
        ["f16", tensor([0.5, -1, 65504], { dtype: "float16" })],
        ["bf16", tensor([1, -3.5, 1e30], { dtype: "bfloat16" })],
        ["i64", tensor([2 ** 40, -5], { dtype: "int64" })],
        ["i32", tensor([7, -8], { dtype: "int32" })],
        ["u8", tensor([0, 255], { dtype: "uint8" })],
        ["bool", tensor([true, false, true])],
        ["empty", torch.zeros([0, 3])],
        ["scalar", tensor(3, { dtype: "float64", shape: [] })],
      ]);
      const p = join(d, "all.safetensors");
      saveSafetensors(p, src, { note: "hi" });
      const f = new SafetensorsFile(p);
      assert.deepEqual(f.metadata, { note: "hi" });
      for (const [k, t] of src) {
        const back = f.get(k);
        assert.equal(back.dtype, t.dtype, k);
        assert.deepEqual(back.shape, t.shape, k);
        assert.ok(back.toBuffer().equals(t.toBuffer()), `${k} bytes differ`);
      }
      f.close();
      // dtype conversion on load
      const all = loadSafetensors(p, "float64");
      assert.equal(all.get("f32")?.dtype, "float64");
      assert.equal(all.get("i64")?.dtype, "float64");
    });
    assert.deepEqual(
      readdirSync(d).filter((n) => n.includes(".tmp-")),
      [],
      "no temporary files left behind",
    );
  });

  test("sharded checkpoints through model.safetensors.index.json", () => {
    const d = dir();
    tidy(() => {
      const src = new Map<string, torch.Tensor>();
      for (let i = 0; i < 5; i++) src.set(`layer.${i}.weight`, torch.full([64], i, { dtype: "float32" }));
      const files = torch.saveShardedSafetensors(d, src, 600);
      assert.ok(files.some((f) => f.endsWith("model.safetensors.index.json")));
      assert.ok(files.filter((f) => f.endsWith(".safetensors")).length >= 2);
      const ck = SafetensorsCheckpoint.open(d);
      assert.deepEqual(ck.keys().sort(), [...src.keys()].sort());
      assert.deepEqual(ck.get("layer.3.weight").toArray(), new Array(64).fill(3));
      ck.close();
      const idx = JSON.parse(readFileSync(join(d, "model.safetensors.index.json"), "utf8"));
      idx.weight_map["layer.9.weight"] = "model-00001-of-00003.safetensors";
      writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify(idx));
      assert.throws(
        () => SafetensorsCheckpoint.open(d),
        /weight "layer.9.weight" is listed in "model-00001-of-00003.safetensors" but that file has no such tensor/,
      );
      idx.weight_map["layer.9.weight"] = "missing.safetensors";
      writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify(idx));
      assert.throws(() => SafetensorsCheckpoint.open(d), /missing.safetensors: file not found/);
    });
  });

  test("a failed write leaves the existing file intact", () => {
    const d = dir();
    const p = join(d, "m.safetensors");
    tidy(() => {
      saveSafetensors(p, { a: tensor([1, 2]) });
      const before = readFileSync(p);
      const disposed = tensor([1]);
      disposed.dispose();
      assert.throws(() => saveSafetensors(p, { a: tensor([3, 4]), b: disposed }), /used after dispose/);
      assert.ok(readFileSync(p).equals(before));
      assert.deepEqual(
        readdirSync(d).filter((n) => n !== "m.safetensors"),
        [],
      );
    });
  });

  test("non-ASCII tensor names: the header is padded in UTF-8 bytes, so the data stays 8-byte aligned", () => {
    const d = dir();
    tidy(() => {
      for (const names of [["é"], ["名前", "x"], ["🙂.weight", "Ω", "plain"], ["ñ".repeat(7)]]) {
        const src = new Map(names.map((n, i) => [n, tensor([i + 0.5, -i], { dtype: "float64" })]));
        const p = join(d, "u.safetensors");
        saveSafetensors(p, src, { clé: "välue" });
        const bytes = readFileSync(p);
        const headerLen = Number(bytes.readBigUInt64LE(0));
        assert.equal((8 + headerLen) % 8, 0, `data of ${JSON.stringify(names)} starts at ${8 + headerLen}`);
        assert.equal(bytes.length, 8 + headerLen + 16 * names.length);
        const header = bytes.subarray(8, 8 + headerLen).toString("utf8");
        assert.match(header, / *$/);
        assert.deepEqual(Object.keys(JSON.parse(header)).sort(), [...names, "__metadata__"].sort());
        const f = new SafetensorsFile(p);
        assert.deepEqual(f.metadata, { clé: "välue" });
        for (const [n, t] of src) assert.deepEqual(f.get(n).toArray(), t.toArray(), n);
        f.close();
      }
    });
  });

  const openFds = () => readdirSync("/proc/self/fd").length;

  test("a sharded checkpoint whose later shard fails to open closes the shards it opened (no leaked fds)", (t) => {
    if (!existsSync("/proc/self/fd")) {
      t.skip("needs /proc/self/fd");
      return;
    }
    const d = dir();
    tidy(() => {
      const src = new Map<string, torch.Tensor>();
      for (let i = 0; i < 4; i++) src.set(`w${i}`, torch.full([32], i));
      torch.saveShardedSafetensors(d, src, 200);
    });
    const idx = JSON.parse(readFileSync(join(d, "model.safetensors.index.json"), "utf8"));
    const shards = [...new Set(Object.values(idx.weight_map) as string[])].sort();
    assert.ok(shards.length >= 3);
    const last = shards[shards.length - 1] as string;
    const before = openFds();
    // the last shard corrupt: the first ones are open by the time it fails
    writeFileSync(join(d, last), Buffer.alloc(3));
    for (let i = 0; i < 5; i++)
      assert.throws(() => SafetensorsCheckpoint.open(d), /too small for a safetensors header/);
    assert.equal(openFds(), before, "file descriptors leaked");
    // a shard missing, and an index naming a tensor its shard lacks: same
    rmSync(join(d, last));
    assert.throws(() => SafetensorsCheckpoint.open(d), /file not found/);
    idx.weight_map.w0 = shards[1];
    writeFileSync(join(d, "model.safetensors.index.json"), JSON.stringify(idx));
    writeFileSync(join(d, last), readFileSync(join(d, shards[0] as string)));
    assert.throws(() => SafetensorsCheckpoint.open(d), /but that file has no such tensor/);
    assert.equal(openFds(), before, "file descriptors leaked");
  });

  test("saving over an older checkpoint replaces it whole: single over sharded, sharded over single or sharded", () => {
    const d = dir();
    const ckpt = (n: number, v: number) => new Map(Array.from({ length: n }, (_, i) => [`w${i}`, torch.full([32], v)]));
    const load = () => {
      const ck = SafetensorsCheckpoint.open(d);
      try {
        return Object.fromEntries(ck.keys().map((k) => [k, ck.get(k).toArray()[0]]));
      } finally {
        ck.close();
      }
    };
    const files = () => readdirSync(d).sort();
    tidy(() => {
      // sharded (3 files), then a single file over it: the index and its shards go, the new weights load
      torch.saveShardedSafetensors(d, ckpt(3, 1), 200);
      assert.deepEqual(files(), [
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
        "model.safetensors.index.json",
      ]);
      torch.saveShardedSafetensors(d, ckpt(2, 2), 10_000);
      assert.deepEqual(files(), ["model.safetensors"]);
      assert.deepEqual(load(), { w0: 2, w1: 2 });
      // sharded over the single file
      torch.saveShardedSafetensors(d, ckpt(2, 3), 200);
      assert.deepEqual(files(), [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
      ]);
      assert.deepEqual(load(), { w0: 3, w1: 3 });
      // sharded over sharded with other shard names: the old shards go
      torch.saveShardedSafetensors(d, ckpt(3, 4), 200);
      assert.deepEqual(files(), [
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
        "model.safetensors.index.json",
      ]);
      assert.deepEqual(load(), { w0: 4, w1: 4, w2: 4 });
      // saveSafetensors to <dir>/model.safetensors is a single-file checkpoint save too
      saveSafetensors(join(d, "model.safetensors"), ckpt(1, 5));
      assert.deepEqual(files(), ["model.safetensors"]);
      assert.deepEqual(load(), { w0: 5 });
      // other files in the folder are left alone, and an index cannot make us delete outside the folder
      const outside = join(dir(), "keep.safetensors");
      writeFileSync(outside, "x");
      writeFileSync(join(d, "config.json"), "{}");
      writeFileSync(join(d, "adapter.safetensors"), "y");
      writeFileSync(
        join(d, "model.safetensors.index.json"),
        JSON.stringify({ weight_map: { a: outside, b: "../keep.safetensors", c: "config.json" } }),
      );
      torch.saveShardedSafetensors(d, ckpt(1, 6));
      assert.deepEqual(files(), ["adapter.safetensors", "config.json", "model.safetensors"]);
      assert.ok(existsSync(outside));
      assert.deepEqual(load(), { w0: 6 });
    });
    assert.deepEqual(
      readdirSync(d).filter((n) => n.includes(".tmp-")),
      [],
      "no temporary files left behind",
    );
  });

  test("a failed sharded save leaves the previous checkpoint as it was", () => {
    const d = dir();
    tidy(() => {
      torch.saveShardedSafetensors(d, new Map([["a", torch.full([64], 1)]]));
      const before = readFileSync(join(d, "model.safetensors"));
      const disposed = tensor([1]);
      disposed.dispose();
      const big = new Map<string, torch.Tensor>([
        ["a", torch.full([64], 2)],
        ["b", torch.full([64], 2)],
        ["z", disposed],
      ]);
      assert.throws(() => torch.saveShardedSafetensors(d, big, 300), /used after dispose/);
      assert.deepEqual(readdirSync(d), ["model.safetensors"]);
      assert.ok(readFileSync(join(d, "model.safetensors")).equals(before));
    });
  });

  const f32 = Buffer.alloc(16);
  const malformed: [string, Buffer, RegExp][] = [
    ["too small", Buffer.alloc(4), /too small for a safetensors header/],
    [
      "header over the cap",
      rawFile({}, Buffer.alloc(0), { headerLen: 200_000_000n }),
      /above the 100000000-byte limit/,
    ],
    [
      "header past end of file",
      rawFile({}, Buffer.alloc(0), { headerLen: 1000n }),
      /header declares 1000 bytes but the file has only/,
    ],
    ["header not JSON", rawFile("{not json", Buffer.alloc(0)), /header is not valid JSON/],
    ["header not an object", rawFile("[1,2]", Buffer.alloc(0)), /header is not a JSON object/],
    ["entry not an object", rawFile({ w: 5 }, f32), /tensor "w": entry is not an object/],
    [
      "unknown dtype",
      rawFile({ w: { dtype: "F8", shape: [4], data_offsets: [0, 16] } }, f32),
      /tensor "w": unknown dtype "F8"/,
    ],
    [
      "bad shape",
      rawFile({ w: { dtype: "F32", shape: [-4], data_offsets: [0, 16] } }, f32),
      /tensor "w": shape \[-4\] is not a list of non-negative integers/,
    ],
    [
      "bad offsets",
      rawFile({ w: { dtype: "F32", shape: [4], data_offsets: [0] } }, f32),
      /tensor "w": data_offsets \[0\] is not a pair/,
    ],
    [
      "reversed offsets",
      rawFile({ w: { dtype: "F32", shape: [0], data_offsets: [8, 4] } }, f32),
      /end before they begin/,
    ],
    [
      "offsets past the data",
      rawFile({ w: { dtype: "F32", shape: [8], data_offsets: [0, 32] } }, f32),
      /run past the end of the data \(16 bytes\)/,
    ],
    [
      "byte count ≠ shape × dtype",
      rawFile({ w: { dtype: "F32", shape: [3], data_offsets: [0, 16] } }, f32),
      /tensor "w": declares 16 bytes but shape \[3\] of F32 needs 12/,
    ],
    [
      "overlapping tensors",
      rawFile(
        {
          a: { dtype: "F32", shape: [3], data_offsets: [0, 12] },
          b: { dtype: "F32", shape: [2], data_offsets: [8, 16] },
        },
        f32,
      ),
      /tensors "a" and "b" overlap/,
    ],
    [
      "overlap across an empty tensor between them",
      rawFile(
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          e: { dtype: "F32", shape: [0], data_offsets: [4, 4] },
          b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
        },
        f32,
      ),
      /tensors "a" and "b" overlap \(bytes 0-8 and 4-12\)/,
    ],

    [
      "metadata not strings",
      rawFile({ __metadata__: { a: 1 } }, Buffer.alloc(0)),
      /"__metadata__" value "a" is not a string/,
    ],
  ];
  for (const [name, bytes, re] of malformed) {
    test(`rejects a malformed file: ${name}`, () => {
      const p = join(dir(), "bad.safetensors");
      writeFileSync(p, bytes);
      assert.throws(
        () => new SafetensorsFile(p),
        (e: Error) => e instanceof CheckpointError && re.test(e.message) && e.message.startsWith(p),
      );
    });
  }
});
