/**
 * RATE_LIMIT_PER_MINUTE per API key id, in fixed windows aligned to the
 * minute, counted in this instance only: the true bound across a deployment
 * is the limit times the instances running (at most --max-instances). A global
 * quota belongs in front of the functions (API Gateway), not in them.
 */
import { ApiError } from '../errors';

export interface RateDecision {
  allowed: boolean;
  limit: number;
  /** remove.bg's X-RateLimit-* headers and, when refused, Retry-After. */
  headers: Record<string, string>;
}

export interface RateLimiter {
  /** Counts one request of `keyId` and says whether it is within the limit. */
  take(keyId: string): RateDecision;
}

const WINDOW_MS = 60_000;

/** `now` is injected so that tests can move the clock. */
export function createRateLimiter(limit: number, now: () => number = Date.now): RateLimiter {
  // One entry per key id that has called; key ids come from API_KEY_HASHES, so this stays small.
  const windows = new Map<string, { start: number; count: number }>();
  return {
    take(keyId) {
      const at = now();
      const start = at - (at % WINDOW_MS);
      const current = windows.get(keyId);
      const window = current?.start === start ? current : { start, count: 0 };
      windows.set(keyId, window);
      const allowed = window.count < limit;
      if (allowed) window.count += 1;
      const resetMs = start + WINDOW_MS;
      const headers: Record<string, string> = {
        'X-RateLimit-Limit': String(limit),
        'X-RateLimit-Remaining': String(limit - window.count),
        'X-RateLimit-Reset': String(Math.ceil(resetMs / 1000)),
      };
      if (!allowed) headers['Retry-After'] = String(Math.max(1, Math.ceil((resetMs - at) / 1000)));
      return { allowed, limit, headers };
    },
  };
}

export function rateLimited(limit: number, headers: Record<string, string>): ApiError {
  return new ApiError('rate_limited', `This API key has made its ${limit} requests of this minute on this instance; retry after Retry-After seconds.`, {
    headers,
  });
}
