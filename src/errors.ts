// Typed errors with actionable messages (what file/field/value, what was expected).
export class TinyllavaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}
/** A checkpoint file (safetensors, index, weights) is malformed or does not fit the model. */
export class CheckpointError extends TinyllavaError {}
/** A config.json / preprocessor_config.json / option has a missing or invalid field. */
export class ConfigError extends TinyllavaError {}
/** An image could not be decoded or is unusable. */
export class ImageError extends TinyllavaError {}
/** A tokenizer folder is incomplete or inconsistent. */
export class TokenizerError extends TinyllavaError {}
/** A generation request cannot run (prompt longer than the context, bad options, aborted). */
export class GenerationError extends TinyllavaError {}
