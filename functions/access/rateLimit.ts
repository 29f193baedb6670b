/**
 * RATE_LIMIT_PER_MINUTE per caller (API key id, Firebase user, App Check app), in fixed windows aligned to the
 * minute, counted in this instance only: the true bound across a deployment
 * is the limit times the instances running (at most --max-instances). A global
 * quota belongs in front of the functions (API Gateway), not in them.
 */
import { ApiError, retryAfter } from '../errors';

export interface RateDecision {
  allowed: boolean;
  limit: number;
  /** remove.bg's X-RateLimit-* headers and, when refused, Retry-After. */
  headers: Record<string, string>;
}

export interface RateLimiter {
  /** Counts one request of `callerId` and says whether it is within the limit. */
  take(callerId: string): RateDecision;
}

const WINDOW_MS = 60_000;
/**
 * Callers counted in one minute on one instance. Firebase users can be many
 * (anonymous sign-in makes them free), so the table is bounded: past this, a
 * caller not yet counted this minute is refused until the next one. An
 * instance serves far fewer removals a minute than this.
 */
export const MAX_CALLERS_PER_WINDOW = 50_000;

/** `now` is injected so that tests can move the clock. */
export function createRateLimiter(limit: number, now: () => number = Date.now, maxCallers = MAX_CALLERS_PER_WINDOW): RateLimiter {
  // Only the current minute's counts: a new minute starts an empty table, so it never outgrows maxCallers.
  let windowStart = Number.NEGATIVE_INFINITY;
  let counts = new Map<string, number>();
  return {
    take(callerId) {
      const at = now();
      const start = at - (at % WINDOW_MS);
      if (start !== windowStart) {
        windowStart = start;
        counts = new Map();
      }
      const count = counts.get(callerId);
      const full = count === undefined && counts.size >= maxCallers;
      const allowed = !full && (count ?? 0) < limit;
      const counted = allowed ? (count ?? 0) + 1 : (count ?? limit);
      if (allowed) counts.set(callerId, counted);
      const resetMs = start + WINDOW_MS;
      const headers: Record<string, string> = {
        'X-RateLimit-Limit': String(limit),
        'X-RateLimit-Remaining': String(limit - counted),
        'X-RateLimit-Reset': String(Math.ceil(resetMs / 1000)),
      };
      if (!allowed) Object.assign(headers, retryAfter((resetMs - at) / 1000));
      return { allowed, limit, headers };
    },
  };
}

export function rateLimited(limit: number, headers: Record<string, string>): ApiError {
  return new ApiError('rate_limited', `This caller has made its ${limit} requests of this minute on this instance; retry after Retry-After seconds.`, {
    headers,
  });
}
