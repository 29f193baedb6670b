/**
 * `detourage remove --endpoint`. First the client's parts in this process,
 * with a clock the test holds (Retry-After, the backoff, the request window,
 * the identity token's renewal), against a loopback server that answers what
 * the test scripts. Then the real CLI against the real local server and model,
 * with a front of the test's own between them where the server must refuse,
 * fail or vanish part-way.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { apiKeyHashEntry, createApiKey } from '../functions/access/apiKey';
import type { JobContext } from '../functions/cli/batch';
import { requestWindow } from '../functions/cli/concurrency';
import { identityTokenCredentials, MIN_REFRESH_INTERVAL_MS, NO_CREDENTIALS, TOKEN_REFRESH_MARGIN_MS } from '../functions/cli/credentials';
import { EndpointError, endpointRemover, type EndpointSettings, OVERLOAD_RETRIES, type RetryClock, retryAfterMs, retryDelayMs } from '../functions/cli/remote';
import type { ReportLine } from '../functions/cli/report';
import { loadConfig } from '../functions/config';
import { Logger } from '../functions/log';
import { PROJECT_ROOT } from '../functions/paths';
import { fixture } from '../tools/lib/images';
import { claimsOf, signingKey, signToken, unsignedToken } from '../tools/lib/keyServer';
import { assertCutout, type CliRun, detourage } from './support/cli';
import { type LocalServer, startLocalServer } from './support/servers';

const quiet = new Logger({ level: 'error', pretty: false, write: () => undefined });
const OVERLOADED = { status: 503, headers: { 'Retry-After': '1' }, body: JSON.stringify({ error: { code: 'overloaded', message: 'The service is busy.' } }) };
const FAKE_GCLOUD_DIR = path.join(PROJECT_ROOT, 'test', 'fake-gcloud');

// ---------------------------------------------------------------------------
// A loopback front: answers each request as `reply` says, forwarding it to
// `target` or not, and records what came.

interface Exchange {
  index: number;
  headers: IncomingHttpHeaders;
  /** The multipart body's plain fields. */
  fields: Record<string, string>;
  /** The file name of its image_file part. */
  fileName: string | undefined;
  /** performance.now() when it had come in whole. */
  at: number;
}

/** `kill`: half the server's answer, then the front is gone, as an instance that crashes. `hold`: no answer until the front closes. */
type Reply = 'forward' | 'kill' | 'hold' | { status: number; headers?: Record<string, string>; body?: string };

interface Front {
  url: string;
  exchanges: Exchange[];
  readonly held: number;
  /** Drops every connection and stops listening: a request now finds nobody. */
  close(): Promise<void>;
  /** Listens again on the same port. */
  reopen(): Promise<void>;
}

async function startFront(reply: (exchange: Exchange) => Reply, target?: string): Promise<Front> {
  const sockets = new Set<Socket>();
  const held: ServerResponse[] = [];
  const exchanges: Exchange[] = [];

  async function answer(request: AsyncIterable<Buffer> & { headers: IncomingHttpHeaders; url?: string; method?: string }, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const form = await new Response(body, { headers: { 'content-type': request.headers['content-type'] ?? '' } }).formData().catch(() => undefined);
    const fields: Record<string, string> = {};
    let fileName: string | undefined;
    for (const [name, value] of form?.entries() ?? []) {
      if (typeof value === 'string') fields[name] = value;
      else if (name === 'image_file') fileName = value.name;
    }
    const exchange: Exchange = { index: exchanges.length, headers: request.headers, fields, fileName, at: performance.now() };
    exchanges.push(exchange);
    const decided = reply(exchange);
    if (decided === 'hold') {
      held.push(response);
      return;
    }
    if (typeof decided === 'object') {
      response.writeHead(decided.status, { 'content-type': 'application/json', ...decided.headers }).end(decided.body ?? '');
      return;
    }
    const passed = ['content-type', 'accept', 'x-api-key', 'authorization'].flatMap((name) => {
      const value = request.headers[name];
      return typeof value === 'string' ? [[name, value] as [string, string]] : [];
    });
    const forwarded = await fetch(`${target!}${request.url ?? '/'}`, { method: request.method ?? 'POST', headers: passed, body });
    const result = Buffer.from(await forwarded.arrayBuffer());
    const headers = { 'content-type': forwarded.headers.get('content-type') ?? 'application/octet-stream', 'content-length': String(result.length) };
    if (decided === 'forward') {
      response.writeHead(forwarded.status, headers).end(result);
      return;
    }
    response.writeHead(forwarded.status, headers);
    response.write(result.subarray(0, result.length >> 1), () => void front.close());
  }

  const server = createServer((request, response) => void answer(request, response));
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const listenOn = (port: number): Promise<void> => new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  await listenOn(0);
  const { port } = server.address() as AddressInfo;
  const front: Front = {
    url: `http://127.0.0.1:${port}`,
    exchanges,
    get held() {
      return held.length;
    },
    async close() {
      if (!server.listening) return;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      held.length = 0;
      await closed;
    },
    reopen: () => listenOn(port),
  };
  return front;
}

// ---------------------------------------------------------------------------
// The client's parts, with the test's clock.

const NOW = Date.UTC(2026, 11, 2, 12, 0, 0);

function heldClock(random = 0.5): RetryClock & { slept: number[] } {
  const slept: number[] = [];
  return {
    slept,
    now: () => NOW,
    random: () => random,
    sleep: (ms) => {
      slept.push(ms);
      return Promise.resolve();
    },
  };
}

function jobContext(reasons: string[] = []): JobContext {
  return { name: 'car-1.jpg', retrying: (reason) => reasons.push(reason), signal: new AbortController().signal };
}

function settingsFor(front: Front, retries = 3): EndpointSettings {
  return { url: new URL(`${front.url}/remove-background`), parameters: { format: 'png', crop: 'true' }, credentials: NO_CREDENTIALS, retries, concurrency: undefined };
}

const RESULT = { status: 200, headers: { 'content-type': 'image/png' }, body: 'the cutout' };
const apiError = (status: number, code: string, headers: Record<string, string> = {}): Reply => ({
  status,
  headers,
  body: JSON.stringify({ error: { code, message: `refused with ${code}`, ...(code === 'invalid_parameter' ? { parameter: 'crop' } : {}) } }),
});

/** The error `promise` rejects with. */
async function rejection(promise: Promise<unknown>): Promise<EndpointError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof EndpointError, String(error));
    return error;
  }
  assert.fail('resolved');
}

describe('the endpoint client, on the test\'s clock', () => {
  test('Retry-After is read as seconds or as an HTTP date, from the clock\'s now', () => {
    assert.equal(retryAfterMs('5', NOW), 5000);
    assert.equal(retryAfterMs(' 0 ', NOW), 0);
    assert.equal(retryAfterMs(new Date(NOW + 30_000).toUTCString(), NOW), 30_000);
    assert.equal(retryAfterMs(new Date(NOW - 30_000).toUTCString(), NOW), 0, 'a date already past: at once');
    assert.equal(retryAfterMs('soon', NOW), undefined);
    assert.equal(retryAfterMs(null, NOW), undefined);
  });

  test('a wait is the backoff or Retry-After, whichever is longer, stretched by up to half at random', () => {
    assert.deepEqual([1, 2, 3, 4].map((retry) => retryDelayMs(retry, undefined, 0)), [500, 1000, 2000, 4000]);
    assert.equal(retryDelayMs(20, undefined, 0), 30_000, 'the backoff has a ceiling');
    assert.equal(retryDelayMs(1, 5000, 0), 5000, 'never sooner than the server asked');
    assert.equal(retryDelayMs(1, 5000, 0.999), 7498);
    assert.equal(retryDelayMs(5, 1000, 0), 8000, 'a short Retry-After does not cut the backoff');
    assert.equal(retryDelayMs(1, 3_600_000, 0), 300_000, 'an hour is waited as five minutes, and asked again');
  });

  test('the window doubles each round until a refusal, halves once per round of refusals, then grows by one per round', async () => {
    const window = requestWindow({ initial: 4, ceiling: 40, adaptive: true });
    const round = async (answer: 'ok' | 'overloaded'): Promise<void> => {
      const permits = await Promise.all(Array.from({ length: window.size }, () => window.acquire()));
      for (const permit of permits) permit.release(answer);
    };
    await round('ok');
    assert.equal(window.size, 8);
    await round('ok');
    assert.equal(window.size, 16);
    await round('overloaded');
    assert.equal(window.size, 8, 'sixteen refusals of one round halve it once');
    await round('ok');
    assert.equal(window.size, 9);
    await round('ok');
    assert.equal(window.size, 10);

    const fixed = requestWindow({ initial: 2, ceiling: 2, adaptive: false });
    const [first, second] = await Promise.all([fixed.acquire(), fixed.acquire()]);
    first.release('overloaded');
    second.release('ok');
    assert.equal(fixed.size, 2);
  });

  test('the window lets no more in than its size, and an aborted wait gives up its turn', async () => {
    const window = requestWindow({ initial: 1, ceiling: 1, adaptive: false });
    const first = await window.acquire();
    const controller = new AbortController();
    const aborted = window.acquire(controller.signal);
    let third = false;
    const next = window.acquire().then((permit) => {
      third = true;
      return permit;
    });
    controller.abort(new Error('interrupted'));
    await assert.rejects(aborted, /interrupted/);
    await sleep(0);
    assert.equal(third, false, 'still one in flight');
    first.release('ok');
    (await next).release('ok');
    assert.equal(third, true);
  });

  test('a 503 is sent again after its Retry-After, and the parameters and the image go as multipart fields', async () => {
    const front = await startFront((exchange) => (exchange.index === 0 ? apiError(503, 'overloaded', { 'Retry-After': '7' }) : RESULT));
    try {
      const clock = heldClock();
      const reasons: string[] = [];
      const body = await endpointRemover(settingsFor(front), clock).remove(Buffer.from('jpeg bytes'), jobContext(reasons));
      assert.equal(body.toString(), 'the cutout');
      assert.deepEqual(clock.slept, [8750], '7 s stretched by a quarter (random 0.5)');
      assert.deepEqual(reasons, ['503 overloaded, again in 8.8 s (attempt 2)']);
      assert.equal(front.exchanges.length, 2);
      const [sent] = front.exchanges;
      assert.deepEqual([sent!.fields, sent!.fileName], [{ format: 'png', crop: 'true' }, 'car-1.jpg']);
      assert.equal(sent!.headers.accept, 'image/png, image/jpeg, image/webp, application/zip');
    } finally {
      await front.close();
    }
  });

  test('a 429 waits until its HTTP date; overload is retried OVERLOAD_RETRIES times, then the input fails', async () => {
    const date = new Date(NOW + 20_000).toUTCString();
    const front = await startFront(() => apiError(429, 'rate_limited', { 'Retry-After': date }));
    try {
      const clock = heldClock(0);
      const error = await rejection(endpointRemover(settingsFor(front), clock).remove(Buffer.from('x'), jobContext()));
      assert.equal(front.exchanges.length, OVERLOAD_RETRIES + 1);
      assert.equal(clock.slept[0], 20_000);
      assert.ok(clock.slept.every((ms) => ms >= 20_000));
      assert.deepEqual([error.status, error.code, error.message], [429, 'rate_limited', `refused with rate_limited (gave up after ${OVERLOAD_RETRIES + 1} attempts)`]);
    } finally {
      await front.close();
    }
  });

  test('a 500 and a failed connection are retried --retries times with a growing backoff', async () => {
    const failing = await startFront(() => apiError(500, 'internal'));
    try {
      const clock = heldClock(0);
      const error = await rejection(endpointRemover(settingsFor(failing, 2), clock).remove(Buffer.from('x'), jobContext()));
      assert.equal(failing.exchanges.length, 3);
      assert.deepEqual(clock.slept, [500, 1000]);
      assert.deepEqual([error.status, error.code], [500, 'internal']);
    } finally {
      await failing.close();
    }
    const gone = await startFront(() => RESULT);
    await gone.close();
    const clock = heldClock(0);
    const reasons: string[] = [];
    const error = await rejection(endpointRemover(settingsFor(gone, 1), clock).remove(Buffer.from('x'), jobContext(reasons)));
    assert.equal(error.status, undefined);
    assert.match(error.message, /^no whole answer from the endpoint \(ECONNREFUSED\) \(gave up after 2 attempts\)$/);
    assert.deepEqual(reasons, ['no whole answer from the endpoint (ECONNREFUSED), again in 0.5 s (attempt 2)']);
  });

  test('another 4xx is final at once, with the API\'s code, message and parameter; 401, 403, 404 and 405 stop the run', async () => {
    const answers: Reply[] = [
      apiError(413, 'payload_too_large'),
      apiError(400, 'invalid_parameter'),
      apiError(401, 'unauthenticated'),
      { status: 403, headers: { 'content-type': 'text/html' }, body: '<html><body><h1>Error: Forbidden</h1><h2>Your client does not have permission.</h2></body></html>' },
    ];
    const front = await startFront((exchange) => answers[exchange.index]!);
    try {
      const clock = heldClock();
      const remover = endpointRemover(settingsFor(front), clock);
      const errors: EndpointError[] = [];
      // One after another: the front answers by arrival.
      for (let index = 0; index < answers.length; index += 1) errors.push(await rejection(remover.remove(Buffer.from('x'), jobContext())));
      const [tooLarge, badParameter, unauthenticated, forbidden] = errors;
      assert.deepEqual(clock.slept, []);
      assert.deepEqual([tooLarge!.status, tooLarge!.code, tooLarge!.message], [413, 'payload_too_large', 'refused with payload_too_large']);
      assert.equal(badParameter!.parameter, 'crop');
      assert.equal(remover.stopsRun(tooLarge), undefined);
      assert.equal(remover.stopsRun(badParameter), undefined);
      assert.match(remover.stopsRun(unauthenticated) ?? '', /answered 401 unauthenticated: refused with unauthenticated No other input could pass either: give --api-key/);
      assert.equal(forbidden!.message, 'HTTP 403 Forbidden: Error: Forbidden Your client does not have permission.');
      assert.match(remover.stopsRun(forbidden) ?? '', /answered HTTP 403 Forbidden: Error: Forbidden .*roles\/run\.invoker/);
    } finally {
      await front.close();
    }
  });
});

describe('the identity token, on the test\'s clock', () => {
  const tokenExpiringAt = (ms: number, n: number): string => unsignedToken({ ...claimsOf('google-oidc'), exp: Math.floor(ms / 1000), n }, 'k1');

  test('gcloud runs once for requests side by side, and again only when the token is near its exp', async () => {
    let now = NOW;
    const calls: string[][] = [];
    const credentials = identityTokenCredentials('https://fn.example/removeBackground', (args) => {
      calls.push([...args]);
      return Promise.resolve(`${tokenExpiringAt(now + 3_600_000, calls.length)}\n`);
    }, () => now);
    const [first, second] = await Promise.all([credentials(), credentials()]);
    assert.equal(calls.length, 1);
    assert.deepEqual(first, second);
    assert.match(first.Authorization!, /^Bearer ey[\w-]+\.[\w-]+\.$/);
    assert.deepEqual(calls[0], ['auth', 'print-identity-token', '--audiences=https://fn.example/removeBackground']);
    now += 3_600_000 - TOKEN_REFRESH_MARGIN_MS - 1;
    assert.deepEqual(await credentials(), first);
    now += 1;
    const renewed = await credentials();
    assert.equal(calls.length, 2);
    assert.notDeepEqual(renewed, first);
  });

  test('a token handed out already near its exp is used, and gcloud is not run again for MIN_REFRESH_INTERVAL_MS', async () => {
    let now = NOW;
    let calls = 0;
    const credentials = identityTokenCredentials('https://fn.example', () => {
      calls += 1;
      return Promise.resolve(tokenExpiringAt(now + 60_000, calls));
    }, () => now);
    await credentials();
    now += MIN_REFRESH_INTERVAL_MS - 1;
    await credentials();
    assert.equal(calls, 1);
    now += 1;
    await credentials();
    assert.equal(calls, 2);
  });

  test('a user account, which may not name an audience, is asked without --audiences from then on; no JWT is an error', async () => {
    const calls: string[][] = [];
    const credentials = identityTokenCredentials('https://fn.example', (args) => {
      calls.push([...args]);
      if (args.some((arg) => arg.startsWith('--audiences'))) return Promise.reject(new Error('Invalid account type for `--audiences`. Requires valid service account.'));
      return Promise.resolve(tokenExpiringAt(NOW + 60_000, calls.length));
    }, () => NOW);
    await credentials();
    assert.deepEqual(calls, [['auth', 'print-identity-token', '--audiences=https://fn.example'], ['auth', 'print-identity-token']]);

    const broken = identityTokenCredentials('https://fn.example', () => Promise.resolve('You are not logged in\n'));
    await assert.rejects(broken(), /printed no identity token \(a JWT with an exp claim\)/);
  });
});

// ---------------------------------------------------------------------------
// The real CLI against the real local server.

describe('detourage remove --endpoint against the local server', () => {
  const UPLOAD_LIMIT = 1_000_000;
  let server: LocalServer;
  let endpoint: string;
  let workDir: string;

  before(async () => {
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'detourage-cli-remote-'));
    server = await startLocalServer(loadConfig({ ...process.env, PORT: '0', MAX_UPLOAD_BYTES: String(UPLOAD_LIMIT) }), undefined, quiet);
    endpoint = `${server.url}/remove-background`;
  });
  after(async () => {
    await server.close();
    await fs.rm(workDir, { recursive: true, force: true });
  });

  /** A folder of fixtures under new names. */
  async function photos(name: string, files: Record<string, string>): Promise<{ dir: string; out: string; report: string }> {
    const dir = path.join(workDir, name, 'photos');
    await fs.mkdir(dir, { recursive: true });
    for (const [file, source] of Object.entries(files)) await fs.writeFile(path.join(dir, file), source.endsWith('.jpg') ? fixture(source) : source);
    return { dir, out: path.join(workDir, name, 'cutouts'), report: path.join(workDir, name, 'report.jsonl') };
  }

  /** The CLI with no key from the test's own environment. */
  function remove(args: string[], env: Record<string, string> = {}, started?: (child: ChildProcess) => void): Promise<CliRun> {
    return detourage(['remove', ...args], { env: { DETOURAGE_API_KEY: '', ...env }, ...(started ? { started } : {}) });
  }

  async function reportOf(file: string): Promise<Record<string, ReportLine>> {
    const lines = (await fs.readFile(file, 'utf8')).trimEnd().split('\n').map((line) => JSON.parse(line) as ReportLine);
    return Object.fromEntries(lines.map((line) => [path.basename(line.input), line]));
  }

  async function assertCutouts(out: string, names: string[]): Promise<void> {
    assert.deepEqual((await fs.readdir(out)).sort(), [...names].sort(), 'the outputs and nothing else: no temporary file');
    for (const name of names) await assertCutout(await fs.readFile(path.join(out, name)));
  }

  test('a folder goes through the endpoint with the parameters; a bad file fails alone, in the report and the exit code', async () => {
    const { dir, out, report } = await photos('folder', { 'car.jpg': 'car-1.jpg', 'anime.jpg': 'anime-girl-1.jpg', 'broken.jpg': 'this is text' });
    const front = await startFront(() => 'forward', server.url);
    try {
      const run = await remove([dir, '-o', out, '--endpoint', `${front.url}/remove-background`, '--format', 'webp', '-p', 'bg_color=white', '--report', report]);
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr, /^FAILED .*broken\.jpg: The upload is not an image in a supported format/m);
      assert.match(run.stderr, /^2 ok, 1 failed, 3 of 3 in /m);
      assert.deepEqual((await fs.readdir(out)).sort(), ['anime.webp', 'car.webp']);
      for (const exchange of front.exchanges) {
        assert.deepEqual(exchange.fields, { format: 'webp', bg_color: 'white' });
        assert.equal(exchange.headers['x-api-key'], undefined);
        assert.equal(exchange.headers.authorization, undefined);
      }
      assert.deepEqual(front.exchanges.map((exchange) => exchange.fileName).sort(), ['anime.jpg', 'broken.jpg', 'car.jpg']);
      const lines = await reportOf(report);
      assert.deepEqual([lines['car.jpg']!.status, lines['car.jpg']!.attempts, lines['car.jpg']!.output], ['ok', 1, path.join(out, 'car.webp')]);
      assert.ok(lines['car.jpg']!.ms > 0);
      assert.deepEqual(lines['broken.jpg']!.error, {
        message: 'The upload is not an image in a supported format (JPEG, PNG, WebP, AVIF, GIF or TIFF).',
        code: 'unsupported_media_type',
        status: 415,
      });
    } finally {
      await front.close();
    }
  });

  test('a 413 input is final: not retried, reported with the API\'s code and message, and the run exits 1', async () => {
    const { dir, out, report } = await photos('too-large', { 'plants.jpg': 'plants-1.jpg', 'car.jpg': 'car-1.jpg' });
    const run = await remove([dir, '-o', out, '--endpoint', endpoint, '--report', report]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, new RegExp(`^FAILED .*plants\\.jpg: The upload is larger than ${UPLOAD_LIMIT} bytes\\.$`, 'm'));
    assert.doesNotMatch(run.stderr, /^retry /m);
    await assertCutouts(out, ['car.png']);
    const lines = await reportOf(report);
    assert.deepEqual(lines['plants.jpg'], {
      ...lines['plants.jpg'],
      status: 'failed',
      attempts: 1,
      error: { message: `The upload is larger than ${UPLOAD_LIMIT} bytes.`, code: 'payload_too_large', status: 413 },
    });
    assert.equal(lines['car.jpg']!.status, 'ok');
  });

  test('a server that answers half the requests 503 with Retry-After: every input is sent again, no sooner, and succeeds', async () => {
    const { dir, out, report } = await photos('overloaded', { 'a.jpg': 'car-1.jpg', 'b.jpg': 'anime-girl-1.jpg', 'c.jpg': 'cloth-1.jpg', 'd.jpg': 'car-1.jpg' });
    const front = await startFront((exchange) => (exchange.index % 2 === 1 ? OVERLOADED : 'forward'), server.url);
    try {
      const run = await remove([dir, '-o', out, '--endpoint', `${front.url}/remove-background`, '--report', report]);
      assert.equal(run.code, 0, run.stderr);
      await assertCutouts(out, ['a.png', 'b.png', 'c.png', 'd.png']);
      const refused = front.exchanges.filter((exchange) => exchange.index % 2 === 1);
      assert.ok(refused.length >= 2, `${refused.length} refused`);
      for (const first of refused) {
        const again = front.exchanges.find((exchange) => exchange.index > first.index && exchange.fileName === first.fileName);
        assert.ok(again, `${first.fileName} sent again`);
        assert.ok(again.at - first.at >= 1000, `${first.fileName} again after ${Math.round(again.at - first.at)} ms, Retry-After was 1 s`);
      }
      assert.equal((run.stderr.match(/^retry .*: 503 overloaded, again in 1\.\d s \(attempt \d\)$/gm) ?? []).length, refused.length);
      const lines = Object.values(await reportOf(report));
      assert.equal(lines.reduce((sum, line) => sum + (line.attempts ?? 0), 0), front.exchanges.length);
    } finally {
      await front.close();
    }
  });

  test('a server killed mid-run: the run fails what it could not send and leaves no partial file; the same command again sends only the rest', async () => {
    const { dir, out, report } = await photos('killed', { 'a.jpg': 'car-1.jpg', 'b.jpg': 'anime-girl-1.jpg', 'c.jpg': 'cloth-1.jpg', 'd.jpg': 'car-1.jpg' });
    let dying = true;
    const front = await startFront((exchange) => (dying && exchange.index === 2 ? 'kill' : 'forward'), server.url);
    const args = [dir, '-o', out, '--endpoint', `${front.url}/remove-background`, '--concurrency', '1', '--retries', '1', '--report', report];
    try {
      const first = await remove(args);
      assert.equal(first.code, 1, first.stderr);
      assert.match(first.stderr, /^FAILED .*c\.jpg: no whole answer from the endpoint \(\w+\) \(gave up after 2 attempts\)$/m);
      assert.match(first.stderr, /^FAILED .*d\.jpg: no whole answer from the endpoint \(ECONNREFUSED\) \(gave up after 2 attempts\)$/m);
      await assertCutouts(out, ['a.png', 'b.png']);
      const failed = await reportOf(report);
      assert.deepEqual([failed['c.jpg']!.status, failed['c.jpg']!.error?.status], ['failed', undefined]);

      dying = false;
      const sentBefore = front.exchanges.length;
      await front.reopen();
      const second = await remove(args);
      assert.equal(second.code, 0, second.stderr);
      assert.deepEqual(front.exchanges.slice(sentBefore).map((exchange) => exchange.fileName), ['c.jpg', 'd.jpg']);
      assert.match(second.stderr, new RegExp(`^skip .*a\\.jpg → ${path.join(out, 'a.png').replace(/[.]/g, '\\.')} \\(exists\\)$`, 'm'));
      assert.match(second.stderr, /^2 ok, 2 skipped, 0 failed, 4 of 4 in /m);
      await assertCutouts(out, ['a.png', 'b.png', 'c.png', 'd.png']);
      const resumed = await reportOf(report);
      assert.deepEqual(['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg'].map((name) => resumed[name]!.status), ['skipped', 'skipped', 'ok', 'ok']);
    } finally {
      await front.close();
    }
  });

  test('SIGINT abandons the requests in flight: exit 130, only whole outputs', async () => {
    const { dir, out } = await photos('interrupted', { 'a.jpg': 'car-1.jpg', 'b.jpg': 'anime-girl-1.jpg', 'c.jpg': 'cloth-1.jpg' });
    const front = await startFront((exchange) => (exchange.index === 0 ? 'forward' : 'hold'), server.url);
    try {
      const run = await remove([dir, '-o', out, '--endpoint', `${front.url}/remove-background`, '--concurrency', '2'], {}, (child) => {
        // Two held: b, and c, which starts only once a is written.
        void (async () => {
          while (front.held < 2 && child.exitCode === null) await sleep(20);
          child.kill('SIGINT');
        })();
      });
      assert.equal(run.code, 130, run.stderr);
      assert.match(run.stderr, /detourage remove: interrupted with 2 of 3 inputs not done; the same command again does only those$/m);
      await assertCutouts(out, ['a.png']);
    } finally {
      await front.close();
    }
  });

  test('an API key from DETOURAGE_API_KEY or --api-key is sent as X-Api-Key; without one, or a wrong one, the run stops', async () => {
    const key = createApiKey();
    const keyed = await startLocalServer(loadConfig({ ...process.env, PORT: '0', AUTH: 'api-key', API_KEY_HASHES: apiKeyHashEntry('cli', key) }), undefined, quiet);
    try {
      const { dir, out } = await photos('api-key', { 'a.jpg': 'car-1.jpg', 'b.jpg': 'cloth-1.jpg' });
      const args = [dir, '-o', out, '--endpoint', `${keyed.url}/remove-background`];
      const none = await remove(args);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /^detourage remove: http:\/\/127\.0\.0\.1:\d+\/remove-background answered 401 unauthenticated: This function needs an API key in the X-Api-Key header\. No other input could pass either: give --api-key KEY \(or DETOURAGE_API_KEY\), or --id-token\.$/m);
      assert.doesNotMatch(none.stderr, /^FAILED/m, 'the run\'s own error, not one line per input');
      const wrong = await remove([...args, '--api-key', createApiKey()]);
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /answered 403 forbidden: The X-Api-Key header holds no valid key\./);
      assert.equal(await fs.readdir(out).catch(() => []).then((names) => names.length), 0);

      const fromEnvironment = await remove(args, { DETOURAGE_API_KEY: key });
      assert.equal(fromEnvironment.code, 0, fromEnvironment.stderr);
      await assertCutouts(out, ['a.png', 'b.png']);
      const fromFlag = await remove([...args, '--api-key', key, '--force']);
      assert.equal(fromFlag.code, 0, fromFlag.stderr);
    } finally {
      await keyed.close();
    }
  });

  test('--id-token sends gcloud\'s identity token as a bearer token, asking for the endpoint as audience, or not for a user account', async () => {
    const key = await signingKey('google-1');
    const front = await startFront(() => 'forward', server.url);
    const url = `${front.url}/remove-background`;
    const token = await signToken(claimsOf('google-oidc', { aud: url }), key);
    const log = path.join(workDir, 'gcloud.log');
    const gcloudEnv = { PATH: `${FAKE_GCLOUD_DIR}${path.delimiter}${process.env.PATH ?? ''}`, FAKE_GCLOUD_LOG: log, FAKE_GCLOUD_IDENTITY_TOKEN: token };
    const calls = async (): Promise<string[][]> => (await fs.readFile(log, 'utf8')).trimEnd().split('\n').map((line) => JSON.parse(line) as string[]);
    try {
      const { dir, out } = await photos('id-token', { 'a.jpg': 'car-1.jpg', 'b.jpg': 'anime-girl-1.jpg' });
      const serviceAccount = await remove([dir, '-o', out, '--endpoint', url, '--id-token'], gcloudEnv);
      assert.equal(serviceAccount.code, 0, serviceAccount.stderr);
      assert.deepEqual(await calls(), [['auth', 'print-identity-token', `--audiences=${url}`]], 'once for both inputs: the token lives an hour');
      assert.deepEqual(front.exchanges.map((exchange) => exchange.headers.authorization), [`Bearer ${token}`, `Bearer ${token}`]);

      await fs.rm(log);
      const user = await remove([dir, '-o', out, '--endpoint', url, '--id-token', '--force'], { ...gcloudEnv, FAKE_GCLOUD_USER_ACCOUNT: '1' });
      assert.equal(user.code, 0, user.stderr);
      assert.deepEqual(await calls(), [['auth', 'print-identity-token', `--audiences=${url}`], ['auth', 'print-identity-token']]);
      assert.equal(front.exchanges.at(-1)!.headers.authorization, `Bearer ${token}`);

      const noGcloud = await remove([dir, '-o', out, '--endpoint', url, '--id-token', '--force'], { PATH: path.join(workDir, 'empty') });
      assert.equal(noGcloud.code, 1);
      assert.match(noGcloud.stderr, /^detourage remove: no credentials to send: --id-token runs gcloud, which is not installed or not on PATH$/m);
    } finally {
      await front.close();
    }
  });

  test('endpoint flags are checked before any work', async () => {
    const input = path.join(PROJECT_ROOT, 'test', 'fixtures', 'car-1.jpg');
    const cases: [string[], RegExp][] = [
      [['--api-key', 'k'], /--api-key goes with --endpoint URL/],
      [['--concurrency', '2'], /--concurrency goes with --endpoint URL/],
      [['--endpoint', 'ftp://example.com/x'], /--endpoint must be an http\(s\) URL, got ftp:/],
      [['--endpoint', 'example.com'], /--endpoint "example\.com" is not a URL/],
      [['--endpoint', 'http://example.com/x', '--api-key', 'k'], /a credential would cross the network in clear text/],
      [['--endpoint', endpoint, '--api-key', 'k', '--id-token'], /--api-key and --id-token are two credentials: give one/],
      [['--endpoint', endpoint, '--concurrency', '0'], /--concurrency takes a whole number from 1 to 1000, got "0"/],
      [['--endpoint', endpoint, '--retries', 'lots'], /--retries takes a whole number from 0 to 100, got "lots"/],
    ];
    for (const [flags, message] of cases) {
      const run = await remove([input, '-o', path.join(workDir, 'never.png'), ...flags]);
      assert.equal(run.code, 2, `${flags.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, message);
    }
  });
});
