import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { apiKeyHashEntry, createApiKey } from '../functions/access/apiKey';
import { loadConfig } from '../functions/config';
import { registry } from '../functions/model/registry';
import { PROJECT_ROOT } from '../functions/paths';
import { type ErrorBody, postForm, type RunningServer } from '../tools/lib/http';
import { startLocalServer } from './support/servers';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.join(PROJECT_ROOT, 'test-artifacts');
const RESULT_TIMEOUT_MS = 120_000;

/** The local server serves the page at /demo beside the real API. */
function startServerWithDemo(): Promise<RunningServer> {
  return startLocalServer(loadConfig({}));
}

interface AlphaCount {
  width: number;
  height: number;
  transparent: number;
  /** Alpha 250 or more: the matte rarely reaches 255 exactly. */
  opaque: number;
}

/** Runs in the page: the shown result's own pixels, read back through a canvas. */
const COUNT_ALPHA = `(async () => {
  const image = document.getElementById('cutout');
  await image.decode();
  const canvas = document.createElement('canvas');
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(image, 0, 0);
  const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
  let transparent = 0;
  let opaque = 0;
  for (let index = 3; index < data.length; index += 4) {
    if (data[index] === 0) transparent += 1;
    else if (data[index] >= 250) opaque += 1;
  }
  return { width: canvas.width, height: canvas.height, transparent, opaque };
})()`;

const SKIP = existsSync(CHROMIUM) ? false : 'chromium not installed: apt-get install chromium';

const KEY = createApiKey();

let server: RunningServer | undefined;
/** AUTH=api-key, and CORS for the pages of `server`, as a deployed function that a local demo page calls. */
let keyed: RunningServer | undefined;
let browser: Browser | undefined;

before(async () => {
  if (SKIP) return;
  server = await startServerWithDemo();
  keyed = await startLocalServer(loadConfig({ AUTH: 'api-key', API_KEY_HASHES: apiKeyHashEntry('demo', KEY), CORS_ORIGINS: server.url }));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
  await server?.close();
  await keyed?.close();
});

async function openDemo(origin = server!.url): Promise<{ page: Page; pageErrors: string[] }> {
  const page = await browser!.newPage({ viewport: { width: 1280, height: 600 } });
  const pageErrors: string[] = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(`${origin}/demo`);
  assert.equal(await page.title(), 'detourage: background removal demo');
  return { page, pageErrors };
}

test('demo page: a photo becomes a transparent cutout; a non-image shows the API error', { skip: SKIP }, async () => {
  const { page, pageErrors } = await openDemo();
  await page.setInputFiles('#file-input', path.join(PROJECT_ROOT, 'test', 'fixtures', 'car-1.jpg'));
  await page.waitForSelector('body[data-state="done"]', { timeout: RESULT_TIMEOUT_MS });
  const alpha = await page.evaluate<AlphaCount>(COUNT_ALPHA);
  assert.deepEqual([alpha.width, alpha.height], [480, 360]);
  assert.ok(alpha.transparent > 1000, `only ${alpha.transparent} transparent pixels`);
  assert.ok(alpha.opaque > 1000, `only ${alpha.opaque} opaque pixels`);
  assert.equal(await page.getAttribute('#download', 'download'), 'car-1.cutout.png');
  assert.match((await page.getAttribute('#download', 'href')) ?? '', /^blob:/);
  assert.equal(await page.isVisible('#compare'), true);
  await fs.mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'demo.png'), fullPage: true });

  const notAnImage = Buffer.from('shopping list: milk, eggs\n');
  const apiAnswer = await postForm(`${server!.url}/remove-background`, { image: notAnImage });
  const expected = ((await apiAnswer.json()) as ErrorBody).error.message;
  await page.setInputFiles('#file-input', { name: 'notes.txt', mimeType: 'text/plain', buffer: notAnImage });
  await page.waitForSelector('body[data-state="error"]', { timeout: RESULT_TIMEOUT_MS });
  assert.equal((await page.getByRole('alert').textContent())?.trim(), expected);
  assert.equal(await page.isVisible('#download'), false);
  assert.deepEqual(pageErrors, []);
});

/** The multipart form's text fields, as the server would read them. */
function formFields(body: Buffer): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const match of body.toString('latin1').matchAll(/name="([^"]+)"\r\n\r\n([^\r]*)\r\n/g)) fields[match[1]!] = match[2]!;
  return fields;
}

test('demo page: the options and a model from GET /models are sent as the API parameters', { skip: SKIP }, async () => {
  const { page, pageErrors } = await openDemo();
  // Both stubbed: the models list is not served yet, and no inference is needed to see the request.
  await page.route('**/models', (route) =>
    route.fulfill({ json: { default: 'isnet-fp16', models: [{ name: 'isnet-fp16', loaded: true }, { name: 'isnet-uint8', loaded: false }] } }),
  );
  let sent: Record<string, string> = {};
  await page.route('**/remove-background', async (route) => {
    sent = formFields(route.request().postDataBuffer() ?? Buffer.alloc(0));
    await route.fulfill({ status: 422, json: { error: { code: 'corrupt_image', message: 'Stubbed answer.' } } });
  });
  await page.reload();
  await page.waitForSelector('#model-field:not([hidden])');
  assert.deepEqual(await page.locator('#model option').allTextContents(), ['isnet-fp16 (loaded)', 'isnet-uint8']);
  assert.equal(await page.inputValue('#model'), 'isnet-fp16');
  await page.selectOption('#model', 'isnet-uint8');
  await page.selectOption('#format', 'webp');
  await page.uncheck('#transparent');
  await page.fill('#bg-color', '#ff0000');
  await page.check('#crop');
  await page.setInputFiles('#file-input', path.join(PROJECT_ROOT, 'test', 'fixtures', 'car-1.jpg'));
  await page.waitForSelector('body[data-state="error"]', { timeout: RESULT_TIMEOUT_MS });
  assert.deepEqual(sent, { format: 'webp', bg_color: 'ff0000', crop: 'true', model: 'isnet-uint8' });
  assert.equal((await page.getByRole('alert').textContent())?.trim(), 'Stubbed answer.');
  assert.deepEqual(pageErrors, []);
});

test('demo page: only the allowed models are offered, and none with a single allowed model', { skip: SKIP }, async () => {
  // The real GET /models of a server with the default configuration: one allowed model, so no picker.
  const { page, pageErrors } = await openDemo();
  await page.waitForFunction("document.getElementById('model-current').textContent !== ''");
  assert.equal(await page.textContent('#model-current'), ` (${registry.default})`);
  assert.equal(await page.isVisible('#model-field'), false);

  await page.route('**/models', (route) =>
    route.fulfill({
      json: {
        default: 'isnet-fp32',
        models: [
          { name: 'isnet-fp32', allowed: true, downloaded: true, loaded: true },
          { name: 'isnet-fp16', allowed: false, downloaded: true, loaded: false },
          { name: 'isnet-uint8', allowed: true, downloaded: false, loaded: false },
        ],
      },
    }),
  );
  await page.reload();
  await page.waitForSelector('#model-field:not([hidden])');
  assert.deepEqual(await page.locator('#model option').allTextContents(), ['isnet-fp32 (loaded)', 'isnet-uint8 (not downloaded)']);
  assert.equal(await page.inputValue('#model'), 'isnet-fp32');
  assert.deepEqual(pageErrors, []);
});

/** The X-Api-Key header of each HTTP request the page makes, by origin and path (the images' blob: URLs left out). */
function recordKeys(page: Page): Map<string, (string | undefined)[]> {
  const sent = new Map<string, (string | undefined)[]>();
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (!url.protocol.startsWith('http')) return;
    const target = `${url.origin}${url.pathname}`;
    sent.set(target, [...(sent.get(target) ?? []), request.headers()['x-api-key']]);
  });
  return sent;
}

test('demo page on an AUTH=api-key server: the 401 message, then the cutout with the key, kept for the tab alone', { skip: SKIP }, async () => {
  const { page, pageErrors } = await openDemo(keyed!.url);
  const sent = recordKeys(page);
  const refusal = ((await (await fetch(`${keyed!.url}/remove-background`, { method: 'POST' })).json()) as ErrorBody).error.message;
  await page.setInputFiles('#file-input', path.join(PROJECT_ROOT, 'test', 'fixtures', 'car-1.jpg'));
  await page.waitForSelector('body[data-state="error"]', { timeout: RESULT_TIMEOUT_MS });
  assert.equal((await page.getByRole('alert').textContent())?.trim(), `${refusal} Enter an API key above.`);

  await page.fill('#api-key', KEY);
  await page.press('#api-key', 'Enter');
  await page.waitForSelector('body[data-state="done"]', { timeout: RESULT_TIMEOUT_MS });
  const alpha = await page.evaluate<AlphaCount>(COUNT_ALPHA);
  assert.deepEqual([alpha.width, alpha.height], [480, 360]);
  assert.ok(alpha.transparent > 1000 && alpha.opaque > 1000, JSON.stringify(alpha));
  // Only the removal carries the key: /models and /health need none.
  const removals = `${keyed!.url}/remove-background`;
  assert.deepEqual(sent.get(removals), [undefined, KEY]);
  assert.ok([...sent].every(([target, keys]) => target === removals || keys.every((key) => key === undefined)), JSON.stringify([...sent]));

  await page.reload();
  assert.equal(await page.inputValue('#api-key'), KEY);
  assert.ok(!page.url().includes(KEY.slice(4)), page.url());
  assert.equal(await page.evaluate('localStorage.length'), 0);
  assert.ok(!(await page.content()).includes(KEY.slice(4)), 'the key is in the HTML');

  // The restored key is sent; a rate limit's answer says when to try again.
  let keySent: string | undefined;
  await page.route('**/remove-background', async (route) => {
    keySent = route.request().headers()['x-api-key'];
    await route.fulfill({ status: 429, headers: { 'Retry-After': '42' }, json: { error: { code: 'rate_limited', message: 'Stubbed limit.' } } });
  });
  await page.setInputFiles('#file-input', path.join(PROJECT_ROOT, 'test', 'fixtures', 'car-1.jpg'));
  await page.waitForSelector('body[data-state="error"]', { timeout: RESULT_TIMEOUT_MS });
  assert.equal((await page.getByRole('alert').textContent())?.trim(), 'Stubbed limit. Try again in 42 s.');
  assert.equal(keySent, KEY);
  assert.deepEqual(pageErrors, []);
});

test('demo page calls another endpoint: a deployed key-protected function, through its CORS', { skip: SKIP }, async () => {
  // The page comes from `server`; the removals go to `keyed`, which lists the page's origin in CORS_ORIGINS.
  const { page, pageErrors } = await openDemo();
  await page.waitForFunction("document.getElementById('model-current').textContent !== ''");
  const sent = recordKeys(page);
  await page.fill('#endpoint', `${keyed!.url}/remove-background`);
  await page.fill('#api-key', 'dtr_not-a-key');
  await page.setInputFiles('#file-input', path.join(PROJECT_ROOT, 'test', 'fixtures', 'car-1.jpg'));
  await page.waitForSelector('body[data-state="error"]', { timeout: RESULT_TIMEOUT_MS });
  // The 403 body reached the page: the function's CORS headers let it read the answer.
  assert.equal((await page.getByRole('alert').textContent())?.trim(), 'The X-Api-Key header holds no valid key. Check the API key above.');
  // Another endpoint is not asked for its models: its paths would be removals or warmups.
  assert.equal(await page.textContent('#model-current'), '');

  await page.fill('#api-key', KEY);
  await page.press('#api-key', 'Enter');
  await page.waitForSelector('body[data-state="done"]', { timeout: RESULT_TIMEOUT_MS });
  assert.match((await page.textContent('#result-info')) ?? '', new RegExp(`model ${registry.default}$`));
  assert.deepEqual([...sent], [[`${keyed!.url}/remove-background`, ['dtr_not-a-key', KEY]]]);
  await page.reload();
  assert.equal(await page.inputValue('#endpoint'), `${keyed!.url}/remove-background`);
  assert.deepEqual(pageErrors, []);
});
