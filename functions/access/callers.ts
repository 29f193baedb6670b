/**
 * Who may call a function (AUTH): a table of checks, one per mode, and a
 * request passes if any passes. It runs before the handler reads, parses or
 * decodes anything and before the model is touched, so a refusal costs a
 * header lookup and one SHA-256. The functions framework (and the local server,
 * which copies it) has read the body into memory before any of this runs;
 * that cost is bounded by the platform's 32 MB request cap, not by us.
 */
import type { AuthMode, Config } from '../config';
import { ApiError } from '../errors';
import { type HttpHandler, type HttpRequest, sendError } from '../http';
import { API_KEY_HEADER, apiKeyMatcher } from './apiKey';
import { type RateLimiter, rateLimited } from './rateLimit';

/** `absent`: the request carries no credential of this kind; `rejected`: it carries a wrong one. */
type CheckOutcome = { result: 'passed'; keyId?: string } | { result: 'absent' } | { result: 'rejected' };

interface CallerCheck {
  check: (request: HttpRequest) => CheckOutcome;
  /** The WWW-Authenticate challenge of a 401, when this mode has one. */
  challenge?: string;
}

type CheckFactories = Record<AuthMode, (config: Config) => CallerCheck>;

const CHECKS: CheckFactories = {
  // A request that reaches the code has passed Cloud Run's IAM check: only a
  // deployment without --allow-unauthenticated may use this mode (scripts/deploy.sh enforces it).
  iam: () => ({ check: () => ({ result: 'passed' }) }),
  'api-key': (config) => {
    const match = apiKeyMatcher(config.apiKeys);
    return {
      challenge: `ApiKey realm="detourage", header="${API_KEY_HEADER}"`,
      check: (request) => {
        const presented = request.get(API_KEY_HEADER);
        if (presented === undefined || presented === '') return { result: 'absent' };
        const keyId = match(presented);
        return keyId === undefined ? { result: 'rejected' } : { result: 'passed', keyId };
      },
    };
  },
  // firebase and app-check get their rows here; config.ts refuses them until then.
};

function unauthenticated(challenges: string[]): ApiError {
  return new ApiError('unauthenticated', `This function needs an API key in the ${API_KEY_HEADER} header.`, {
    headers: challenges.length > 0 ? { 'WWW-Authenticate': challenges.join(', ') } : {},
    removeBg: { title: 'API Key missing', code: 'auth_failed' },
  });
}

function forbidden(): ApiError {
  return new ApiError('forbidden', `The ${API_KEY_HEADER} header holds no valid key.`, {
    removeBg: { title: 'API Key invalid', code: 'auth_failed' },
  });
}

/** Returns the key id of the caller, when a key let it in; throws 401 or 403 otherwise. */
export type CallerGate = (request: HttpRequest) => { keyId?: string };

export function createCallerGate(config: Config): CallerGate {
  const checks = config.auth.map((mode) => CHECKS[mode](config));
  return (request) => {
    // Every check runs (each is a header lookup at most), so that with iam,api-key a key still names its caller in the log.
    const outcomes = checks.map(({ check }) => check(request));
    const passed = outcomes.filter((outcome) => outcome.result === 'passed');
    if (passed.length > 0) {
      const keyId = passed.find((outcome) => outcome.keyId !== undefined)?.keyId;
      return keyId === undefined ? {} : { keyId };
    }
    // A wrong credential is 403; no credential at all is 401, which says what to send.
    if (outcomes.some((outcome) => outcome.result === 'rejected')) throw forbidden();
    throw unauthenticated(checks.flatMap((entry) => (entry.challenge === undefined ? [] : [entry.challenge])));
  };
}

/**
 * Runs the gate first; the key id goes to the request's log line, never the
 * key. A caller a key let in is counted against RATE_LIMIT_PER_MINUTE, and every
 * answer to it, errors included, carries the X-RateLimit-* headers.
 */
export function withCallerCheck(gate: CallerGate, limiter: RateLimiter | undefined, handler: HttpHandler): HttpHandler {
  return async (request, response) => {
    try {
      const { keyId } = gate(request);
      if (keyId !== undefined) {
        response.locals.apiKeyId = keyId;
        const decision = limiter?.take(keyId);
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
