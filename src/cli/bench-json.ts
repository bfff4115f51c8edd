// What the benchmark commands share: rounding for their JSON, and reading the JSON line a reference process prints.

export const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** The last line of `out` that starts with "{", parsed (the reference scripts print one JSON line; logs go around it). */
export function lastJson(out: string): Record<string, unknown> {
  const line = out
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .pop();
  if (!line) throw new Error(`no JSON in the output:\n${out.slice(-2000)}`);
  return JSON.parse(line);
}
