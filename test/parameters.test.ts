/**
 * How parameter names and values are read, through real HTTP: every refusal
 * here is a 400 that comes before the image is decoded, so the model is never
 * loaded and the sweep costs a few hundred quick requests.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import type { Detourage } from '../functions/app';
import { loadConfig } from '../functions/config';
import { Logger } from '../functions/log';
import { OPTION_PARAMETERS } from '../functions/request/options';
import { type ErrorBody, postImage } from './support/http';
import { type RunningServer, startLocalServer } from './support/servers';

let service: RunningServer & { detourage: Detourage };
let removal: string;
let tiny: Buffer;

before(async () => {
  const quiet = new Logger({ level: 'error', pretty: false, write: () => undefined });
  service = await startLocalServer(loadConfig({ ...process.env, PORT: '0', ALLOWED_MODELS: '*' }), undefined, quiet);
  removal = `${service.url}/remove-background`;
  tiny = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#808080' } }).png().toBuffer();
});
after(() => service.close());

/** Every name an object inherits, which a plain `table[word]` lookup would find. */
const INHERITED_NAMES = [...new Set([...Object.getOwnPropertyNames(Object.prototype), '__proto__'])];

async function expectRefused(response: Response, context: string, message: RegExp): Promise<void> {
  const text = await response.text();
  assert.equal(response.status, 400, `${context}: ${text}`);
  const body = JSON.parse(text) as ErrorBody;
  assert.equal(body.error.code, 'invalid_parameter', `${context}: ${text}`);
  assert.match(body.error.message, message, context);
}

test('no parameter takes an Object.prototype name as its value', async () => {
  for (const name of OPTION_PARAMETERS) {
    for (const word of INHERITED_NAMES) {
      const response = await postImage(`${removal}?${name}=${encodeURIComponent(word)}`, tiny, 'image/png');
      await expectRefused(response, `${name}=${word}`, new RegExp(name));
    }
  }
  assert.equal(service.detourage.holder.isLoaded, false, 'every refusal came before the model was needed');
});

test('Object.prototype names are unknown parameter names, in the query and in every kind of body', async () => {
  const unknown = (name: string): RegExp => new RegExp(`Unknown parameter ${JSON.stringify(name)}`);
  for (const name of INHERITED_NAMES) {
    await expectRefused(await postImage(`${removal}?${encodeURIComponent(name)}=1`, tiny, 'image/png'), `?${name}`, unknown(name));
  }
  for (const name of ['__proto__', 'constructor']) {
    const form = new FormData();
    form.append('image_file', new Blob([tiny]), 'tiny.png');
    form.append(name, 'x');
    await expectRefused(await fetch(removal, { method: 'POST', body: form }), `multipart ${name}`, unknown(name));
    const urlencoded = `image_file_b64=${encodeURIComponent(tiny.toString('base64'))}&${name}=x`;
    await expectRefused(
      await fetch(removal, { method: 'POST', body: urlencoded, headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
      `urlencoded ${name}`,
      unknown(name),
    );
    // JSON.stringify would not write an own __proto__ member from an object literal, so the text is built by hand.
    const json = `{"image_file_b64":${JSON.stringify(tiny.toString('base64'))},${JSON.stringify(name)}:"x"}`;
    await expectRefused(
      await fetch(removal, { method: 'POST', body: json, headers: { 'content-type': 'application/json' } }),
      `JSON ${name}`,
      unknown(name),
    );
  }
  assert.equal(service.detourage.holder.isLoaded, false);
});
