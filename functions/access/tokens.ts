/**
 * The Google-signed tokens a caller may present, one table entry per kind:
 * where its keys are, whom it must be issued by and for, and what its claims
 * must hold. Facts from firebase-admin's token verifiers and google-auth-library
 * (docs in ../shared/docs/platform.md, copied in docs/access.md).
 *
 * Verification is jose's jwtVerify with RS256 only: `alg: none`, HS256 signed
 * with a public key as the secret, and any other algorithm never reach a key.
 */
import { decodeJwt, errors, jwtVerify, type JWTPayload } from 'jose';
import { KeysUnavailable, type KeySet } from './keySet';

export type TokenKind = 'firebase' | 'app-check' | 'google-oidc';

export interface TokenKindEntry {
  /** The key set's URL; a test key server replaces its origin. */
  jwksUrl: string;
  /** Absent when the issuer is checked in `claims` instead. */
  issuer?: (projectId: string) => string | string[];
  /** For app-check the audience is a list that must include this one; absent when `claims` checks it. */
  audience?: (projectId: string) => string;
  /** The longest life a token of this kind has; also makes jose refuse an `iat` in the future. */
  maxTokenAge: string;
  /** Checks jose does not: returns what is wrong, or undefined. */
  claims: (payload: JWTPayload, nowSeconds: number, subject: string) => string | undefined;
}

/** Google's and Firebase's clocks against ours. */
export const CLOCK_TOLERANCE_SECONDS = 30;

const nonEmptySub = (payload: JWTPayload): string | undefined =>
  typeof payload.sub === 'string' && payload.sub !== '' && payload.sub.length <= 128 ? undefined : 'sub must be a non-empty string of at most 128 characters';

export const TOKEN_KINDS: Readonly<Record<TokenKind, TokenKindEntry>> = {
  firebase: {
    jwksUrl: 'https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com',
    issuer: (projectId) => `https://securetoken.google.com/${projectId}`,
    audience: (projectId) => projectId,
    // ID tokens live an hour.
    maxTokenAge: '1h',
    claims: (payload, nowSeconds) => {
      const authTime = payload.auth_time;
      if (typeof authTime !== 'number' || authTime > nowSeconds + CLOCK_TOLERANCE_SECONDS) return 'auth_time must be a time in the past';
      return nonEmptySub(payload);
    },
  },
  'app-check': {
    jwksUrl: 'https://firebaseappcheck.googleapis.com/v1/jwks',
    // The issuer ends in the project number, which the service is not told: `claims` checks the prefix, as firebase-admin does.
    audience: (projectId) => `projects/${projectId}`,
    // App Check lets a token live up to 7 days.
    maxTokenAge: '7d',
    claims: (payload) =>
      typeof payload.iss === 'string' && payload.iss.startsWith('https://firebaseappcheck.googleapis.com/') ? nonEmptySub(payload) : 'iss is not Firebase App Check',
  },
  'google-oidc': {
    jwksUrl: 'https://www.googleapis.com/oauth2/v3/certs',
    // google-auth-library accepts both spellings.
    issuer: () => ['https://accounts.google.com', 'accounts.google.com'],
    maxTokenAge: '1h',
    // The subject is the Host the request came to: Cloud Run routes by Host, so a request that reached
    // this function names one of its URLs, and the scheduler's audience is that URL (a path allowed).
    claims: (payload, _now, host) => {
      if (!audienceNamesHost(payload.aud, host)) return `aud is not a URL of this function (https://${host})`;
      return typeof payload.email === 'string' && payload.email_verified === true ? undefined : 'email must be present and verified';
    },
  },
};

function audienceNamesHost(audience: JWTPayload['aud'], host: string): boolean {
  if (typeof audience !== 'string') return false;
  try {
    const url = new URL(audience);
    return url.protocol === 'https:' && url.host === host.toLowerCase();
  } catch {
    return false;
  }
}

export type TokenOutcome =
  | { result: 'passed'; payload: JWTPayload }
  | { result: 'rejected'; reason: string }
  | { result: 'unavailable'; reason: string };

export interface TokenVerifier {
  kind: TokenKind;
  keys: KeySet;
  /** The project (or, for google-oidc, the request's Host) that issuer and audience are checked against. */
  subject: string;
  now: () => number;
}

/** The token's issuer, unverified: lets a check leave alone a token meant for another check without fetching keys. */
export function unverifiedIssuer(token: string): string | undefined {
  try {
    const { iss } = decodeJwt(token);
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

export async function verifyToken(token: string, verifier: TokenVerifier): Promise<TokenOutcome> {
  const entry = TOKEN_KINDS[verifier.kind];
  const issuer = entry.issuer?.(verifier.subject);
  const audience = entry.audience?.(verifier.subject);
  const currentDate = new Date(verifier.now());
  try {
    const { payload, protectedHeader } = await jwtVerify(token, verifier.keys.getKey, {
      algorithms: ['RS256'],
      ...(issuer === undefined ? {} : { issuer }),
      ...(audience === undefined ? {} : { audience }),
      requiredClaims: ['exp', 'iat', 'sub', 'iss', 'aud'],
      maxTokenAge: entry.maxTokenAge,
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      currentDate,
    });
    if (typeof protectedHeader.kid !== 'string') return { result: 'rejected', reason: 'no kid in the header' };
    const wrong = entry.claims(payload, Math.floor(currentDate.getTime() / 1000), verifier.subject);
    return wrong === undefined ? { result: 'passed', payload } : { result: 'rejected', reason: wrong };
  } catch (error) {
    if (error instanceof KeysUnavailable) return { result: 'unavailable', reason: error.message };
    // jose's messages name the claim or rule that failed, never the token's contents.
    if (error instanceof errors.JOSEError) return { result: 'rejected', reason: `${error.code}: ${error.message}` };
    return { result: 'rejected', reason: error instanceof Error ? error.message : String(error) };
  }
}
