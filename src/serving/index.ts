// Serving: an OpenAI-compatible chat-completions server with images (streaming included) and a web demo page.
export { ApiError } from "./errors.js";
export { checkImageBytes, DEFAULT_IMAGE_LIMITS, type ImageLimits, resolveImage } from "./images.js";
export type { JobEvent, JobSpec, ModelInfo, ModelSpec } from "./jobs.js";
export { PAGE_HTML } from "./page.js";
export { promptOf } from "./prompt.js";
export { batchKey, type ChatRequest, type GenerationParams, parseChatRequest } from "./protocol.js";
export { Scheduler, type SchedulerOptions } from "./scheduler.js";
export { DeltaTrimmer, type RunningServer, type ServeOptions, startServer, workerError } from "./server.js";
