// Text out of token ids while they are generated: incremental decoding that never splits a multi-byte character,
// and stop strings that end generation without ever emitting part of themselves.

/** What the decoder needs from a tokenizer. */
export interface Decoder {
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
}

/** Decodes a growing list of ids into text deltas. A token that ends inside a UTF-8 sequence (byte-level BPE splits
 * characters across tokens) decodes to U+FFFD; such text is held back until the character completes. Works on a
 * sliding window (prefix … read offsets, as text-generation-inference does) so each step decodes a few tokens, and
 * tokenizers that strip a leading space see the same context on both sides. */
export class IncrementalDecoder {
  private ids: number[] = [];
  private prefix = 0;
  private read = 0;
  private emitted = "";
  /** consecutive pushes whose text ends in U+FFFD */
  private broken = 0;

  constructor(
    private readonly tok: Decoder,
    private readonly skipSpecialTokens = true,
  ) {}

  /** Adds one id; returns the text it completes ("" while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const opts = { skipSpecialTokens: this.skipSpecialTokens };
    const before = this.tok.decode(this.ids.slice(this.prefix, this.read), opts);
    const now = this.tok.decode(this.ids.slice(this.prefix), opts);
    // a character is at most 4 bytes (4 byte tokens): an U+FFFD still there after that is invalid UTF-8 from the
    // model, which the full decode shows too, so it is released
    this.broken = now.endsWith("\uFFFD") ? this.broken + 1 : 0;
    const incomplete = this.broken > 0 && this.broken < 4;
    if (now.length > before.length && !incomplete && now.startsWith(before)) {
      const delta = now.slice(before.length);
      this.prefix = this.read;
      this.read = this.ids.length;
      this.emitted += delta;
      return delta;
    }
    if (!now.startsWith(before)) {
      // the window's text changed shape (rare normalisation effects): fall back to the full decode
      const full = this.tok.decode(this.ids, opts);
      if (!incomplete && full.startsWith(this.emitted)) {
        const delta = full.slice(this.emitted.length);
        this.prefix = Math.max(0, this.ids.length - 1);
        this.read = this.ids.length;
        this.emitted = full;
        return delta;
      }
    }
    return "";
  }

  /** Whatever is still held back (an incomplete character at the end of generation), as the full decode has it. */
  flush(): string {
    const full = this.tok.decode(this.ids, { skipSpecialTokens: this.skipSpecialTokens });
    const delta = full.startsWith(this.emitted) ? full.slice(this.emitted.length) : "";
    this.emitted += delta;
    return delta;
  }

  get text(): string {
    return this.emitted;
  }
}

/** Finds stop strings in generated text. `safeLength` says how much of the text can be shown without risking a
 * partial stop string at its end. */
export class StopMatcher {
  constructor(readonly stops: string[]) {}

  /** Index of the earliest stop string in `text` (searching from `from`), or −1. */
  find(text: string, from = 0): number {
    let best = -1;
    for (const s of this.stops) {
      if (s.length === 0) continue;
      const i = text.indexOf(s, Math.max(0, from - s.length + 1));
      if (i >= 0 && (best < 0 || i < best)) best = i;
    }
    return best;
  }

  /** Length of the prefix of `text` that cannot be the start of a stop string. */
  safeLength(text: string): number {
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, text.length); k > hold; k--) {
        if (text.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    return text.length - hold;
  }
}
