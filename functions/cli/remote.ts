/**
 * The CLI's client of a deployed removeBackground (--endpoint): each image is
 * POSTed as the HTTP API's multipart `image_file`, the run's parameters beside
 * it as form fields, and the answer decides what happens next:
 *
 *   200                 the result
 *   429, 503            the fleet is full: sent again after Retry-After
 *                       (seconds or an HTTP date), never sooner, with jitter;
 *                       the request window halves (concurrency.ts)
 *   other 5xx, no answer, an answer cut short
 *                       sent again after a jittered backoff, --retries times
 *   401, 403, 404, 405  about the caller or the URL, never the image: the run stops
 *   other 4xx           final for this input, reported with the API's code and message
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { UsageError } from './args';
import type { Remover } from './batch';
import { type Answer, INITIAL_WINDOW, requestWindow, WINDOW_CEILING } from './concurrency';
import type { Credentials } from './credentials';

export interface EndpointSettings {
  url: URL;
  /** The API's parameters by name, as the command line gave them: sent as they are, for the API's parser to read. */
  parameters: Readonly<Record<string, string>>;
  credentials: Credentials;
  /** Times a 5xx other than 503, a connection that fails or an answer cut short is retried. */
  retries: number;
  /** --concurrency N; undefined: the adaptive window. */
  concurrency: number | undefined;
}

/** Time and chance, injected so that tests of the retries never wait and never depend on luck. */
export interface RetryClock {
  now(): number;
  /** In [0, 1). */
  random(): number;
  /** Rejects with the signal's reason if it aborts first. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const REAL_CLOCK: RetryClock = {
  now: () => Date.now(),
  random: () => Math.random(),
  sleep: (ms, signal) => sleep(ms, undefined, { signal }),
};

export const DEFAULT_RETRIES = 3;
/**
 * A full fleet clears as removals finish and instances start: waiting is
 * worth more tries than for a failure, and each wait is at least what the
 * server asked (5 s from detourage itself).
 */
export const OVERLOAD_RETRIES = 8;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CEILING_MS = 30_000;
/** A Retry-After further off than this is waited for this long; the next answer says again. */
const RETRY_AFTER_CEILING_MS = 5 * 60_000;
/** Each wait is stretched by up to this fraction at random, so that inputs refused together do not all come back together. */
const JITTER = 0.5;
/** Above the deployed function's 60 s timeout: an answer later than this is not coming. */
const REQUEST_TIMEOUT_MS = 120_000;
/** Our results; never `application/json`, which would ask for remove.bg's base64 answer. */
const ACCEPT = 'image/png, image/jpeg, image/webp, application/zip';
const RUN_STOPPING_STATUSES: ReadonlySet<number> = new Set([401, 403, 404, 405]);

/** An endpoint's refusal, or no answer at all (no `status`); `code` and `parameter` are the API's when it answered in its own shape. */
export class EndpointError extends Error {
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly parameter: string | undefined;

  constructor(message: string, details: { status?: number | undefined; code?: string | undefined; parameter?: string | undefined } = {}) {
    super(message);
    this.name = 'EndpointError';
    this.status = details.status;
    this.code = details.code;
    this.parameter = details.parameter;
  }

  /** `503 overloaded`, `HTTP 502`, or the connection's failure. */
  get summary(): string {
    if (this.status === undefined) return this.message;
    return this.code === undefined ? `HTTP ${this.status}` : `${this.status} ${this.code}`;
  }

  /** `413 payload_too_large: The upload is…`; a message not from the API names its status already. */
  get full(): string {
    return this.code === undefined ? this.message : `${this.summary}: ${this.message}`;
  }
}

/** The credential could not be had (gcloud failed): every request would be refused without it, so the run stops. */
class NoCredentials extends Error {
  constructor(cause: unknown) {
    super(`no credentials to send: ${(cause as Error).message}`, { cause });
    this.name = 'NoCredentials';
  }
}

/** `Retry-After` as milliseconds from `now`: delay-seconds or an HTTP date (RFC 9110 §10.2.3); undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now: number): number | undefined {
  const text = header?.trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * The wait before retry number `retry` (1 for the first): the exponential
 * backoff, or Retry-After when that is longer, stretched by the jitter.
 */
export function retryDelayMs(retry: number, retryAfter: number | undefined, random: number): number {
  const backoff = Math.min(BACKOFF_CEILING_MS, BACKOFF_BASE_MS * 2 ** (retry - 1));
  const floor = Math.max(backoff, Math.min(retryAfter ?? 0, RETRY_AFTER_CEILING_MS));
  return Math.round(floor * (1 + JITTER * random));
}

type Outcome =
  | { kind: 'ok'; body: Buffer }
  /** 429 or 503. */
  | { kind: 'overloaded'; error: EndpointError; retryAfter: number | undefined }
  /** Worth another try: another 5xx, or no whole answer. */
  | { kind: 'failed'; error: EndpointError }
  | { kind: 'final'; error: EndpointError };

const ANSWERS: Record<Outcome['kind'], Answer> = { ok: 'ok', overloaded: 'overloaded', failed: 'other', final: 'other' };

/** The API's `{"error":{"code","message","parameter"}}`, or, from Cloud Run or a proxy in front, its status and the start of its page. */
async function refusal(response: Response): Promise<EndpointError> {
  const text = await response.text();
  let entry: { code?: unknown; message?: unknown; parameter?: unknown } | undefined;
  try {
    entry = (JSON.parse(text) as { error?: typeof entry }).error;
  } catch {
    entry = undefined;
  }
  if (typeof entry?.message === 'string') {
    return new EndpointError(entry.message, {
      status: response.status,
      code: typeof entry.code === 'string' ? entry.code : undefined,
      parameter: typeof entry.parameter === 'string' ? entry.parameter : undefined,
    });
  }
  const page = text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 200);
  return new EndpointError(`HTTP ${response.status} ${response.statusText}${page ? `: ${page}` : ''}`.trim(), { status: response.status });
}

/** What fetch says when the connection fails or the answer stops half-way, as one reason. */
function noAnswer(error: unknown): EndpointError {
  if ((error as { name?: unknown }).name === 'TimeoutError') return new EndpointError(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`);
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : String((error as Error).message);
  return new EndpointError(`no whole answer from the endpoint (${detail})`);
}

function classify(response: Response, error: EndpointError, now: number): Outcome {
  const { status } = response;
  if (status === 429 || status === 503) return { kind: 'overloaded', error, retryAfter: retryAfterMs(response.headers.get('retry-after'), now) };
  if (status >= 500) return { kind: 'failed', error };
  return { kind: 'final', error };
}

/** One request: the credential's headers are asked for each time, so that a token is fresh. */
async function send(settings: EndpointSettings, image: Buffer, name: string, clock: RetryClock, signal: AbortSignal): Promise<Outcome> {
  const headers = await settings.credentials().catch((error: unknown) => {
    throw new NoCredentials(error);
  });
  const form = new FormData();
  for (const [parameter, value] of Object.entries(settings.parameters)) form.append(parameter, value);
  form.append('image_file', new Blob([image]), name);
  try {
    const response = await fetch(settings.url, {
      method: 'POST',
      body: form,
      headers: { Accept: ACCEPT, ...headers },
      signal: AbortSignal.any([signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]),
    });
    if (response.ok) return { kind: 'ok', body: Buffer.from(await response.arrayBuffer()) };
    return classify(response, await refusal(response), clock.now());
  } catch (error) {
    if (signal.aborted) throw error;
    return { kind: 'failed', error: noAnswer(error) };
  }
}

function gaveUp(error: EndpointError, attempts: number): EndpointError {
  return new EndpointError(`${error.message} (gave up after ${attempts} attempts)`, { status: error.status, code: error.code, parameter: error.parameter });
}

const STOP_ADVICE: Readonly<Record<number, string>> = {
  401: 'give --api-key KEY (or DETOURAGE_API_KEY), or --id-token',
  403: 'check the key, or that your account may invoke the function (roles/run.invoker)',
  404: "check --endpoint: it is the removeBackground function's URL",
  405: "check --endpoint: it is the removeBackground function's URL",
};

export function endpointRemover(settings: EndpointSettings, clock: RetryClock = REAL_CLOCK): Remover {
  const window = requestWindow(
    settings.concurrency === undefined
      ? { initial: INITIAL_WINDOW, ceiling: WINDOW_CEILING, adaptive: true }
      : { initial: settings.concurrency, ceiling: settings.concurrency, adaptive: false },
  );
  return {
    // Inputs wait for a place in the window, and between tries, holding only their bytes.
    parallel: window.ceiling,
    async remove(image, { name, retrying, signal }) {
      let overloads = 0;
      let failures = 0;
      for (let attempt = 1; ; attempt += 1) {
        const permit = await window.acquire(signal);
        let outcome: Outcome | undefined;
        try {
          outcome = await send(settings, image, name, clock, signal);
        } finally {
          permit.release(outcome === undefined ? 'other' : ANSWERS[outcome.kind]);
        }
        if (outcome.kind === 'ok') return outcome.body;
        if (outcome.kind === 'final') throw outcome.error;
        const retries = outcome.kind === 'overloaded' ? (overloads += 1) : (failures += 1);
        if (retries > (outcome.kind === 'overloaded' ? OVERLOAD_RETRIES : settings.retries)) throw gaveUp(outcome.error, attempt);
        const delay = retryDelayMs(overloads + failures, outcome.kind === 'overloaded' ? outcome.retryAfter : undefined, clock.random());
        retrying(`${outcome.error.summary}, again in ${(delay / 1000).toFixed(1)} s (attempt ${attempt + 1})`);
        await clock.sleep(delay, signal);
      }
    },
    stopsRun(error) {
      if (error instanceof NoCredentials) return error.message;
      if (!(error instanceof EndpointError) || error.status === undefined || !RUN_STOPPING_STATUSES.has(error.status)) return undefined;
      return `${settings.url.href} answered ${error.full} No other input could pass either: ${STOP_ADVICE[error.status]!}.`;
    },
  };
}

/** Where a request may not go: an http:// URL carries a credential in clear, so only to this machine. */
export function parseEndpoint(text: string, withCredentials: boolean): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--endpoint ${JSON.stringify(text)} is not a URL: give the function's https:// URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new UsageError(`--endpoint must be an http(s) URL, got ${url.protocol}`);
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  if (url.protocol === 'http:' && withCredentials && !loopback) {
    throw new UsageError('--endpoint is http://: a credential would cross the network in clear text; use the https:// URL');
  }
  return url;
}
