import type { Request, Response } from '@google-cloud/functions-framework';
import { ApiError, toErrorResponse } from './errors';

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
  if (status >= 500 && !(error instanceof ApiError)) console.error(error);
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
 * Races `work` against the request's deadline and the client leaving. The
 * caller answers as soon as either happens; `work` sees the aborted signal and
 * stops at its next stage boundary.
 */
export async function withRequestDeadline<T>(
  response: HttpResponse,
  timeoutMs: number,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new ApiError('timeout', `The request took longer than ${timeoutMs} ms and was stopped.`)),
    timeoutMs,
  );
  const onClose = (): void => {
    if (!response.writableFinished) controller.abort(new ApiError('client_closed', 'The client closed the connection.'));
  };
  response.on('close', onClose);
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
    response.off('close', onClose);
  }
}
