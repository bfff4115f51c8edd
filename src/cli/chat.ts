// `tinyllava chat`: a multi-turn REPL about an image with streamed answers. /image PATH starts a new conversation
// about another image (as Factory's demo), /reset forgets the conversation, /exit (or Ctrl-D) leaves; Ctrl-C stops
// the answer being generated.
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { askOptions, type GenerateFlags, loadPipeline, printStream } from "./generate.js";
import { UsageError } from "./options.js";

export async function chatCommand(o: Partial<GenerateFlags> & { model: string }): Promise<void> {
  const ask = askOptions(o);
  if (o.image !== undefined && !existsSync(o.image)) throw new UsageError(`--image ${o.image}: file not found`);
  const pipe = loadPipeline(o);
  const session = pipe.chat(o.image ?? null);
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
  const say = (s: string) => process.stdout.write(s);
  say(
    `tinyllava chat (${pipe.template} template${o.image ? `, image ${o.image}` : ", no image"}); /image PATH, /reset, /exit\n`,
  );
  let current: AbortController | null = null;
  rl.on("SIGINT", () => {
    if (current) current.abort();
    else rl.close();
  });
  rl.setPrompt("> ");
  rl.prompt();
  try {
    // the line iterator buffers input that arrives while an answer is generated (piped stdin)
    for await (const line of rl) {
      const text = line.trim();
      if (text === "") {
        rl.prompt();
        continue;
      }
      if (text === "/exit" || text === "/quit") break;
      if (text === "/reset") {
        session.reset();
        say("(conversation cleared)\n");
        rl.prompt();
        continue;
      }
      if (text.startsWith("/image")) {
        const path = text.slice("/image".length).trim();
        if (!path) say("usage: /image PATH\n");
        else if (!existsSync(path)) say(`error: ${path}: file not found\n`);
        else {
          session.setImage(path);
          say(`(new conversation about ${path})\n`);
        }
        rl.prompt();
        continue;
      }
      if (text.startsWith("/")) {
        say(`unknown command ${text.split(/\s/)[0]}; commands: /image PATH, /reset, /exit\n`);
        rl.prompt();
        continue;
      }
      current = new AbortController();
      try {
        await printStream(session.send(text, { ...ask, signal: current.signal }), say);
      } catch (e) {
        say(`\nerror: ${(e as Error).message}\n`);
      } finally {
        current = null;
      }
      rl.prompt();
    }
  } finally {
    rl.close();
    pipe.dispose();
  }
}
