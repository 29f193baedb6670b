/**
 * AUTH=api-key,firebase, scheduler warmups and CORS_ORIGINS on the deployed
 * functions: the functions framework's own test server, which (like Cloud
 * Functions) reads the body before the function runs and answers on any path.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { apiKeyHashEntry, createApiKey } from '../functions/access/apiKey';
import { claimsOf, type KeyServer, SCHEDULER_ACCOUNT, signingKey, type SigningKey, signToken, startKeyServer, TEST_PROJECT } from '../tools/lib/keyServer';
import { type RunningServer } from '../tools/lib/http';
import { registerFunctions, startFunction } from './support/servers';

const KEY = createApiKey();
const PAGE = 'https://app.example.com';

let removal: RunningServer;
let warmup: RunningServer;
let health: RunningServer;
let loadCount: () => number;
let keys: KeyServer;
let signing: SigningKey;

before(async () => {
  signing = await signingKey('functions-key');
  keys = await startKeyServer([signing]);
  // The functions read their configuration when they are registered, as on an instance's start.
  Object.assign(process.env, {
    AUTH: 'api-key,firebase',
    API_KEY_HASHES: apiKeyHashEntry('functions-test', KEY),
    FIREBASE_PROJECT_ID: TEST_PROJECT,
    WARMUP_SERVICE_ACCOUNTS: SCHEDULER_ACCOUNT,
    DETOURAGE_TEST_KEY_SERVER: keys.url,
    CORS_ORIGINS: PAGE,
    LOG_LEVEL: 'error',
  });
  const deployed = await registerFunctions();
  loadCount = () => deployed.loadCount;
  [removal, warmup, health] = await Promise.all([startFunction('removeBackground'), startFunction('warmup'), startFunction('health')]);
});
after(() => Promise.all([removal.close(), warmup.close(), health.close(), keys.close()]));

test('removeBackground answers on any path, remove.bg\'s included, behind the key check', async () => {
  for (const route of ['/', '/v1.0/removebg', '/remove-background']) {
    assert.equal((await fetch(`${removal.url}${route}`, { method: 'POST' })).status, 401, route);
    const response = await fetch(`${removal.url}${route}`, { method: 'POST', headers: { 'X-Api-Key': KEY } });
    assert.equal(response.status, 400, route);
    assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'missing_image');
  }
  const wrong = await fetch(`${removal.url}/v1.0/removebg`, { method: 'POST', headers: { 'X-Api-Key': createApiKey() } });
  assert.equal(wrong.status, 403);
  assert.deepEqual(((await wrong.json()) as { errors: unknown }).errors, [{ title: 'API Key invalid', code: 'auth_failed' }]);
});

test('warmup needs the key; health stays open; neither refusal loads the model', async () => {
  assert.equal((await fetch(warmup.url, { method: 'POST' })).status, 401);
  assert.equal((await fetch(removal.url)).status, 401);
  assert.equal((await fetch(health.url)).status, 200);
  assert.equal(loadCount(), 0);
});

test('the functions answer preflights themselves, and errors carry the CORS headers', async () => {
  const preflight = await fetch(`${removal.url}/v1.0/removebg`, {
    method: 'OPTIONS',
    headers: { Origin: PAGE, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'x-api-key' },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get('access-control-allow-origin'), PAGE);
  assert.equal(preflight.headers.get('access-control-allow-methods'), 'POST, GET');
  const other = await fetch(removal.url, { method: 'OPTIONS', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' } });
  assert.equal(other.headers.get('access-control-allow-origin'), null);

  const refused = await fetch(removal.url, { method: 'POST', headers: { Origin: PAGE } });
  assert.equal(refused.status, 401);
  assert.equal(refused.headers.get('access-control-allow-origin'), PAGE);
  assert.match(refused.headers.get('access-control-expose-headers') ?? '', /X-Foreground-Width/);
  assert.match(refused.headers.get('vary') ?? '', /Origin/);
});

test('a Firebase ID token passes removeBackground on any path; a wrong one is 403', async () => {
  const token = await signToken(claimsOf('firebase'), signing);
  for (const route of ['/', '/v1.0/removebg']) {
    const response = await fetch(`${removal.url}${route}`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
    assert.equal(response.status, 400, route);
  }
  const wrong = await fetch(removal.url, { method: 'POST', headers: { Authorization: `Bearer ${await signToken(claimsOf('firebase', { aud: 'other-project' }), signing)}` } });
  assert.equal(wrong.status, 403);
});

test('Cloud Scheduler\'s GET with its OIDC token warms removeBackground\'s own instance on a public function', async () => {
  const audience = `https://${new URL(removal.url).host}`;
  const token = await signToken(claimsOf('google-oidc', { aud: audience }), signing);
  const response = await fetch(removal.url, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(response.status, 200);
  assert.equal(loadCount(), 1);
  const stranger = await signToken(claimsOf('google-oidc', { aud: audience, email: 'someone@else.iam.gserviceaccount.com' }), signing);
  assert.equal((await fetch(removal.url, { headers: { Authorization: `Bearer ${stranger}` } })).status, 403);
});
