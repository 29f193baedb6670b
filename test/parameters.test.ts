/**
 * How parameter names and values are read, through real HTTP: every refusal
 * here is a 400 that comes before the image is decoded, so the model is never
 * loaded and the sweep costs a few hundred quick requests.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import type { Services } from '../functions/app';
// Registers the deployed functions, for startFunction.
import '../functions/index';
import { loadConfig } from '../functions/config';
import { Logger } from '../functions/log';
import { parametersOfKind } from '../functions/request/parameters';
import { type ErrorBody, postImage, type RunningServer } from '../tools/lib/http';
import { startFunction, startLocalServer } from './support/servers';

let service: RunningServer & { detourage: Services };
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

/** `parameter`: the name the answer's error.parameter must give. */
async function expectRefused(response: Response, context: string, message: RegExp, parameter?: string): Promise<void> {
  const text = await response.text();
  assert.equal(response.status, 400, `${context}: ${text}`);
  const body = JSON.parse(text) as ErrorBody & { error: { parameter?: string } };
  assert.equal(body.error.code, 'invalid_parameter', `${context}: ${text}`);
  assert.match(body.error.message, message, context);
  if (parameter !== undefined) assert.equal(body.error.parameter, parameter, context);
}

test('no parameter takes an Object.prototype name as its value', async () => {
  for (const name of parametersOfKind('value')) {
    for (const word of INHERITED_NAMES) {
      const response = await postImage(`${removal}?${name}=${encodeURIComponent(word)}`, tiny, 'image/png');
      await expectRefused(response, `${name}=${word}`, new RegExp(name), name);
    }
  }
  assert.equal(service.detourage.holder.isLoaded, false, 'every refusal came before the model was needed');
});

test('Object.prototype names are unknown parameter names, in the query and in every kind of body', async () => {
  const unknown = (name: string): RegExp => new RegExp(`Unknown parameter ${JSON.stringify(name)}`);
  for (const name of INHERITED_NAMES) {
    await expectRefused(await postImage(`${removal}?${encodeURIComponent(name)}=1`, tiny, 'image/png'), `?${name}`, unknown(name), name);
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

const post = (body: string, contentType: string, query = ''): Promise<Response> =>
  fetch(`${removal}${query}`, { method: 'POST', body, headers: { 'content-type': contentType } });

function multipart(parts: [string, string | Buffer][]): FormData {
  const form = new FormData();
  for (const [name, value] of parts) {
    if (typeof value === 'string') form.append(name, value);
    else form.append(name, new Blob([value]), `${name}.png`);
  }
  return form;
}

test('a parameter given twice in the query string, or as a structure, is a 400 naming it', async () => {
  for (const [query, name] of [
    ['format=png&format=webp', 'format'],
    ['format=png&format=png', 'format'],
    ['formt=a&formt=b', 'formt'],
    ['image_url=a&image_url=b', 'image_url'],
  ]) {
    await expectRefused(await postImage(`${removal}?${query}`, tiny, 'image/png'), query!, new RegExp(`"${name}" is given more than once in the query string`));
  }
  await expectRefused(await postImage(`${removal}?format[a]=b`, tiny, 'image/png'), 'format[a]=b', /format/);
  await expectRefused(await postImage(`${removal}?format[]=png`, tiny, 'image/png'), 'format[]=png', /format/);
  assert.equal(service.detourage.holder.isLoaded, false);
});

test('a field given twice in one body is a 400 naming it, in multipart, a form and JSON', async () => {
  const b64 = tiny.toString('base64');
  const repeated = /"format" is given more than once in the (multipart|form|JSON) body/;
  // JSON.parse would keep the second. Built by hand, as an object cannot hold both; the escape is decoded before comparing.
  await expectRefused(await post(`{"image_file_b64":"${b64}","format":"png","form\\u0061t":"webp"}`, 'application/json'), 'JSON format twice', repeated);
  await expectRefused(
    await fetch(removal, { method: 'POST', body: multipart([['image_file', tiny], ['format', 'png'], ['format', 'webp']]) }),
    'multipart format twice',
    repeated,
  );
  await expectRefused(await post(`image_file_b64=${encodeURIComponent(b64)}&format=png&format=webp`, 'application/x-www-form-urlencoded'), 'form format twice', repeated);
  await expectRefused(
    await post(`image_file_b64=${encodeURIComponent(b64)}&image_file_b64=${encodeURIComponent(b64)}`, 'application/x-www-form-urlencoded'),
    'form image_file_b64 twice',
    /"image_file_b64" is given more than once in the form body/,
  );
  assert.equal(service.detourage.holder.isLoaded, false);
});

test('two image files in one multipart body are a 400 naming both', async () => {
  for (const [first, second, message] of [
    ['image', 'image_file', /given twice in the multipart body, as image and image_file/],
    ['file', 'image_file', /given twice in the multipart body, as file and image_file/],
    ['image_file', 'image', /given twice in the multipart body, as image_file and image/],
    ['image_file', 'image_file', /"image_file" is given more than once in the multipart body/],
    ['bg_image_file', 'bg_image_file', /"bg_image_file" is given more than once in the multipart body/],
  ] as const) {
    const parts: [string, Buffer][] = [[first, tiny], [second, tiny]];
    if (first === 'bg_image_file') parts.unshift(['image_file', tiny]);
    await expectRefused(await fetch(removal, { method: 'POST', body: multipart(parts) }), `${first} and ${second}`, message);
  }
  assert.equal(service.detourage.holder.isLoaded, false);
});

test('the functions framework parses repeats the same way', async () => {
  const deployed = await startFunction('removeBackground');
  try {
    const response = await postImage(`${deployed.url}/remove-background?format=png&format=webp`, tiny, 'image/png');
    await expectRefused(response, 'functions framework', /"format" is given more than once in the query string/);
  } finally {
    await deployed.close();
  }
});

// Last: it is the one request here that runs the model.
test('once in the query and once in the body is fine: the body wins', async () => {
  const response = await fetch(`${removal}?format=png`, { method: 'POST', body: multipart([['image_file', tiny], ['format', 'webp']]) });
  assert.equal(response.status, 200, await response.clone().text());
  assert.equal(response.headers.get('content-type'), 'image/webp');
  await response.arrayBuffer();
});
