// Activation recomputation ("gradient checkpointing") per layer. A stack of layers normally keeps every layer's
// intermediates for backward. With a tape active, each layer runs without autograd and only its input is kept; the
// backward pass then walks the layers in reverse, re-running each one with autograd on its saved input and pushing
// the incoming gradient through it (`out.backward(grad)`), which accumulates the layer's parameter gradients and
// yields the gradient of its input for the layer before. Memory: one [B, L, hidden] tensor per layer plus one
// layer's intermediates, for about one extra forward of compute — the trade transformers' gradient_checkpointing
// makes.
import { enableGrad, isGradEnabled, noGrad } from "../torch/autograd.js";
import { manualSeed, rand } from "../torch/creation.js";
import { keep, tidy } from "../torch/memory.js";
import type { Tensor } from "../torch/tensor.js";

interface Segment {
  /** the stack's input as the graph before it produced it (may need no grad) */
  source: Tensor;
  /** each layer's input, detached */
  inputs: Tensor[];
  run: (i: number, x: Tensor, context: Tensor[]) => Tensor;
  /** the stack's output, as a leaf the rest of the forward builds on */
  leaf: Tensor;
  /** tensors the layers read (cos/sin/mask), kept until backward */
  context: Tensor[];
  /** layer i ran with the global generator seeded base + i: the recomputation draws the same dropout masks */
  seedBase: number;
}

let active: RecomputeTape | null = null;

export class RecomputeTape {
  private segments: Segment[] = [];

  /** Runs `fn` (a forward) with this tape recording the layer stacks that support recomputation. */
  record<T>(fn: () => T): T {
    const prev = active;
    active = this;
    try {
      return fn();
    } finally {
      active = prev;
    }
  }

  /** Backward from `loss` through the recorded stacks (last first), then into whatever produced their inputs. */
  backward(loss: Tensor): void {
    loss.backward();
    for (let s = this.segments.length - 1; s >= 0; s--) {
      const seg = this.segments[s] as Segment;
      let g = seg.leaf.grad;
      if (!g) continue; // nothing after this stack needed its gradient
      g = keep(g.detach());
      for (let i = seg.inputs.length - 1; i >= 0; i--) {
        const x = (seg.inputs[i] as Tensor).detach().requiresGrad_(true);
        manualSeed(seg.seedBase + i);
        const next = tidy(() =>
          enableGrad(() => {
            const out = seg.run(i, x, seg.context);
            out.backward(g as Tensor);
            const gx = x.grad;
            return gx ? keep(gx.detach()) : null;
          }),
        );
        x.dispose();
        g.dispose();
        if (!next) {
          g = null;
          break;
        }
        g = next;
      }
      if (g) {
        if (seg.source.requiresGrad) seg.source.backward(g);
        g.dispose();
      }
    }
    this.dispose();
  }

  dispose(): void {
    for (const seg of this.segments) {
      for (const t of [...seg.inputs, seg.leaf, seg.source, ...seg.context]) t.dispose();
    }
    this.segments = [];
  }

  /** @internal */
  push(seg: Segment): void {
    this.segments.push(seg);
  }
}

/** Runs layers 0…n−1 over `x` (`run(i, h)` = layer i on h). Under an active tape with autograd on, the layers run
 * without autograd and are recomputed in backward; otherwise a plain loop that frees each intermediate input as soon
 * as the next layer has it. `context`: the tensors `run` reads besides its input (cos/sin/mask); `run` must take them
 * from its third argument, which in backward holds copies that outlive the forward's scopes. */
export function runLayers(
  n: number,
  x: Tensor,
  run: (i: number, h: Tensor, context: Tensor[]) => Tensor,
  context: Tensor[] = [],
): Tensor {
  const tape = active;
  const grad = isGradEnabled();
  // with autograd on (training), randomness inside a layer (dropout) is drawn from a per-layer seed, with or without
  // recomputation, so the two give the same training; the recomputation re-seeds the same way
  const seedBase = grad ? tidy(() => Math.floor(rand([1]).item() * 2 ** 30)) : 0;
  if (!tape || !grad) {
    let h = x;
    for (let i = 0; i < n; i++) {
      if (grad) manualSeed(seedBase + i);
      const next = run(i, h, context);
      if (h !== x) h.dispose(); // autograd keeps what backward needs; the JS handle can go
      h = next;
    }
    return h;
  }
  const inputs: Tensor[] = [];
  let h = keep(x.detach());
  noGrad(() => {
    for (let i = 0; i < n; i++) {
      inputs.push(h);
      manualSeed(seedBase + i);
      h = keep(run(i, h, context));
    }
  });
  // the rest of the forward builds its graph on a leaf standing for the stack's output
  const leaf = keep(h.requiresGrad_(true));
  tape.push({
    source: keep(x.view(x.shape)),
    inputs,
    run,
    leaf,
    context: context.map((t) => keep(t.detach())),
    seedBase,
  });
  return leaf;
}
