/**
 * Every failure a caller can cause or observe is an ApiError; `toErrorResponse`
 * is the one place that turns any thrown value into a status and a JSON body.
 */
export type ErrorCode =
  | 'bad_request'
  | 'missing_image'
  | 'invalid_parameter'
  | 'unauthenticated'
  | 'forbidden'
  | 'method_not_allowed'
  | 'payload_too_large'
  | 'image_too_large'
  | 'unsupported_media_type'
  | 'corrupt_image'
  | 'no_foreground'
  | 'output_not_encodable'
  | 'rate_limited'
  | 'model_unavailable'
  | 'auth_unavailable'
  | 'overloaded'
  | 'timeout'
  | 'client_closed'
  | 'not_found'
  | 'internal';

export const STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = {
  bad_request: 400,
  missing_image: 400,
  invalid_parameter: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  image_too_large: 413,
  unsupported_media_type: 415,
  corrupt_image: 422,
  no_foreground: 422,
  output_not_encodable: 422,
  rate_limited: 429,
  internal: 500,
  model_unavailable: 503,
  // The signing keys of a token could not be fetched: retrying is right, a 401 or 403 would not be.
  auth_unavailable: 503,
  overloaded: 503,
  timeout: 504,
  // nginx's convention for a client that left; nobody is there to read it.
  client_closed: 499,
};

/** remove.bg's own error entry, so that its client libraries read our refusals as theirs. */
export interface RemoveBgError {
  title: string;
  code: string;
}

export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly removeBg: RemoveBgError | undefined;
  /** The cause goes to the request's log line: set where it says what the message cannot. */
  readonly logCause: boolean;
  /** The request parameter that was refused, for `invalid_parameter`: a client can point at its field. */
  readonly parameter: string | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { headers?: Record<string, string>; cause?: unknown; logCause?: boolean; removeBg?: RemoveBgError; parameter?: string } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'ApiError';
    this.code = code;
    this.status = STATUS_BY_CODE[code];
    this.headers = options.headers ?? {};
    this.logCause = options.logCause ?? false;
    this.removeBg = options.removeBg;
    this.parameter = options.parameter;
  }
}

/**
 * What a request's log line keeps of an error besides its code: an unexpected
 * error's stack, or the cause of an ApiError that asked for it. Other causes
 * stay out: a parser's message may quote the request body.
 */
export function causeForLog(error: unknown): { cause?: string } {
  if (!(error instanceof ApiError)) return { cause: String((error as Error)?.stack ?? error) };
  if (!error.logCause || error.cause === undefined) return {};
  if (typeof error.cause === 'string') return { cause: error.cause };
  return { cause: error.cause instanceof Error ? error.cause.message : JSON.stringify(error.cause) };
}

export const RETRY_AFTER_SECONDS = 5;

/** The one way to say when to come back: whole seconds, at least 1. */
export function retryAfter(seconds: number = RETRY_AFTER_SECONDS): { 'Retry-After': string } {
  return { 'Retry-After': String(Math.max(1, Math.ceil(seconds))) };
}

export function modelUnavailable(message: string, cause?: unknown): ApiError {
  return new ApiError('model_unavailable', message, { headers: retryAfter(), cause });
}

/** 413 for bytes over a limit: `what` is "The upload", a parameter's name, or the image a URL gave. */
export function payloadTooLarge(what: string, maxBytes: number): ApiError {
  return new ApiError('payload_too_large', `${what} is larger than ${maxBytes} bytes.`);
}

/**
 * The one way to refuse a request parameter, wherever it is checked (its
 * parser, the body reader, the URL fetcher, the model registry): the answer
 * names it in `error.parameter`, so a client can point at its own field.
 */
export function invalidParameter(parameter: string, message: string, cause?: unknown): ApiError {
  return new ApiError('invalid_parameter', message, { parameter, cause });
}

export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: { error: { code: ErrorCode; message: string; parameter?: string }; errors?: RemoveBgError[] };
}

/** Unknown errors become a generic 500: their messages and stacks stay in the logs. */
export function toErrorResponse(error: unknown): ErrorResponse {
  if (error instanceof ApiError) {
    return {
      status: error.status,
      headers: { ...error.headers },
      body: {
        error: { code: error.code, message: error.message, ...(error.parameter === undefined ? {} : { parameter: error.parameter }) },
        ...(error.removeBg ? { errors: [{ ...error.removeBg }] } : {}),
      },
    };
  }
  return {
    status: 500,
    headers: {},
    body: { error: { code: 'internal', message: 'Internal error while processing the request.' } },
  };
}
