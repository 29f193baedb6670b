/**
 * API keys as remove.bg's clients send them, in X-Api-Key. A key is 32 random
 * bytes (256 bits, far past guessing) behind a prefix that secret scanners and
 * people recognise. The service only ever holds SHA-256 hashes: a fast hash is
 * enough because the key itself is random, not a password.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ApiKeyHash } from '../config';

export const API_KEY_HEADER = 'X-Api-Key';
export const API_KEY_PREFIX = 'dtr_';
const API_KEY_BYTES = 32;

export function createApiKey(): string {
  return `${API_KEY_PREFIX}${randomBytes(API_KEY_BYTES).toString('base64url')}`;
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** The line `detourage keys create` tells the operator to add to API_KEY_HASHES. */
export function apiKeyHashEntry(id: string, key: string): string {
  return `${id}:${hashApiKey(key)}`;
}

/**
 * Finds the id of the key whose hash matches. Comparing hashes of fixed length
 * with timingSafeEqual, and always against every entry, keeps the time taken
 * independent of how much of a guess was right and of which entry matched.
 */
export function apiKeyMatcher(keys: readonly ApiKeyHash[]): (presented: string) => string | undefined {
  const known = keys.map((key) => ({ id: key.id, digest: Buffer.from(key.sha256, 'hex') }));
  return (presented) => {
    const digest = createHash('sha256').update(presented, 'utf8').digest();
    let matched: string | undefined;
    for (const key of known) {
      if (timingSafeEqual(digest, key.digest) && matched === undefined) matched = key.id;
    }
    return matched;
  };
}
