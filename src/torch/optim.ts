// Optimisers are libtorch's own (torch::optim::AdamW / SGD); this file holds their TS face, gradient clipping and
// learning-rate schedules.
import { native as N } from "./native.js";
import { Tensor } from "./tensor.js";

export interface ParamGroup {
  params: Tensor[];
  lr?: number;
  weightDecay?: number;
}

function groupsOf(params: Tensor[] | ParamGroup[]): ParamGroup[] {
  if (params.length === 0) return [];
  return params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : (params as ParamGroup[]);
}

export abstract class Optimizer {
  protected id: number;
  readonly paramGroups: ParamGroup[];
  /** base learning rate of each group (what schedules scale) */
  readonly baseLrs: number[];

  protected constructor(id: number, groups: ParamGroup[], defaultLr: number) {
    this.id = id;
    this.paramGroups = groups;
    this.baseLrs = groups.map((g) => g.lr ?? defaultLr);
  }
  step(): void {
    N.optStep(this.id);
  }
  /** Drops every parameter's gradient (set_to_none=True, PyTorch's default). */
  zeroGrad(): void {
    N.optZeroGrad(this.id);
  }
  getLr(group = 0): number {
    return N.optGetLr(this.id, group);
  }
  setLr(lr: number, group?: number): void {
    if (group !== undefined) N.optSetLr(this.id, group, lr);
    else for (let i = 0; i < this.paramGroups.length; i++) N.optSetLr(this.id, i, lr);
  }
  dispose(): void {
    if (this.id >= 0) N.optFree(this.id);
    this.id = -1;
  }
}

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  amsgrad?: boolean;
}

/** AdamW with decoupled weight decay (Loshchilov & Hutter), PyTorch's defaults: lr 1e-3, betas (0.9, 0.999),
 * eps 1e-8, weight_decay 1e-2. Parameter groups may override lr and weightDecay. */
export class AdamW extends Optimizer {
  constructor(params: Tensor[] | ParamGroup[], o: AdamWOptions = {}) {
    const groups = groupsOf(params);
    const lr = o.lr ?? 1e-3;
    const id = N.adamw(
      groups.map((g) => ({ params: g.params.map((p) => p.handle), lr: g.lr, weightDecay: g.weightDecay })),
      {
        lr,
        beta1: o.betas?.[0] ?? 0.9,
        beta2: o.betas?.[1] ?? 0.999,
        eps: o.eps ?? 1e-8,
        weightDecay: o.weightDecay ?? 1e-2,
        amsgrad: o.amsgrad ?? false,
      },
    );
    super(id, groups, lr);
  }
  /** Per-parameter state (step, exp_avg, exp_avg_sq) in group order; null where no step was taken yet. */
  stateDict(): ({ step: number; expAvg: Tensor; expAvgSq: Tensor } | null)[] {
    return N.adamwGetState(this.id).map((s) =>
      s === null ? null : { step: s[0], expAvg: new Tensor(s[1]), expAvgSq: new Tensor(s[2]) },
    );
  }
  loadStateDict(state: ({ step: number; expAvg: Tensor; expAvgSq: Tensor } | null)[]): void {
    N.adamwSetState(
      this.id,
      state.map((s) => (s === null ? null : [s.step, s.expAvg.handle, s.expAvgSq.handle])),
    );
  }
}

export interface SGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

export class SGD extends Optimizer {
  constructor(params: Tensor[] | ParamGroup[], o: SGDOptions) {
    const groups = groupsOf(params);
    const id = N.sgd(
      groups.map((g) => ({ params: g.params.map((p) => p.handle), lr: g.lr, weightDecay: g.weightDecay })),
      {
        lr: o.lr,
        momentum: o.momentum ?? 0,
        dampening: o.dampening ?? 0,
        weightDecay: o.weightDecay ?? 0,
        nesterov: o.nesterov ?? false,
      },
    );
    super(id, groups, o.lr);
  }
}

/** Scales all gradients together so their global norm is at most maxNorm; returns the norm before clipping
 * (torch.nn.utils.clip_grad_norm_). */
export function clipGradNorm(params: Tensor[], maxNorm: number, normType = 2): number {
  return N.clipGradNorm(
    params.map((p) => p.handle),
    maxNorm,
    normType,
  );
}

export type ScheduleKind = "cosine" | "linear" | "constant";

/** The multiplier of the base lr at `step` (0-based) out of `totalSteps`, as transformers' get_scheduler does:
 * linear warm-up for `warmupSteps`, then cosine to 0, linear to 0, or constant. */
export function lrMultiplier(kind: ScheduleKind, step: number, totalSteps: number, warmupSteps: number): number {
  if (step < warmupSteps) return step / Math.max(1, warmupSteps);
  if (kind === "constant") return 1;
  const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  if (kind === "linear") return Math.max(0, 1 - progress);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/** Drives an optimiser's learning rates: call `step()` after each optimiser step. `warmupRatio` (Factory's
 * warmup_ratio) is turned into ceil(ratio × totalSteps) warm-up steps, as transformers does. */
export class LRScheduler {
  private current = 0;
  readonly warmupSteps: number;
  constructor(
    readonly optimizer: Optimizer,
    readonly kind: ScheduleKind,
    readonly totalSteps: number,
    opts: { warmupSteps?: number; warmupRatio?: number } = {},
  ) {
    this.warmupSteps = opts.warmupSteps ?? Math.ceil((opts.warmupRatio ?? 0) * totalSteps);
    this.apply();
  }
  private apply(): void {
    const m = lrMultiplier(this.kind, this.current, this.totalSteps, this.warmupSteps);
    this.optimizer.baseLrs.forEach((base, i) => {
      this.optimizer.setLr(base * m, i);
    });
  }
  step(): void {
    this.current++;
    this.apply();
  }
  get lastStep(): number {
    return this.current;
  }
  /** Jumps to a step (resume). */
  setStep(step: number): void {
    this.current = step;
    this.apply();
  }
  getLr(): number[] {
    return this.optimizer.paramGroups.map((_, i) => this.optimizer.getLr(i));
  }
}
