/**
 * CORS for the origins of CORS_ORIGINS, answered by the functions themselves:
 * a browser's preflight carries no credentials, so it is answered before the
 * caller check, and Cloud Run's IAM would refuse it (hence the public
 * deployment with AUTH=api-key). Every answer to an allowed origin, errors
 * included, carries the headers so that the page can read a 401 or a 413.
 */
import type { HttpHandler } from '../http';

const ALLOWED_HEADERS = ['X-Api-Key', 'Authorization', 'X-Firebase-AppCheck', 'Content-Type'];
const EXPOSED_HEADERS = [
  'X-Width',
  'X-Height',
  'X-Foreground-Top',
  'X-Foreground-Left',
  'X-Foreground-Width',
  'X-Foreground-Height',
  'X-Type',
  'X-Model',
  'X-Quality',
  'X-Request-Id',
  'Retry-After',
  'Server-Timing',
  'X-RateLimit-Limit',
  'X-RateLimit-Remaining',
  'X-RateLimit-Reset',
];
/** Short enough that an origin taken off the list stops working within minutes; Chrome caps it at 2 h anyway. */
const PREFLIGHT_MAX_AGE_SECONDS = 600;

/** Leaves `handler` as it is when no origin is configured: then no CORS header is ever sent. */
export function withCors(origins: readonly string[], methods: readonly string[], handler: HttpHandler): HttpHandler {
  if (origins.length === 0) return handler;
  return async (request, response) => {
    // Answers differ by Origin, so a cache between must key on it.
    response.vary('Origin');
    const origin = request.get('origin');
    const allowed = origin !== undefined && origins.includes(origin);
    if (request.method === 'OPTIONS' && request.get('access-control-request-method') !== undefined) {
      // A disallowed origin gets a bare 204: with no CORS headers the browser refuses the real request itself.
      if (allowed) {
        response.set({
          'Access-Control-Allow-Origin': origin,
          'Access-Control-Allow-Methods': methods.join(', '),
          'Access-Control-Allow-Headers': ALLOWED_HEADERS.join(', '),
          'Access-Control-Max-Age': String(PREFLIGHT_MAX_AGE_SECONDS),
        });
      }
      response.status(204).end();
      return;
    }
    if (allowed) {
      response.set({ 'Access-Control-Allow-Origin': origin, 'Access-Control-Expose-Headers': EXPOSED_HEADERS.join(', ') });
    }
    await handler(request, response);
  };
}
