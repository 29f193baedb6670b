/**
 * AUTH=firebase and app-check, and Cloud Scheduler's OIDC warmups on a public
 * function, through real HTTP against the local server, with Google's key
 * endpoints played by a local key server (tools/lib/keyServer.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Config, ConfigError, loadConfig } from '../functions/config';
import { Logger } from '../functions/log';
import {
  claimsOf,
  forgedHs256,
  type KeyServer,
  SCHEDULER_ACCOUNT,
  signingKey,
  type SigningKey,
  signToken,
  startKeyServer,
  TEST_PROJECT,
  unsignedToken,
} from '../tools/lib/keyServer';
import { type LocalServer, startLocalServer } from './support/servers';

interface ErrorBody {
  error: { code: string; message: string };
  errors?: { title: string; code: string }[];
}

const quiet = new Logger({ level: 'error', pretty: false, write: () => undefined });

let keys: KeyServer;
let current: SigningKey;
let unpublished: SigningKey;

before(async () => {
  [current, unpublished] = await Promise.all([signingKey('key-1'), signingKey('key-1')]);
  keys = await startKeyServer([current]);
});
after(() => keys.close());

function configWith(env: Record<string, string>): Config {
  return loadConfig({ ...process.env, PORT: '0', DETOURAGE_TEST_KEY_SERVER: keys.url, ...env });
}

const FIREBASE_ENV = { AUTH: 'firebase,app-check', FIREBASE_PROJECT_ID: TEST_PROJECT, WARMUP_SERVICE_ACCOUNTS: SCHEDULER_ACCOUNT };

function post(url: string, headers: Record<string, string>): Promise<Response> {
  return fetch(`${url}/remove-background`, { method: 'POST', headers });
}

const bearer = (token: string): Record<string, string> => ({ Authorization: `Bearer ${token}` });

describe('configuration', () => {
  const refused: [string, Record<string, string>, RegExp][] = [
    ['firebase without a project', { AUTH: 'firebase' }, /AUTH includes firebase, which needs FIREBASE_PROJECT_ID/],
    ['app-check without a project', { AUTH: 'app-check' }, /AUTH includes app-check, which needs FIREBASE_PROJECT_ID/],
    ['a project without a token mode', { FIREBASE_PROJECT_ID: TEST_PROJECT }, /FIREBASE_PROJECT_ID is set but AUTH includes neither/],
    ['a malformed project id', { AUTH: 'firebase', FIREBASE_PROJECT_ID: 'My Project' }, /FIREBASE_PROJECT_ID must be a project id/],
    ['warmup accounts with iam', { WARMUP_SERVICE_ACCOUNTS: SCHEDULER_ACCOUNT }, /WARMUP_SERVICE_ACCOUNTS is for public functions/],
    ['a warmup account that is no email', { ...FIREBASE_ENV, WARMUP_SERVICE_ACCOUNTS: 'scheduler' }, /entry "scheduler" must be a service account's email/],
    ['a test key server on Cloud Run', { ...FIREBASE_ENV, K_SERVICE: 'removebackground' }, /DETOURAGE_TEST_KEY_SERVER is for tests only/],
    ['a rate limit with iam alone', { RATE_LIMIT_PER_MINUTE: '5' }, /RATE_LIMIT_PER_MINUTE counts requests per caller/],
  ];
  for (const [name, env, message] of refused) {
    test(`refuses ${name}`, () => {
      assert.throws(() => configWith(env), (error: unknown) => error instanceof ConfigError && message.test(error.message));
    });
  }

  test('accepts the token modes, with a rate limit per caller', () => {
    const config = configWith({ ...FIREBASE_ENV, RATE_LIMIT_PER_MINUTE: '5' });
    assert.deepEqual(config.auth, ['firebase', 'app-check']);
    assert.equal(config.firebaseProjectId, TEST_PROJECT);
    assert.deepEqual(config.warmupServiceAccounts, [SCHEDULER_ACCOUNT]);
  });
});

describe('AUTH=firebase,app-check on the local server', () => {
  let server: LocalServer;
  // Moved only to pass the key set's refetch cooldown; tokens stay valid an hour either way.
  let clock = Date.now();
  const logLines: Record<string, unknown>[] = [];
  const lineOf = async (): Promise<Record<string, unknown> | undefined> => {
    await new Promise((resolve) => setImmediate(resolve));
    return logLines.find((entry) => String(entry.message).startsWith('POST /remove-background'));
  };

  before(async () => {
    const logger = new Logger({ level: 'info', pretty: false, write: (line) => logLines.push(JSON.parse(line) as Record<string, unknown>) });
    server = await startLocalServer(configWith(FIREBASE_ENV), undefined, logger, () => clock);
  });
  after(() => server.close());

  test('no credential: 401 naming what to send, with a Bearer challenge', async () => {
    const response = await post(server.url, {});
    assert.equal(response.status, 401);
    assert.equal(response.headers.get('www-authenticate'), 'Bearer realm="detourage"');
    const body = (await response.json()) as ErrorBody;
    assert.match(body.error.message, /a Firebase ID token in Authorization: Bearer; an App Check token in the X-Firebase-AppCheck header/);
    assert.deepEqual(body.errors, [{ title: 'API Key missing', code: 'auth_failed' }]);
  });

  test('a valid ID token passes; the log names the user, never the token', async () => {
    logLines.length = 0;
    const token = await signToken(claimsOf('firebase'), current);
    const response = await post(server.url, bearer(token));
    assert.equal(response.status, 400, 'past the check, the handler answers: no image');
    assert.equal(((await response.json()) as ErrorBody).error.code, 'missing_image');
    assert.equal((await lineOf())?.caller, 'firebase:user-1');
    assert.ok(!JSON.stringify(logLines).includes(token));
  });

  test('a valid App Check token passes on its own', async () => {
    const response = await post(server.url, { 'X-Firebase-AppCheck': await signToken(claimsOf('app-check'), current) });
    assert.equal(response.status, 400);
  });

  const now = (): number => Math.floor(Date.now() / 1000);
  const badIdTokens: [string, () => Promise<string> | string][] = [
    ['an expired token', () => signToken(claimsOf('firebase', { iat: now() - 7200, exp: now() - 3600 }), current)],
    ['a token for another audience', () => signToken(claimsOf('firebase', { aud: 'another-project' }), current)],
    ['a token of another project', () => signToken(claimsOf('firebase', { iss: 'https://securetoken.google.com/another-project', aud: 'another-project' }), current)],
    ['a token of another issuer', () => signToken(claimsOf('firebase', { iss: 'https://evil.example' }), current)],
    ['alg: none', () => unsignedToken(claimsOf('firebase'), current.kid)],
    ['HS256 signed with the public key as its secret', () => forgedHs256(claimsOf('firebase'), current)],
    ['a signature by another key under a known kid', () => signToken(claimsOf('firebase'), unpublished)],
    ['no exp', () => signToken(claimsOf('firebase', { exp: undefined }), current)],
    ['an iat in the future', () => signToken(claimsOf('firebase', { iat: now() + 600, exp: now() + 4200 }), current)],
    ['an auth_time in the future', () => signToken(claimsOf('firebase', { auth_time: now() + 600 }), current)],
    ['no auth_time', () => signToken(claimsOf('firebase', { auth_time: undefined }), current)],
    ['an empty sub', () => signToken(claimsOf('firebase', { sub: '' }), current)],
    ['a sub of 129 characters', () => signToken(claimsOf('firebase', { sub: 'u'.repeat(129) }), current)],
    ['no kid', () => signToken(claimsOf('firebase'), current, { kid: undefined as unknown as string })],
    ['not a JWT at all', () => 'not-a-token'],
  ];
  test('wrong ID tokens: 403 auth_failed with an invalid_token challenge, and the reason only in the log', async () => {
    for (const [name, make] of badIdTokens) {
      logLines.length = 0;
      const token = await make();
      const response = await post(server.url, bearer(token));
      assert.equal(response.status, 403, name);
      assert.equal(response.headers.get('www-authenticate'), 'Bearer realm="detourage", error="invalid_token"', name);
      const body = (await response.json()) as ErrorBody;
      assert.equal(body.error.code, 'forbidden', name);
      assert.equal(body.errors?.[0]?.code, 'auth_failed', name);
      const line = await lineOf();
      assert.equal((line?.error as { code?: string })?.code, 'forbidden', name);
      assert.ok(typeof (line?.error as { cause?: string })?.cause === 'string', `${name}: the log says why`);
      assert.ok(!JSON.stringify(logLines).includes(token), `${name}: the token stays out of the log`);
    }
    assert.equal(server.loadCount, 0);
  });

  test('wrong App Check tokens: 403', async () => {
    const tokens = [
      await signToken(claimsOf('app-check', { aud: ['projects/another-project'] }), current),
      await signToken(claimsOf('app-check', { iss: 'https://securetoken.google.com/detourage-test' }), current),
      await signToken(claimsOf('app-check', { exp: now() - 3600, iat: now() - 7200 }), current),
      await forgedHs256(claimsOf('app-check'), current),
    ];
    for (const token of tokens) {
      const response = await post(server.url, { 'X-Firebase-AppCheck': token });
      assert.equal(response.status, 403);
      assert.equal(((await response.json()) as ErrorBody).errors?.[0]?.title, 'App Check token invalid');
    }
  });

  test('any check passing lets the request in: a good App Check token beside a bad ID token', async () => {
    const response = await post(server.url, { ...bearer('not-a-token'), 'X-Firebase-AppCheck': await signToken(claimsOf('app-check'), current) });
    assert.equal(response.status, 400);
  });

  test('an unknown kid is refetched once: a rotated-in key passes, a made-up one does not', async () => {
    const rotated = await signingKey('key-2');
    keys.published.firebase = [current, rotated];
    const before = keys.fetches.firebase;
    clock += 31_000; // keys are refetched at most every 30 s, whatever kids are sent
    assert.equal((await post(server.url, bearer(await signToken(claimsOf('firebase'), rotated)))).status, 400);
    assert.equal(keys.fetches.firebase, before + 1);
    // Within the cooldown, made-up kids cost no fetch at all.
    for (const kid of ['made-up-1', 'made-up-2', 'made-up-3']) {
      const forged = await signingKey(kid);
      assert.equal((await post(server.url, bearer(await signToken(claimsOf('firebase'), forged)))).status, 403);
    }
    assert.equal(keys.fetches.firebase, before + 1);
  });

  test('the scheduler\'s OIDC token warms up, and does nothing else', async () => {
    const host = new URL(server.url).host;
    const oidc = (overrides: Record<string, unknown> = {}): Promise<string> => signToken(claimsOf('google-oidc', { aud: `https://${host}/`, ...overrides }), current);
    const warm = await fetch(`${server.url}/warmup`, { headers: bearer(await oidc()) });
    assert.equal(warm.status, 200);
    // removeBackground's own GET, which is what the job sends; warm already, so it answers at once.
    const again = await fetch(`${server.url}/remove-background`, { headers: bearer(await oidc({ aud: `https://${host}` })) });
    assert.equal(again.status, 200);
    assert.equal(((await again.json()) as { alreadyWarm?: boolean }).alreadyWarm, true);

    const refused: [string, Promise<string>][] = [
      ['another account', oidc({ email: 'someone@evil.example' })],
      ['an unverified email', oidc({ email_verified: false })],
      ['another function\'s URL', oidc({ aud: 'https://other-function.a.run.app/' })],
      ['an expired token', oidc({ iat: now() - 7200, exp: now() - 3600 })],
    ];
    for (const [name, token] of refused) {
      assert.equal((await fetch(`${server.url}/warmup`, { headers: bearer(await token) })).status, 403, name);
    }
    // A scheduler token is not a caller: it may not remove backgrounds.
    const removal = await post(server.url, bearer(await oidc()));
    assert.equal(removal.status, 403);
  });
});

test('Google\'s keys down: 503 auth_unavailable until they come back, then cached keys outlive another outage', async () => {
  let clock = Date.now();
  const fresh = await signingKey('outage-key');
  const outage = await startKeyServer([fresh]);
  const server = await startLocalServer(
    loadConfig({ ...process.env, PORT: '0', DETOURAGE_TEST_KEY_SERVER: outage.url, AUTH: 'firebase', FIREBASE_PROJECT_ID: TEST_PROJECT }),
    undefined,
    quiet,
    () => clock,
  );
  const tokenAt = (at: number): Promise<string> => {
    const iat = Math.floor(at / 1000) - 60;
    return signToken(claimsOf('firebase', { iat, exp: iat + 3600, auth_time: iat }), fresh);
  };
  try {
    outage.down = true;
    const refused = await post(server.url, bearer(await tokenAt(clock)));
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '5');
    assert.equal(((await refused.json()) as ErrorBody).error.code, 'auth_unavailable');
    // A stranger's credential-free request still costs no fetch: it is a 401 at once.
    assert.equal((await post(server.url, {})).status, 401);

    outage.down = false;
    clock += 31_000; // past the cooldown that follows a failed fetch
    assert.equal((await post(server.url, bearer(await tokenAt(clock)))).status, 400);

    outage.down = true;
    clock += 7 * 60 * 60 * 1000; // past the keys' max-age of 6 h
    const fetches = outage.fetches.firebase;
    assert.equal((await post(server.url, bearer(await tokenAt(clock)))).status, 400, 'stale keys keep serving');
    // The refresh runs behind the answer: wait for it to arrive rather than for a time.
    for (let waited = 0; outage.fetches.firebase === fetches && waited < 500; waited += 1) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(outage.fetches.firebase, fetches + 1, 'and a refresh was tried behind');
    assert.equal((await post(server.url, bearer(await tokenAt(clock)))).status, 400);
  } finally {
    await server.close();
    await outage.close();
  }
});

test('RATE_LIMIT_PER_MINUTE counts per Firebase user', async () => {
  const server = await startLocalServer(configWith({ AUTH: 'firebase', FIREBASE_PROJECT_ID: TEST_PROJECT, RATE_LIMIT_PER_MINUTE: '1' }), undefined, quiet);
  try {
    const user = async (sub: string): Promise<Response> => post(server.url, bearer(await signToken(claimsOf('firebase', { sub }), current)));
    assert.equal((await user('user-a')).status, 400);
    const limited = await user('user-a');
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get('x-ratelimit-limit'), '1');
    assert.equal((await user('user-b')).status, 400);
  } finally {
    await server.close();
  }
});

test('AUTH=api-key ignores an Authorization header: no key is still 401', async () => {
  const server = await startLocalServer(configWith({ AUTH: 'api-key', API_KEY_HASHES: `k:${'0'.repeat(64)}` }), undefined, quiet);
  try {
    const response = await post(server.url, bearer(await signToken(claimsOf('firebase'), current)));
    assert.equal(response.status, 401);
    assert.equal(response.headers.get('www-authenticate'), 'ApiKey realm="detourage", header="X-Api-Key"');
  } finally {
    await server.close();
  }
});
