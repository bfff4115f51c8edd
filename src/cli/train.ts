// `tinyllava train`: TinyLLaVA's recipes from a YAML/JSON recipe file and/or flags named as Factory's arguments
// (kebab-case). A progress bar (step, loss, lr, samples/s, ETA) on a terminal, one line per logged step otherwise.
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import { ARGUMENTS, kebab, readRecipe, resolveArguments } from "../training/args.js";
import { type StepLog, train } from "../training/trainer.js";

/** Adds one flag per training argument to the command (values validated later, with the argument's name). */
export function addTrainFlags(cmd: Command): Command {
  cmd.option("--config <file>", "recipe file (YAML or JSON) with these arguments; flags override it");
  cmd.option("--resume [checkpoint]", "resume from a checkpoint folder (default: the newest in --output-dir)");
  for (const s of ARGUMENTS) {
    const flag = s.kind === "bool" ? `--${kebab(s.name)} [value]` : `--${kebab(s.name)} <value>`;
    const kinds = typeof s.kind === "object" ? ` (${s.kind.oneOf.join(" | ")})` : "";
    const dflt = s.dflt === null ? "" : ` [default: ${JSON.stringify(s.dflt)}]`;
    cmd.option(flag, `${s.help}${kinds}${dflt}`);
  }
  return cmd;
}

function fmtEta(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s` : `${Math.round(s)}s`;
}

export async function trainCommand(o: Record<string, unknown>): Promise<void> {
  const flags: Record<string, unknown> = {};
  for (const s of ARGUMENTS) {
    const camel = s.name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    let v = o[camel];
    if (v === undefined) continue;
    if (s.kind === "bool" && v === true) v = "true";
    flags[s.name] = v;
  }
  if (o.resume !== undefined) flags.resume_from_checkpoint = o.resume === true ? "last" : o.resume;
  const recipePath = typeof o.config === "string" ? o.config : undefined;
  const args = resolveArguments({ recipe: recipePath ? readRecipe(recipePath) : undefined, recipePath, flags });
  const tty = process.stderr.isTTY && args.progress;
  let bar: SingleBar | null = null;
  const onStep = (l: StepLog, total: number) => {
    const eta = ((total - l.step) * l.elapsed_s) / Math.max(1, l.step);
    const payload = {
      loss: l.loss.toFixed(4),
      lr: l.lr.toExponential(2),
      sps: l.samples_per_s.toFixed(2),
      eta: fmtEta(eta),
    };
    if (tty) {
      if (!bar) {
        bar = new SingleBar(
          {
            format: "train [{bar}] {value}/{total} | loss {loss} | lr {lr} | {sps} samples/s | ETA {eta}",
            stream: process.stderr,
            hideCursor: true,
          },
          undefined,
        );
        bar.start(total, 0, payload);
      }
      bar.update(l.step, payload);
    } else if (l.step % args.logging_steps === 0 || l.step === total) {
      console.error(
        `step ${l.step}/${total}  loss ${payload.loss}  lr ${payload.lr}  ${payload.sps} samples/s  ETA ${payload.eta}`,
      );
    }
  };
  const r = await train(args, {
    onStep,
    onMessage: (m) => {
      if (bar) (bar as SingleBar).stop();
      bar = null;
      console.error(m);
    },
  });
  (bar as SingleBar | null)?.stop();
  console.log(
    JSON.stringify({
      output_dir: r.outputDir,
      steps: r.steps,
      final_loss: r.finalLoss,
      skipped_samples: r.skipped,
      files: r.files,
    }),
  );
  r.model.dispose();
}
