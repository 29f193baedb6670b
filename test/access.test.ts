/**
 * AUTH=api-key, CORS_ORIGINS and remove.bg's path on the local server, through
 * real HTTP; the deployed functions' side is test/accessFunctions.test.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { apiKeyHashEntry, createApiKey } from '../functions/access/apiKey';
import { createRateLimiter } from '../functions/access/rateLimit';
import { type Config, ConfigError, loadConfig } from '../functions/config';
import { Logger } from '../functions/log';
import { PROJECT_ROOT } from '../functions/paths';
import { type RunningServer } from '../tools/lib/http';
import { type LocalServer, startLocalServer } from './support/servers';

const KEY = createApiKey();
const OLD_KEY = createApiKey();
const PAGE = 'https://app.example.com';
const quiet = new Logger({ level: 'error', pretty: false, write: () => undefined });
const HASHES = `${apiKeyHashEntry('frontend', KEY)},${apiKeyHashEntry('old', OLD_KEY)}`;

function configWith(env: Record<string, string>): Config {
  return loadConfig({ ...process.env, PORT: '0', ...env });
}

function configProblems(env: Record<string, string>): string {
  try {
    configWith(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.message;
  }
  assert.fail(`accepted ${JSON.stringify(env)}`);
}

describe('configuration', () => {
  test('AUTH defaults to iam, which checks nothing in the app', () => {
    const config = configWith({});
    assert.deepEqual(config.auth, ['iam']);
    assert.deepEqual(config.apiKeys, []);
    assert.deepEqual(config.corsOrigins, []);
  });

  test('api-key reads its hashes, two side by side for a rotation', () => {
    const config = configWith({ AUTH: 'api-key, iam', API_KEY_HASHES: ` ${HASHES} ` });
    assert.deepEqual(config.auth, ['api-key', 'iam']);
    assert.deepEqual(config.apiKeys.map((key) => key.id), ['frontend', 'old']);
  });

  const refused: { name: string; env: Record<string, string>; message: RegExp }[] = [
    { name: 'an unknown AUTH mode', env: { AUTH: 'password' }, message: /AUTH must be a comma-separated list of iam, api-key, firebase, app-check, got "password"/ },
    { name: 'api-key without hashes', env: { AUTH: 'api-key' }, message: /AUTH includes api-key but API_KEY_HASHES is empty/ },
    { name: 'hashes without api-key', env: { API_KEY_HASHES: HASHES }, message: /API_KEY_HASHES is set but AUTH does not include api-key/ },
    { name: 'a hash entry without id', env: { AUTH: 'api-key', API_KEY_HASHES: 'a'.repeat(64) }, message: /API_KEY_HASHES entry 1 must be ID:SHA256/ },
    { name: 'a short hash', env: { AUTH: 'api-key', API_KEY_HASHES: 'k:abc' }, message: /entry 1 must be ID:SHA256/ },
    { name: 'a repeated id', env: { AUTH: 'api-key', API_KEY_HASHES: `${HASHES},${apiKeyHashEntry('old', KEY)}` }, message: /names key id old twice/ },
    { name: 'a rate limit without api-key', env: { RATE_LIMIT_PER_MINUTE: '10' }, message: /RATE_LIMIT_PER_MINUTE counts requests per caller, so it needs AUTH to include one of api-key, firebase, app-check/ },
    { name: 'a rate limit of 0', env: { AUTH: 'api-key', API_KEY_HASHES: HASHES, RATE_LIMIT_PER_MINUTE: '0' }, message: /RATE_LIMIT_PER_MINUTE must be between 1 and 1000000/ },
    { name: 'CORS_ORIGINS=*', env: { CORS_ORIGINS: '*' }, message: /CORS_ORIGINS may not be \*/ },
    { name: 'an origin with a path', env: { CORS_ORIGINS: 'https://app.example.com/' }, message: /"https:\/\/app.example.com\/" must be an origin/ },
    { name: 'an origin without scheme', env: { CORS_ORIGINS: 'app.example.com' }, message: /must be an origin/ },
    { name: 'a non-http origin', env: { CORS_ORIGINS: 'ftp://app.example.com' }, message: /must be an origin/ },
  ];
  for (const { name, env, message } of refused) {
    test(`refuses ${name}`, () => assert.match(configProblems(env), message));
  }

  test('a refused hash entry is not quoted back', () => {
    const secret = `x:${'g'.repeat(64)}`;
    assert.ok(!configProblems({ AUTH: 'api-key', API_KEY_HASHES: secret }).includes(secret));
  });
});

interface ErrorBody {
  error: { code: string; message: string };
  errors?: { title: string; code: string }[];
}

describe('AUTH=api-key on the local server', () => {
  let server: LocalServer;
  const logLines: Record<string, unknown>[] = [];

  before(async () => {
    const logger = new Logger({ level: 'info', pretty: false, write: (line) => logLines.push(JSON.parse(line) as Record<string, unknown>) });
    server = await startLocalServer(configWith({ AUTH: 'api-key', API_KEY_HASHES: HASHES }), undefined, logger);
  });
  after(() => server.close());

  test('no key: 401 with a challenge, in our error shape and remove.bg\'s', async () => {
    const response = await fetch(`${server.url}/remove-background`, { method: 'POST' });
    assert.equal(response.status, 401);
    assert.equal(response.headers.get('www-authenticate'), 'ApiKey realm="detourage", header="X-Api-Key"');
    const body = (await response.json()) as ErrorBody;
    assert.equal(body.error.code, 'unauthenticated');
    assert.deepEqual(body.errors, [{ title: 'API Key missing', code: 'auth_failed' }]);
  });

  test('a wrong key: 403 auth_failed, as remove.bg answers', async () => {
    for (const wrong of [createApiKey(), 'x', KEY.slice(0, -1)]) {
      const response = await fetch(`${server.url}/remove-background`, { method: 'POST', headers: { 'X-Api-Key': wrong } });
      assert.equal(response.status, 403);
      assert.equal(response.headers.get('www-authenticate'), null);
      const body = (await response.json()) as ErrorBody;
      assert.equal(body.error.code, 'forbidden');
      assert.deepEqual(body.errors, [{ title: 'API Key invalid', code: 'auth_failed' }]);
    }
  });

  test('either key of a rotation passes, and the log names its id, never the key', async () => {
    for (const [key, id] of [[KEY, 'frontend'], [OLD_KEY, 'old']] as const) {
      logLines.length = 0;
      const response = await fetch(`${server.url}/remove-background`, { method: 'POST', headers: { 'X-Api-Key': key } });
      // Past the check, the handler itself answers: no image.
      assert.equal(response.status, 400);
      assert.equal(((await response.json()) as ErrorBody).error.code, 'missing_image');
      await new Promise((resolve) => setImmediate(resolve));
      const line = logLines.find((entry) => String(entry.message).startsWith('POST /remove-background'));
      assert.equal(line?.caller, `api-key:${id}`);
      assert.ok(!JSON.stringify(logLines).includes(key));
    }
  });

  test('warmup needs a key (it costs an inference); health does not', async () => {
    for (const method of ['GET', 'POST']) {
      assert.equal((await fetch(`${server.url}/warmup`, { method })).status, 401);
    }
    assert.equal((await fetch(`${server.url}/remove-background`)).status, 401, 'GET warms too');
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 200);
    assert.equal(server.loadCount, 0);
  });

  test('remove.bg\'s path is an alias of /remove-background', async () => {
    assert.equal((await fetch(`${server.url}/v1.0/removebg`, { method: 'POST' })).status, 401);
    const response = await fetch(`${server.url}/v1.0/removebg`, { method: 'POST', headers: { 'X-Api-Key': KEY } });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as ErrorBody).error.code, 'missing_image');
  });

  test('a refused request reads nothing and loads nothing (its cost: npm run bench:refused)', async () => {
    const boundary = 'x'.repeat(20);
    // Malformed multipart, an unknown parameter and garbage for an image: any of them parsed would be a 400.
    const small = `--${boundary}\r\nContent-Disposition: form-data; name="no_such_parameter"\r\n\r\n1\r\n--${boundary}`;
    const large = Buffer.concat([Buffer.from(small), Buffer.alloc(8 * 1024 * 1024, 0x41)]);
    for (const body of [small, large]) {
      for (const key of ['wrong', '']) {
        logLines.length = 0;
        const response = await fetch(`${server.url}/remove-background?size=nonsense`, {
          method: 'POST',
          headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}`, 'X-Api-Key': key },
          body,
        });
        await response.arrayBuffer();
        assert.equal(response.status, key === '' ? 401 : 403);
        await new Promise((resolve) => setImmediate(resolve));
        const line = logLines.find((entry) => String(entry.message).startsWith('POST /remove-background'));
        // No stage ran: stage timings and a model are what a parsed request leaves in its log line.
        assert.equal(line?.timingsMs, undefined);
        assert.equal(line?.model, undefined);
      }
    }
    assert.equal(server.loadCount, 0);
  });
});

describe('CORS_ORIGINS on the local server', () => {
  let server: RunningServer;

  before(async () => {
    server = await startLocalServer(configWith({ AUTH: 'api-key', API_KEY_HASHES: HASHES, CORS_ORIGINS: `${PAGE},http://localhost:5173` }), undefined, quiet);
  });
  after(() => server.close());

  const preflight = (origin: string, route = '/remove-background'): Promise<Response> =>
    fetch(`${server.url}${route}`, {
      method: 'OPTIONS',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'x-api-key' },
    });

  test('a preflight from an allowed origin is answered without a key', async () => {
    for (const route of ['/remove-background', '/v1.0/removebg', '/warmup']) {
      const response = await preflight(PAGE, route);
      assert.equal(response.status, 204);
      assert.equal(response.headers.get('access-control-allow-origin'), PAGE);
      assert.match(response.headers.get('vary') ?? '', /Origin/);
      assert.equal(response.headers.get('access-control-allow-headers'), 'X-Api-Key, Authorization, X-Firebase-AppCheck, Content-Type');
      assert.equal(response.headers.get('access-control-max-age'), '600');
      assert.equal(response.headers.get('access-control-allow-credentials'), null);
    }
    assert.equal((await preflight(PAGE)).headers.get('access-control-allow-methods'), 'POST, GET');
    assert.equal((await preflight('http://localhost:5173', '/health')).headers.get('access-control-allow-methods'), 'GET, HEAD');
  });

  test('a preflight from another origin gets no CORS headers', async () => {
    for (const origin of ['https://evil.example', 'https://app.example.com:8443', 'http://app.example.com', 'null']) {
      const response = await preflight(origin);
      assert.equal(response.status, 204);
      assert.equal(response.headers.get('access-control-allow-origin'), null);
      assert.equal(response.headers.get('access-control-allow-methods'), null);
      assert.match(response.headers.get('vary') ?? '', /Origin/);
    }
  });

  test('an actual cross-origin request carries the headers, errors included', async () => {
    const refused = await fetch(`${server.url}/remove-background`, { method: 'POST', headers: { Origin: PAGE } });
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get('access-control-allow-origin'), PAGE);
    const exposed = refused.headers.get('access-control-expose-headers') ?? '';
    for (const name of ['X-Width', 'X-Height', 'X-Foreground-Top', 'X-Foreground-Left', 'X-Foreground-Width', 'X-Foreground-Height', 'X-Type', 'X-Model', 'X-Request-Id', 'Retry-After', 'Server-Timing']) {
      assert.ok(exposed.split(', ').includes(name), name);
    }
    const passed = await fetch(`${server.url}/remove-background`, { method: 'POST', headers: { Origin: PAGE, 'X-Api-Key': KEY } });
    assert.equal(passed.status, 400);
    assert.equal(passed.headers.get('access-control-allow-origin'), PAGE);
    const health = await fetch(`${server.url}/health`, { headers: { Origin: PAGE } });
    assert.equal(health.headers.get('access-control-allow-origin'), PAGE);
  });

  test('an actual request from another origin gets no CORS headers', async () => {
    const response = await fetch(`${server.url}/remove-background`, { method: 'POST', headers: { Origin: 'https://evil.example', 'X-Api-Key': KEY } });
    assert.equal(response.status, 400);
    assert.equal(response.headers.get('access-control-allow-origin'), null);
    assert.equal(response.headers.get('access-control-expose-headers'), null);
  });

  test('without CORS_ORIGINS no CORS header is sent and OPTIONS is no preflight answer', async () => {
    const plain = await startLocalServer(configWith({}), undefined, quiet);
    try {
      const response = await fetch(`${plain.url}/remove-background`, {
        method: 'OPTIONS',
        headers: { Origin: PAGE, 'Access-Control-Request-Method': 'POST' },
      });
      assert.equal(response.status, 405);
      assert.equal(response.headers.get('access-control-allow-origin'), null);
    } finally {
      await plain.close();
    }
  });
});

/** The real CLI as its own process. */
function keysCommand(...args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'detourage'), 'keys', ...args], { encoding: 'utf8' });
}

test('detourage keys create prints a key once and the entry that lets it in', async () => {
  const run = keysCommand('create', '--id', 'ci-test');
  assert.equal(run.status, 0, run.stderr);
  const key = /^(dtr_[A-Za-z0-9_-]{43})$/m.exec(run.stdout)?.[1];
  const entry = /^(ci-test:[0-9a-f]{64})$/m.exec(run.stdout)?.[1];
  assert.ok(key && entry, run.stdout);
  // 32 random bytes: 256 bits.
  assert.equal(Buffer.from(key.slice(4), 'base64url').length, 32);
  assert.equal(entry, apiKeyHashEntry('ci-test', key));

  const server = await startLocalServer(configWith({ AUTH: 'api-key', API_KEY_HASHES: entry }), undefined, quiet);
  try {
    assert.equal((await fetch(`${server.url}/remove-background`, { method: 'POST', headers: { 'X-Api-Key': key } })).status, 400);
  } finally {
    await server.close();
  }

  const bad = keysCommand('create', '--id', 'no spaces');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--id must be letters/);
  const second = keysCommand('create');
  assert.match(second.stdout, /^key-\d{8}:[0-9a-f]{64}$/m);
  assert.ok(!second.stdout.includes(key));
  assert.equal(keysCommand('delete').status, 2);
});

test('AUTH=iam,api-key lets everyone in (IAM checked them) and still names a key\'s caller', async () => {
  const lines: Record<string, unknown>[] = [];
  const logger = new Logger({ level: 'info', pretty: false, write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const server = await startLocalServer(configWith({ AUTH: 'iam,api-key', API_KEY_HASHES: HASHES }), undefined, logger);
  try {
    assert.equal((await fetch(`${server.url}/remove-background`, { method: 'POST' })).status, 400);
    assert.equal((await fetch(`${server.url}/remove-background`, { method: 'POST', headers: { 'X-Api-Key': 'wrong' } })).status, 400);
    assert.equal((await fetch(`${server.url}/remove-background`, { method: 'POST', headers: { 'X-Api-Key': KEY } })).status, 400);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(lines.map((line) => line.caller), [undefined, undefined, 'api-key:frontend']);
  } finally {
    await server.close();
  }
});

test('RATE_LIMIT_PER_MINUTE: headers on every answer to a key, 429 past the limit, then the next minute recovers', async () => {
  // 10 s into a minute, so that the reset is 50 s away.
  let clock = Date.UTC(2026, 11, 1, 20, 0, 10);
  const server = await startLocalServer(
    configWith({ AUTH: 'api-key', API_KEY_HASHES: HASHES, RATE_LIMIT_PER_MINUTE: '2', CORS_ORIGINS: PAGE }),
    undefined,
    quiet,
    () => clock,
  );
  const reset = String(Date.UTC(2026, 11, 1, 20, 1, 0) / 1000);
  const post = (key: string): Promise<Response> =>
    fetch(`${server.url}/remove-background`, { method: 'POST', headers: { 'X-Api-Key': key, Origin: PAGE } });
  try {
    for (const remaining of ['1', '0']) {
      const response = await post(KEY);
      assert.equal(response.status, 400, 'within the limit, the handler answers');
      assert.equal(response.headers.get('x-ratelimit-limit'), '2');
      assert.equal(response.headers.get('x-ratelimit-remaining'), remaining);
      assert.equal(response.headers.get('x-ratelimit-reset'), reset);
      assert.equal(response.headers.get('retry-after'), null);
    }
    const refused = await post(KEY);
    assert.equal(refused.status, 429);
    assert.equal(((await refused.json()) as ErrorBody).error.code, 'rate_limited');
    assert.equal(refused.headers.get('retry-after'), '50');
    assert.equal(refused.headers.get('x-ratelimit-remaining'), '0');
    assert.equal(refused.headers.get('access-control-allow-origin'), PAGE);
    assert.match(refused.headers.get('access-control-expose-headers') ?? '', /X-RateLimit-Reset/);
    // Counted per key id: the other key has its own budget.
    assert.equal((await post(OLD_KEY)).status, 400);
    // Refusals for a missing key are not counted against anyone and carry no rate headers.
    const anonymous = await fetch(`${server.url}/remove-background`, { method: 'POST' });
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.headers.get('x-ratelimit-limit'), null);

    clock += 50_000;
    const recovered = await post(KEY);
    assert.equal(recovered.status, 400);
    assert.equal(recovered.headers.get('x-ratelimit-remaining'), '1');
    assert.equal(recovered.headers.get('x-ratelimit-reset'), String(Number(reset) + 60));
    assert.equal(server.loadCount, 0);
  } finally {
    await server.close();
  }
});

test('the rate limiter keeps only this minute\'s callers, and at most its bound of them', () => {
  let clock = Date.UTC(2026, 11, 1, 20, 0, 10);
  const limiter = createRateLimiter(5, () => clock, 2);
  assert.equal(limiter.take('firebase:a').allowed, true);
  assert.equal(limiter.take('firebase:b').allowed, true);
  const third = limiter.take('firebase:c');
  assert.equal(third.allowed, false, 'a third caller in a table of two waits for the next minute');
  assert.equal(third.headers['Retry-After'], '50');
  assert.equal(limiter.take('firebase:a').allowed, true, 'callers already counted go on');
  clock += 50_000;
  assert.equal(limiter.take('firebase:c').allowed, true);
  assert.equal(limiter.take('firebase:c').headers['X-RateLimit-Remaining'], '3');
});

test('a revoked key (its entry taken out of API_KEY_HASHES) is refused with 403, its successor passes', async () => {
  const server = await startLocalServer(configWith({ AUTH: 'api-key', API_KEY_HASHES: apiKeyHashEntry('frontend', KEY) }), undefined, quiet);
  try {
    const revoked = await fetch(`${server.url}/remove-background`, { method: 'POST', headers: { 'X-Api-Key': OLD_KEY } });
    assert.equal(revoked.status, 403);
    assert.deepEqual(((await revoked.json()) as ErrorBody).errors, [{ title: 'API Key invalid', code: 'auth_failed' }]);
    assert.equal((await fetch(`${server.url}/remove-background`, { method: 'POST', headers: { 'X-Api-Key': KEY } })).status, 400);
  } finally {
    await server.close();
  }
});
