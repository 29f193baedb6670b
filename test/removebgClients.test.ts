/**
 * A program written for remove.bg works when only its endpoint changes. These
 * are the requests remove.bg's own client libraries send, byte for byte where
 * it matters, replayed against `POST /v1.0/removebg` with an API key:
 * - the npm package `remove.bg` 1.3.0 (`removeBackgroundFromImageBase64`):
 *   a JSON body, `Accept: application/json`, every option present;
 * - the Python client `removebg` (`remove_background_from_img_file`): a
 *   multipart form with remove.bg's defaults spelled out, `add_shadow`,
 *   `semitransparency` and `type_level` among them, and an image answer.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { apiKeyHashEntry, createApiKey } from '../functions/access/apiKey';
import { loadConfig } from '../functions/config';
import { Logger } from '../functions/log';
import { fixture } from '../tools/lib/images';
import { type RunningServer } from '../tools/lib/http';
import { startLocalServer } from './support/servers';

const KEY = createApiKey();
const quiet = new Logger({ level: 'error', pretty: false, write: () => undefined });
let server: RunningServer;
let photo: Buffer;

before(async () => {
  server = await startLocalServer(loadConfig({ ...process.env, PORT: '0', AUTH: 'api-key', API_KEY_HASHES: apiKeyHashEntry('removebg-client', KEY) }), undefined, quiet);
  // A small photo keeps the inference cheap; the model sees 1024x1024 whatever the input.
  photo = await sharp(fixture('car-1.jpg')).resize({ width: 480 }).jpeg().toBuffer();
});
after(() => server.close());

test('the npm client: JSON in, remove.bg\'s JSON out, with its headers', async () => {
  // getRequestOptions() of remove.bg 1.3.0; JSON.stringify drops the options left undefined.
  const body = { size: 'preview', type: 'auto', crop: false, image_file_b64: photo.toString('base64') };
  const response = await fetch(`${server.url}/v1.0/removebg`, {
    method: 'POST',
    headers: { 'X-Api-Key': KEY, Accept: 'application/json', 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, await response.clone().text());
  const answer = (await response.json()) as { data: { result_b64: string; foreground_top: number; foreground_width: number } };
  const cutout = await sharp(Buffer.from(answer.data.result_b64, 'base64')).metadata();
  assert.equal(cutout.hasAlpha, true);
  // What the client reads from the headers.
  for (const name of ['x-type', 'x-width', 'x-height']) assert.ok(response.headers.get(name), name);
  assert.ok(answer.data.foreground_width > 0);
});

test('the Python client: a multipart form with remove.bg\'s defaults spelled out, an image out', async () => {
  const form = new FormData();
  const fields: Record<string, string> = {
    size: 'auto',
    type: 'auto',
    type_level: 'none',
    format: 'auto',
    roi: '0% 0% 100% 100%',
    crop: 'false',
    scale: 'original',
    position: 'original',
    channels: 'rgba',
    add_shadow: 'false',
    semitransparency: 'true',
  };
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  form.append('image_file', new Blob([photo]), 'car.jpg');
  const response = await fetch(`${server.url}/v1.0/removebg`, { method: 'POST', headers: { 'X-Api-Key': KEY }, body: form });
  assert.equal(response.status, 200, await response.clone().text());
  assert.equal(response.headers.get('content-type'), 'image/png');
  const cutout = await sharp(Buffer.from(await response.arrayBuffer())).metadata();
  assert.deepEqual([cutout.width, cutout.height, cutout.hasAlpha], [480, (await sharp(photo).metadata()).height, true]);
});

test('a remove.bg client reads our refusals as remove.bg\'s', async () => {
  const response = await fetch(`${server.url}/v1.0/removebg`, { method: 'POST', headers: { 'X-Api-Key': 'dtr_wrong', Accept: 'application/json' } });
  assert.equal(response.status, 403);
  // The npm client rejects with body.errors; the Python client prints errors[0].title.
  assert.deepEqual(((await response.json()) as { errors: unknown }).errors, [{ title: 'API Key invalid', code: 'auth_failed' }]);
});
