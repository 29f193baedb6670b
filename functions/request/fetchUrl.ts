import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { ApiError, invalidParameter, payloadTooLarge } from '../errors';
import { classifyAddress } from './addressPolicy';

/** Answers for a hostname, in the order a connection would try them. */
export type Resolver = (hostname: string) => Promise<LookupAddress[]>;

export interface FetchUrlOptions {
  /** The request parameter the URL came in (image_url, bg_image_url); every error message names it. */
  parameterName: string;
  maxBytes: number;
  /** One budget for every hop: name resolution, connecting, headers and body. */
  timeoutMs: number;
  /** The caller's own deadline; when it fires the fetch stops and its reason is thrown. */
  signal?: AbortSignal;
  /** Defaults to dns.lookup; tests inject answers to simulate DNS. */
  resolve?: Resolver;
  /**
   * Test-only: lets loopback addresses (127.0.0.0/8, ::1 and their IPv4-mapped
   * forms) through so tests can fetch from servers on 127.0.0.1. Private,
   * link-local and every other refused range stay refused. Production code
   * never sets it: a loopback fetch would reach this instance's own ports.
   */
  allowLoopbackForTests?: boolean;
}

export const MAX_REDIRECTS = 5;

const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
const ALLOWED_PROTOCOLS: ReadonlySet<string> = new Set(['http:', 'https:']);
// No cookies or credentials are ever sent: the fetch acts for nobody.
const REQUEST_HEADERS = { 'User-Agent': 'detourage', Accept: 'image/*' } as const;

const lookupAll: Resolver = (hostname) =>
  new Promise((resolve, reject) => {
    dnsLookup(hostname, { all: true, verbatim: true }, (error, addresses) => (error ? reject(error) : resolve(addresses)));
  });

/** Builds the errors of one fetch, each naming the parameter and, after a redirect, how far it got. */
class Failures {
  redirects = 0;

  constructor(private readonly options: FetchUrlOptions) {}

  private where(): string {
    if (this.redirects === 0) return '';
    return ` (after ${this.redirects} redirect${this.redirects === 1 ? '' : 's'})`;
  }

  /**
   * The URL or an address it leads to is not allowed. The reason names the
   * rule and never an address: what a name resolves to is the network's
   * business, and telling it would map the network for whoever asks.
   */
  refused(reason: string): ApiError {
    return invalidParameter(this.options.parameterName, `${this.options.parameterName} refused: ${reason}${this.where()}.`);
  }

  /** The URL was allowed but did not give an image. */
  unfetchable(reason: string, cause?: unknown): ApiError {
    return invalidParameter(this.options.parameterName, `${this.options.parameterName} could not be fetched: ${reason}${this.where()}.`, cause);
  }

  tooLarge(): ApiError {
    return payloadTooLarge(`The ${this.options.parameterName} image`, this.options.maxBytes);
  }
}

function parseUrl(text: string, base: URL | undefined, failures: Failures): URL {
  let url: URL;
  try {
    url = new URL(text, base);
  } catch {
    throw failures.refused('it is not a valid URL');
  }
  if (!ALLOWED_PROTOCOLS.has(url.protocol)) throw failures.refused(`the scheme ${url.protocol} is not allowed, only http: and https:`);
  if (url.username !== '' || url.password !== '') throw failures.refused('URLs with credentials (user:password@) are not accepted');
  return url;
}

/** URL keeps IPv6 literals in brackets; DNS, isIP and http.request want them bare. */
function bareHost(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

/** Node's code (ECONNREFUSED, ENOTFOUND…) alone: its messages carry the address it tried. */
function errorCode(error: unknown): string {
  const code = error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code) ? code : 'unknown error';
}

/** Rejects when the signal fires, so a resolver that never answers cannot outlive the deadline. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    // fetchImageUrl tells the caller's abort from its own deadline by the signals, not by this error.
    const onAbort = (): void => reject(new Error('The fetch was aborted.', { cause: signal.reason }));
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Resolves the host once and checks every answer: an attacker's DNS may mix a
 * public answer with a private one, and the connection must not pick the latter.
 */
async function checkedAddress(url: URL, options: FetchUrlOptions, signal: AbortSignal, failures: Failures): Promise<LookupAddress> {
  // The URL parser has already turned every IPv4 spelling (2130706433, 0x7f.1, 0177.0.0.1) into dotted decimal.
  const host = bareHost(url);
  const literalFamily = isIP(host);
  let answers: LookupAddress[];
  if (literalFamily !== 0) {
    answers = [{ address: host, family: literalFamily }];
  } else {
    try {
      answers = await untilAborted((options.resolve ?? lookupAll)(host), signal);
    } catch (error) {
      if (signal.aborted) throw error;
      throw failures.unfetchable(`the host ${host} could not be resolved (${errorCode(error)})`, error);
    }
  }
  if (answers.length === 0) throw failures.unfetchable(`the host ${host} has no address`);
  for (const { address } of answers) {
    const range = classifyAddress(address);
    if (range === 'public' || (range === 'loopback' && options.allowLoopbackForTests === true)) continue;
    throw failures.refused('the host is not a public address');
  }
  return answers[0]!;
}

/** Connects to exactly the address that was checked, so a second DNS answer cannot redirect the socket. */
function pinnedLookup(pinned: LookupAddress): LookupFunction {
  return (_hostname, lookupOptions, callback) => {
    if (lookupOptions.all === true) callback(null, [pinned]);
    else callback(null, pinned.address, pinned.family);
  };
}

function send(url: URL, pinned: LookupAddress, signal: AbortSignal): Promise<IncomingMessage> {
  const host = bareHost(url);
  const isHttps = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const request = (isHttps ? https : http).request(
      {
        method: 'GET',
        // host stays the name, so Host and certificate checks use it; lookup decides the address.
        host,
        port: url.port === '' ? undefined : Number(url.port),
        path: `${url.pathname}${url.search}`,
        headers: REQUEST_HEADERS,
        lookup: pinnedLookup(pinned),
        family: pinned.family,
        ...(isHttps && isIP(host) === 0 ? { servername: host } : {}),
        // A pooled socket may have been connected for an earlier answer; every hop gets its own.
        agent: false,
        signal,
      },
      resolve,
    );
    request.on('error', reject);
    request.end();
  });
}

async function readCapped(response: IncomingMessage, failures: Failures, maxBytes: number): Promise<Buffer> {
  const declared = Number(response.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    response.destroy();
    throw failures.tooLarge();
  }
  const chunks: Buffer[] = [];
  let received = 0;
  for await (const chunk of response as AsyncIterable<Buffer>) {
    received += chunk.length;
    if (received > maxBytes) {
      response.destroy();
      throw failures.tooLarge();
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, received);
}

async function followRedirects(url: string, options: FetchUrlOptions, signal: AbortSignal, failures: Failures): Promise<Buffer> {
  let current = parseUrl(url, undefined, failures);
  for (;;) {
    const pinned = await checkedAddress(current, options, signal, failures);
    const response = await send(current, pinned, signal);
    const status = response.statusCode ?? 0;
    if (REDIRECT_STATUSES.has(status)) {
      response.destroy();
      if (failures.redirects === MAX_REDIRECTS) throw failures.refused(`too many redirects (more than ${MAX_REDIRECTS})`);
      const location = response.headers.location;
      if (location === undefined) throw failures.unfetchable(`the server answered HTTP ${status} without a Location`);
      failures.redirects += 1;
      current = parseUrl(location, current, failures);
      continue;
    }
    if (status < 200 || status > 299) {
      response.destroy();
      throw failures.unfetchable(`the server answered HTTP ${status}`);
    }
    return await readCapped(response, failures, options.maxBytes);
  }
}

/**
 * Downloads an image named by a caller-supplied URL without letting the URL
 * reach anything but the public internet: only http(s), every address of every
 * hop checked, connections pinned to the checked address, redirects followed by
 * hand, and the body capped while it streams.
 */
export async function fetchImageUrl(url: string, options: FetchUrlOptions): Promise<Buffer> {
  const failures = new Failures(options);
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), options.timeoutMs);
  const signal = options.signal ? AbortSignal.any([deadline.signal, options.signal]) : deadline.signal;
  try {
    return await followRedirects(url, options, signal, failures);
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason;
    if (error instanceof ApiError) throw error;
    if (deadline.signal.aborted) throw failures.unfetchable(`timed out after ${options.timeoutMs} ms`, error);
    throw failures.unfetchable(`the connection failed (${errorCode(error)})`, error);
  } finally {
    clearTimeout(timer);
  }
}
