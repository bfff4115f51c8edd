// Memory stays flat: after 1,000 warm-up iterations, 10,000 more forward+backward+AdamW steps of a small MLP grow
// RSS by less than 50 MB, and no tensor handle leaks.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Linear, Module } from "../../src/nn/index.js";
import * as torch from "../../src/torch/index.js";
import { AdamW, tidy } from "../../src/torch/index.js";

class MLP extends Module {
  fc1 = this.registerModule("fc1", new Linear(32, 64));
  fc2 = this.registerModule("fc2", new Linear(64, 32));
  forward(x: torch.Tensor): torch.Tensor {
    return this.fc2.forward(this.fc1.forward(x).gelu());
  }
}

test("RSS stays flat over 10,000 training steps", () => {
  torch.manualSeed(0);
  const model = new MLP();
  const opt = new AdamW(model.parameters(), { lr: 1e-3 });
  const g = new torch.Generator(0);
  const x = torch.randn([16, 32], { generator: g });
  const y = torch.randn([16, 32], { generator: g });
  const step = () =>
    tidy(() => {
      const loss = model.forward(x).sub(y).square().mean();
      loss.backward();
      opt.step();
      opt.zeroGrad();
      return loss.item();
    });
  let first = 0;
  for (let i = 0; i < 1000; i++) {
    const l = step();
    if (i === 0) first = l;
  }
  const liveBefore = torch.memoryStats().liveTensors;
  const rssBefore = process.memoryUsage().rss;
  let last = 0;
  for (let i = 0; i < 10000; i++) last = step();
  const rssAfter = process.memoryUsage().rss;
  const growthMb = (rssAfter - rssBefore) / 2 ** 20;
  console.log(
    `memory: RSS ${(rssBefore / 2 ** 20).toFixed(1)} MB -> ${(rssAfter / 2 ** 20).toFixed(1)} MB (+${growthMb.toFixed(2)} MB) over 10,000 steps; loss ${first.toFixed(4)} -> ${last.toFixed(4)}`,
  );
  assert.ok(growthMb < 50, `RSS grew ${growthMb.toFixed(1)} MB`);
  assert.equal(torch.memoryStats().liveTensors, liveBefore, "tensor handles leaked");
  assert.ok(last < first, "training made progress");
  opt.dispose();
  model.dispose();
});
