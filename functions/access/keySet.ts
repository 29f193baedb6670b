/**
 * Google's signing keys for one kind of token, fetched from its JWKS URL and
 * cached. jose's createRemoteJWKSet is not enough here: once its cache is
 * older than 10 minutes it must refetch before verifying, so a key endpoint
 * that is down turns every request into a failure. This set instead:
 * - serves from the keys it holds, however old, while a refresh runs behind;
 * - refetches at once on an unknown `kid` (Google rotates keys), but at most
 *   once per cooldown, so tokens with made-up kids cannot make it hammer Google;
 * - throws KeysUnavailable only when it holds no usable key at all, or the kid
 *   is unknown and the refetch failed: the caller answers 503, never 500.
 */
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';

export class KeysUnavailable extends Error {
  constructor(url: string, cause: unknown) {
    super(`no usable signing keys from ${url}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'KeysUnavailable';
  }
}

export interface KeySetOptions {
  /** Injected by tests to move the clock. */
  now?: () => number;
  fetchTimeoutMs?: number;
  /** Fewest milliseconds between two fetches that an unknown kid or a failure may cause. */
  cooldownMs?: number;
}

/** Google's JWKS answers are a few kilobytes; a larger one is not a key set. */
const MAX_JWKS_BYTES = 256 * 1024;
/** Used when the answer has no Cache-Control max-age, and the bounds put on one that has. */
const DEFAULT_MAX_AGE_MS = 60 * 60 * 1000;
const MIN_MAX_AGE_MS = 60 * 1000;
const MAX_MAX_AGE_MS = 24 * 60 * 60 * 1000;

function maxAgeMs(cacheControl: string | null): number {
  const seconds = /(?:^|,)\s*max-age=(\d+)/i.exec(cacheControl ?? '')?.[1];
  if (seconds === undefined) return DEFAULT_MAX_AGE_MS;
  return Math.min(MAX_MAX_AGE_MS, Math.max(MIN_MAX_AGE_MS, Number(seconds) * 1000));
}

async function fetchKeySet(url: string, timeoutMs: number): Promise<{ jwks: JSONWebKeySet; maxAgeMs: number }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error', headers: { accept: 'application/json' } });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const length = Number(response.headers.get('content-length') ?? 0);
  if (length > MAX_JWKS_BYTES) throw new Error(`an answer of ${length} bytes`);
  const text = await response.text();
  if (text.length > MAX_JWKS_BYTES) throw new Error(`an answer of ${text.length} characters`);
  const jwks = JSON.parse(text) as JSONWebKeySet;
  if (!Array.isArray(jwks?.keys) || jwks.keys.length === 0) throw new Error('an answer without keys');
  return { jwks, maxAgeMs: maxAgeMs(response.headers.get('cache-control')) };
}

export interface KeySet {
  /** What jose's jwtVerify takes as its key. */
  getKey: JWTVerifyGetKey;
  /** Fetches now (when no fetch is running); for start-up and tests. */
  refresh(): Promise<void>;
}

export function createKeySet(url: string, options: KeySetOptions = {}): KeySet {
  const now = options.now ?? Date.now;
  const timeoutMs = options.fetchTimeoutMs ?? 5_000;
  const cooldownMs = options.cooldownMs ?? 30_000;
  let local: ReturnType<typeof createLocalJWKSet> | undefined;
  let expiresAt = 0;
  let lastAttemptAt = Number.NEGATIVE_INFINITY;
  let lastFailure: unknown;
  let pending: Promise<void> | undefined;

  // One fetch at a time: every caller that needs it waits for the same one.
  const refresh = (): Promise<void> => {
    pending ??= (async () => {
      lastAttemptAt = now();
      try {
        const fetched = await fetchKeySet(url, timeoutMs);
        local = createLocalJWKSet(fetched.jwks);
        expiresAt = now() + fetched.maxAgeMs;
        lastFailure = undefined;
      } catch (error) {
        lastFailure = error;
        throw error;
      } finally {
        pending = undefined;
      }
    })();
    return pending;
  };
  const coolingDown = (): boolean => now() - lastAttemptAt < cooldownMs;
  /** Waits for a fetch when allowed; reports whether keys may have changed. */
  const refreshNow = async (): Promise<boolean> => {
    if (pending === undefined && coolingDown()) return false;
    await refresh();
    return true;
  };

  const getKey: JWTVerifyGetKey = async (header, token) => {
    if (local === undefined) {
      try {
        await refreshNow();
      } catch (error) {
        throw new KeysUnavailable(url, error);
      }
      if (local === undefined) throw new KeysUnavailable(url, lastFailure ?? 'not fetched yet');
    } else if (now() >= expiresAt && pending === undefined && !coolingDown()) {
      // Stale keys keep serving; the refresh happens behind, and its failure only means keeping them longer.
      refresh().catch(() => undefined);
    }
    try {
      return await local(header, token);
    } catch (error) {
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error;
      let changed: boolean;
      try {
        changed = await refreshNow();
      } catch (refreshError) {
        // The kid may be a key Google has just started to use: it cannot be told from a forged one now.
        throw new KeysUnavailable(url, refreshError);
      }
      if (!changed) throw error;
      return local(header, token);
    }
  };

  return { getKey, refresh };
}
