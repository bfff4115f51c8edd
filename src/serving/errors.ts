// API errors in OpenAI's shape: `{error: {message, type, param, code}}` with the HTTP status that goes with them. Every
// refusal the server makes is one of these, so clients (the official `openai` package raises BadRequestError,
// AuthenticationError, RateLimitError … from the status) and the web page show one clear message.
import { TinyllavaError } from "../errors.js";

export type ApiErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error";

export class ApiError extends TinyllavaError {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = "invalid_request_error",
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): { error: { message: string; type: ApiErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 about one request field. */
export function badParam(param: string, message: string, code = "invalid_value"): ApiError {
  return new ApiError(400, message, "invalid_request_error", code, param);
}
