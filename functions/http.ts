import type { Request, Response } from '@google-cloud/functions-framework';
import { randomUUID } from 'node:crypto';
import { ApiError, causeForLog, toErrorResponse } from './errors';
import { type Logger, traceField } from './log';
import { redactedUrl } from './request/redact';

/** The functions framework's request: express's, plus the body it has already read. */
export type HttpRequest = Request;
export type HttpResponse = Response;
export type HttpHandler = (request: HttpRequest, response: HttpResponse) => Promise<void>;

export function sendJson(response: HttpResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.status(status).set({ 'Cache-Control': 'no-store', ...headers }).json(body);
}

/** The one place where a thrown value becomes an HTTP response. */
export function sendError(response: HttpResponse, error: unknown): void {
  const { status, headers, body } = toErrorResponse(error);
  // The request's log line says what went wrong; an unexpected error's own message goes only there.
  response.locals.error = { code: body.error.code, ...causeForLog(error) };
  if (response.headersSent) {
    response.end();
    return;
  }
  sendJson(response, status, body, headers);
}

/** Answers methods outside `allowed` with 405 and an Allow header. */
export function allowMethods(allowed: readonly string[], handler: HttpHandler): HttpHandler {
  return async (request, response) => {
    if (!allowed.includes(request.method)) {
      response.set('Allow', allowed.join(', '));
      sendError(response, new ApiError('method_not_allowed', `${request.method} is not allowed here; use ${allowed.join(' or ')}.`));
      return;
    }
    try {
      await handler(request, response);
    } catch (error) {
      sendError(response, error);
    }
  };
}

/**
 * Races `work` against a deadline and whatever else `watch` may abort it for.
 * The caller goes on as soon as either happens; `work` sees the aborted signal
 * and stops at its next stage boundary. `watch` returns its own undoing.
 */
export async function withDeadline<T>(
  timeoutMs: number,
  work: (signal: AbortSignal) => Promise<T>,
  watch: (controller: AbortController) => () => void = () => () => undefined,
): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new ApiError('timeout', `The request took longer than ${timeoutMs} ms and was stopped.`)),
    timeoutMs,
  );
  const unwatch = watch(controller);
  const aborted = new Promise<never>((_resolve, reject) => {
    controller.signal.addEventListener('abort', () => reject(controller.signal.reason as Error), { once: true });
  });
  const working = work(controller.signal);
  // Whichever loses the race still settles later; neither may become an unhandled rejection.
  aborted.catch(() => undefined);
  working.catch(() => undefined);
  try {
    return await Promise.race([working, aborted]);
  } finally {
    clearTimeout(timer);
    unwatch();
  }
}

/** The request's deadline, and the client leaving. */
export function withRequestDeadline<T>(response: HttpResponse, timeoutMs: number, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  return withDeadline(timeoutMs, work, (controller) => {
    const onClose = (): void => {
      if (!response.writableFinished) controller.abort(new ApiError('client_closed', 'The client closed the connection.'));
    };
    response.on('close', onClose);
    return () => response.off('close', onClose);
  });
}

/**
 * One log line per request, written when the response is finished: method,
 * URL (redacted), status, latency and size in Cloud Logging's httpRequest shape, the
 * trace, a request id (echoed as X-Request-Id), and what the handler left in
 * `response.locals` (the caller's API key id, model, stage timings, the mask
 * cache's hit or miss, the quality passes that ran, error code).
 */
export function withRequestLog(logger: Logger, project: string | undefined, handler: HttpHandler): HttpHandler {
  return async (request, response) => {
    const started = performance.now();
    const offered = request.get('x-request-id');
    const requestId = offered && /^[\w.-]{1,128}$/.test(offered) ? offered : randomUUID();
    response.set('X-Request-Id', requestId);
    response.once('close', () => {
      const status = response.writableFinished ? response.statusCode : 499;
      const severity = status >= 500 ? 'ERROR' : status >= 400 ? 'WARNING' : 'INFO';
      const locals = response.locals as {
        model?: string;
        timings?: Record<string, number>;
        maskCache?: string;
        passes?: string;
        error?: Record<string, string>;
        caller?: string;
      };
      logger.log(severity, `${request.method} ${request.path} ${status}`, {
        httpRequest: {
          requestMethod: request.method,
          // The query may hold a signed image URL or a whole base64 image.
          requestUrl: redactedUrl(request.originalUrl),
          status,
          latency: `${((performance.now() - started) / 1000).toFixed(3)}s`,
          requestSize: String(request.rawBody?.length ?? 0),
          responseSize: String(response.getHeader('content-length') ?? 0),
          userAgent: request.get('user-agent'),
        },
        requestId,
        ...traceField(request.headers, project),
        ...(locals.caller ? { caller: locals.caller } : {}),
        ...(locals.model ? { model: locals.model } : {}),
        ...(locals.timings ? { timingsMs: locals.timings } : {}),
        ...(locals.maskCache ? { maskCache: locals.maskCache } : {}),
        ...(locals.passes ? { passes: locals.passes } : {}),
        ...(locals.error ? { error: locals.error } : {}),
      });
    });
    await handler(request, response);
  };
}
