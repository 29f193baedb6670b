/**
 * Who may call a function (AUTH): a table of checks, one per mode, and a
 * request passes if any passes. It runs before the handler reads, parses or
 * decodes anything and before the model is touched, so a refusal costs a
 * header lookup, one SHA-256 or one RS256 signature check. The functions
 * framework (and the local server, which copies it) has read the body into
 * memory before any of this runs; that cost is bounded by the platform's
 * 32 MB request cap, not by us.
 */
import type { AuthMode, Config } from '../config';
import { ApiError, retryAfter } from '../errors';
import { type HttpHandler, type HttpRequest, sendError } from '../http';
import { API_KEY_HEADER, apiKeyMatcher } from './apiKey';
import { createKeySet } from './keySet';
import { type RateLimiter, rateLimited } from './rateLimit';
import { TOKEN_KINDS, type TokenKind, type TokenVerifier, unverifiedIssuer, verifyToken } from './tokens';

export const APP_CHECK_HEADER = 'X-Firebase-AppCheck';

/** The credentials a request carries, read from its headers once. */
interface Credentials {
  apiKey?: string;
  bearer?: { token: string; issuer: string | undefined };
  appCheck?: string;
  /** Scheduler tokens are accepted for warmups only. */
  warmup: boolean;
  /** What a Google OIDC token's audience must be: this function's own URL. */
  host: string | undefined;
}

/**
 * `absent`: the request carries no credential of this kind; `rejected`: it
 * carries a wrong one; `unavailable`: it could not be checked now (the token's
 * keys could not be fetched).
 */
type CheckOutcome =
  | { result: 'passed'; callerId?: string }
  | { result: 'absent' }
  | { result: 'rejected'; reason: string }
  | { result: 'unavailable'; reason: string };

interface CallerCheck {
  check: (credentials: Credentials) => CheckOutcome | Promise<CheckOutcome>;
  /** How the 401 names what to send. */
  wants: string;
  /** The WWW-Authenticate challenge of a 401, when this mode has one. */
  challenge?: string;
  /** Checks of a bearer token: one of them must claim a token that is sent, or it is refused. */
  bearer?: true;
  /** What a 403 from this check says, and how it reads to remove.bg's clients. */
  refusal: string;
  removeBgTitle: string;
}

const BEARER_CHALLENGE = 'Bearer realm="detourage"';

function verifierFor(kind: TokenKind, subject: string, config: Config, now: () => number): TokenVerifier {
  const url = new URL(TOKEN_KINDS[kind].jwksUrl);
  const jwksUrl = config.keyServerForTests === undefined ? url.href : `${config.keyServerForTests}${url.pathname}`;
  return { kind, subject, now, keys: createKeySet(jwksUrl, { now }) };
}

/** A token check's outcome, with the caller that `name` reads from the verified claims. */
async function tokenOutcome(token: string, verifier: TokenVerifier, name: (claims: Record<string, unknown>) => string | undefined): Promise<CheckOutcome> {
  const outcome = await verifyToken(token, verifier);
  if (outcome.result !== 'passed') return outcome;
  const callerId = name(outcome.payload);
  return callerId === undefined ? { result: 'passed' } : { result: 'passed', callerId };
}

type CheckFactories = Record<AuthMode, (config: Config, now: () => number) => CallerCheck>;

const CHECKS: CheckFactories = {
  // A request that reaches the code has passed Cloud Run's IAM check: only a
  // deployment without --allow-unauthenticated may use this mode (scripts/deploy.sh enforces it).
  iam: () => ({
    check: () => ({ result: 'passed' }),
    wants: "a Google identity token Cloud Run's IAM accepts",
    refusal: 'Cloud Run refused the identity token.',
    removeBgTitle: 'Forbidden',
  }),
  'api-key': (config) => {
    const match = apiKeyMatcher(config.apiKeys);
    return {
      wants: `an API key in the ${API_KEY_HEADER} header`,
      challenge: `ApiKey realm="detourage", header="${API_KEY_HEADER}"`,
      refusal: `The ${API_KEY_HEADER} header holds no valid key.`,
      removeBgTitle: 'API Key invalid',
      check: ({ apiKey }) => {
        if (apiKey === undefined) return { result: 'absent' };
        const keyId = match(apiKey);
        return keyId === undefined ? { result: 'rejected', reason: `no key in API_KEY_HASHES matches the ${API_KEY_HEADER} header` } : { result: 'passed', callerId: `api-key:${keyId}` };
      },
    };
  },
  firebase: (config, now) => {
    const projectId = config.firebaseProjectId ?? '';
    const verifier = verifierFor('firebase', projectId, config, now);
    const issuer = TOKEN_KINDS.firebase.issuer?.(projectId);
    return {
      wants: 'a Firebase ID token in Authorization: Bearer',
      challenge: BEARER_CHALLENGE,
      bearer: true,
      refusal: 'The Authorization header holds no valid Firebase ID token of this project.',
      removeBgTitle: 'ID token invalid',
      check: ({ bearer }) =>
        // A token of another issuer is another check's to judge; its keys are not fetched for nothing.
        bearer === undefined || bearer.issuer !== issuer
          ? { result: 'absent' }
          : tokenOutcome(bearer.token, verifier, (claims) => `firebase:${String(claims.sub)}`),
    };
  },
  'app-check': (config, now) => {
    const verifier = verifierFor('app-check', config.firebaseProjectId ?? '', config, now);
    return {
      wants: `an App Check token in the ${APP_CHECK_HEADER} header`,
      refusal: `The ${APP_CHECK_HEADER} header holds no valid App Check token of this project.`,
      removeBgTitle: 'App Check token invalid',
      check: ({ appCheck }) => (appCheck === undefined ? { result: 'absent' } : tokenOutcome(appCheck, verifier, (claims) => `app-check:${String(claims.sub)}`)),
    };
  },
};

/**
 * Cloud Scheduler's warmups on a public function: a Google-signed OIDC token
 * for this function's URL, of an account in WARMUP_SERVICE_ACCOUNTS. It lets
 * in warmups only, and names no caller (the schedule is not rate limited).
 */
function schedulerCheck(config: Config, now: () => number): CallerCheck {
  // An array, so that `includes` is an exact match and never a substring test.
  const issuers: readonly string[] = [TOKEN_KINDS['google-oidc'].issuer?.('') ?? []].flat();
  // One key set for every audience: the keys are Google's, whatever the URL; the subject is each request's Host.
  const verifier = verifierFor('google-oidc', '', config, now);
  return {
    wants: 'a Google OIDC token of a warmup service account',
    challenge: BEARER_CHALLENGE,
    bearer: true,
    refusal: 'The Authorization header holds no valid token of a warmup service account for this function.',
    removeBgTitle: 'Token invalid',
    check: async ({ bearer, warmup, host }) => {
      if (bearer === undefined || bearer.issuer === undefined || !issuers.includes(bearer.issuer)) return { result: 'absent' };
      if (!warmup) return { result: 'rejected', reason: 'a Google OIDC token is accepted for warmups only' };
      const outcome = await verifyToken(bearer.token, { ...verifier, subject: host ?? '' });
      if (outcome.result !== 'passed') return outcome;
      const email = String(outcome.payload.email).toLowerCase();
      return config.warmupServiceAccounts.includes(email)
        ? { result: 'passed' }
        : { result: 'rejected', reason: `${email} is not in WARMUP_SERVICE_ACCOUNTS` };
    },
  };
}

function readCredentials(request: HttpRequest, warmup: boolean): Credentials {
  const header = (name: string): string | undefined => {
    const value = request.get(name)?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const credentials: Credentials = { warmup, host: header('host') };
  const apiKey = header(API_KEY_HEADER);
  if (apiKey !== undefined) credentials.apiKey = apiKey;
  const appCheck = header(APP_CHECK_HEADER);
  if (appCheck !== undefined) credentials.appCheck = appCheck;
  const token = /^Bearer\s+(\S+)$/i.exec(header('authorization') ?? '')?.[1];
  if (token !== undefined) credentials.bearer = { token, issuer: unverifiedIssuer(token) };
  return credentials;
}

function unauthenticated(checks: readonly CallerCheck[]): ApiError {
  const challenges = [...new Set(checks.flatMap((entry) => (entry.challenge === undefined ? [] : [entry.challenge])))];
  const wants = checks.map((entry) => entry.wants);
  return new ApiError('unauthenticated', `This function needs ${wants.length > 1 ? `one of: ${wants.join('; ')}` : wants[0]}.`, {
    headers: challenges.length > 0 ? { 'WWW-Authenticate': challenges.join(', ') } : {},
    removeBg: { title: 'API Key missing', code: 'auth_failed' },
  });
}

function forbidden(rejected: readonly { check: CallerCheck; reason: string }[]): ApiError {
  const bearer = rejected.some(({ check }) => check.bearer === true);
  return new ApiError('forbidden', [...new Set(rejected.map(({ check }) => check.refusal))].join(' '), {
    // RFC 6750: a bearer token that was refused is named in the challenge.
    headers: bearer ? { 'WWW-Authenticate': `${BEARER_CHALLENGE}, error="invalid_token"` } : {},
    // Why, for the on-call engineer: which claim or key, never the credential itself.
    cause: rejected.map(({ reason }) => reason).join('; '),
    logCause: true,
    removeBg: { title: rejected[0]?.check.removeBgTitle ?? 'Forbidden', code: 'auth_failed' },
  });
}

function keysUnavailable(reasons: readonly string[]): ApiError {
  return new ApiError('auth_unavailable', 'The keys that sign this credential cannot be fetched from Google right now; retry shortly.', {
    headers: retryAfter(),
    cause: reasons.join('; '),
    logCause: true,
  });
}

/** Who was let in: the caller's id when a credential named one ("api-key:frontend", "firebase:UID"). */
export interface Caller {
  id?: string;
}

/** Returns the caller; throws 401, 403 or 503 otherwise. `warmup`: the request only warms the model. */
export type CallerGate = (request: HttpRequest, warmup: boolean) => Promise<Caller>;

export function createCallerGate(config: Config, now: () => number = Date.now): CallerGate {
  const checks = config.auth.map((mode) => CHECKS[mode](config, now));
  const warmupChecks = config.warmupServiceAccounts.length > 0 ? [...checks, schedulerCheck(config, now)] : checks;
  return async (request, warmup) => {
    const credentials = readCredentials(request, warmup);
    const active = warmup ? warmupChecks : checks;
    // Every check runs (each is a header lookup or a signature check), so that with iam,api-key a key still names its caller.
    const outcomes = await Promise.all(active.map(async (check) => ({ check, outcome: await check.check(credentials) })));
    const passed = outcomes.flatMap(({ outcome }) => (outcome.result === 'passed' ? [outcome] : []));
    if (passed.length > 0) {
      const callerId = passed.find((outcome) => outcome.callerId !== undefined)?.callerId;
      return callerId === undefined ? {} : { id: callerId };
    }
    const rejected = outcomes.flatMap(({ check, outcome }) => (outcome.result === 'rejected' ? [{ check, reason: outcome.reason }] : []));
    const unavailable = outcomes.flatMap(({ outcome }) => (outcome.result === 'unavailable' ? [outcome.reason] : []));
    // A bearer token no check claimed was issued by someone this function does not trust.
    const bearerChecks = active.filter((check) => check.bearer === true);
    if (credentials.bearer !== undefined && bearerChecks.length > 0 && outcomes.every(({ check, outcome }) => check.bearer !== true || outcome.result === 'absent')) {
      // The issuer is the caller's text: cut short, so that a stranger cannot fill the log.
      const issuer = JSON.stringify(credentials.bearer.issuer?.slice(0, 100) ?? 'nobody');
      rejected.push(...bearerChecks.map((check) => ({ check, reason: `a bearer token issued by ${issuer}` })));
    }
    // A credential that could not be checked may be valid: the honest answer is to retry, not that it is wrong.
    if (unavailable.length > 0) throw keysUnavailable(unavailable);
    // A wrong credential is 403; no credential at all is 401, which says what to send.
    if (rejected.length > 0) throw forbidden(rejected);
    throw unauthenticated(active);
  };
}

/**
 * Runs the gate first; the caller's id goes to the request's log line, never
 * its credential. A caller that a credential names is counted against
 * RATE_LIMIT_PER_MINUTE, and every answer to it, errors included, carries the
 * X-RateLimit-* headers.
 */
export function withCallerCheck(gate: CallerGate, limiter: RateLimiter | undefined, isWarmup: (request: HttpRequest) => boolean, handler: HttpHandler): HttpHandler {
  return async (request, response) => {
    try {
      const caller = await gate(request, isWarmup(request));
      if (caller.id !== undefined) {
        response.locals.caller = caller.id;
        const decision = limiter?.take(caller.id);
        if (decision) response.set(decision.headers);
        if (decision && !decision.allowed) throw rateLimited(decision.limit, decision.headers);
      }
    } catch (error) {
      sendError(response, error);
      return;
    }
    await handler(request, response);
  };
}
