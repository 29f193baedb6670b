import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { fixture, pngClaimingSize } from '../tools/lib/images';
import { type ErrorBody, postForm, postImage, type RunningServer } from '../tools/lib/http';
import { startFunction } from './support/servers';

const MAX_UPLOAD_BYTES = 2_000_000;
const MAX_INPUT_PIXELS = 2_000_000;

let removal: RunningServer;
let health: RunningServer;
let warmup: RunningServer;

before(async () => {
  process.env.MAX_UPLOAD_BYTES = String(MAX_UPLOAD_BYTES);
  process.env.MAX_INPUT_PIXELS = String(MAX_INPUT_PIXELS);
  await import('../functions/index');
  [removal, health, warmup] = await Promise.all([startFunction('removeBackground'), startFunction('health'), startFunction('warmup')]);
});
after(async () => {
  await Promise.all([removal.close(), health.close(), warmup.close()]);
});

async function expectError(responsePromise: Promise<Response>, status: number, code: string): Promise<ErrorBody> {
  const response = await responsePromise;
  const text = await response.text();
  assert.equal(response.status, status, text);
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  const body = JSON.parse(text) as ErrorBody;
  assert.equal(body.error.code, code);
  assert.ok(body.error.message.length > 0);
  assert.doesNotMatch(text, /\n\s+at |\.ts:\d|\.js:\d/, 'no stack traces in responses');
  return body;
}

function multipartWithoutBoundary(): Promise<Response> {
  return fetch(removal.url, { method: 'POST', body: 'x', headers: { 'content-type': 'multipart/form-data' } });
}

test('no file or an empty body is a 400', async () => {
  await expectError(postImage(removal.url, Buffer.alloc(0)), 400, 'missing_image');
  await expectError(postForm(removal.url, { format: 'png' }), 400, 'missing_image');
  await expectError(postForm(removal.url, { picture: fixture('car-1.jpg') }), 400, 'invalid_parameter');
  await expectError(postForm(removal.url, { image: Buffer.alloc(0) }), 400, 'missing_image');
  await expectError(fetch(removal.url, { method: 'POST' }), 400, 'missing_image');
});

test('a bad parameter value is a 400 that names it', async () => {
  const image = fixture('car-1.jpg');
  for (const [query, name] of [['format=gif', 'format'], ['type=outline', 'type'], ['bg_color=reddish', 'bg_color'], ['bg_color=%23ff00f', 'bg_color']]) {
    const body = await expectError(postImage(`${removal.url}?${query}`, image), 400, 'invalid_parameter');
    assert.match(body.error.message, new RegExp(name!));
  }
  await expectError(postForm(removal.url, { image, format: 'bmp' }), 400, 'invalid_parameter');
});

test('a wrong method is a 405 with Allow', async () => {
  const put = await fetch(removal.url, { method: 'PUT', body: 'x' });
  assert.equal(put.headers.get('allow'), 'POST, GET');
  await expectError(Promise.resolve(put), 405, 'method_not_allowed');
  await expectError(fetch(removal.url, { method: 'DELETE' }), 405, 'method_not_allowed');
  await expectError(fetch(health.url, { method: 'POST', body: 'x' }), 405, 'method_not_allowed');
  await expectError(fetch(warmup.url, { method: 'PUT', body: 'x' }), 405, 'method_not_allowed');
});

test('an upload over MAX_UPLOAD_BYTES is a 413', async () => {
  const big = Buffer.alloc(MAX_UPLOAD_BYTES + 1, 7);
  await expectError(postImage(removal.url, big), 413, 'payload_too_large');
  await expectError(postForm(removal.url, { image: big }), 413, 'payload_too_large');
});

test('an image over MAX_INPUT_PIXELS is a 413, refused from the header', async () => {
  const bomb = pngClaimingSize(50_000, 50_000);
  assert.ok(bomb.length < 100);
  const started = performance.now();
  const body = await expectError(postImage(removal.url, bomb, 'image/png'), 413, 'image_too_large');
  assert.match(body.error.message, /50000x50000/);
  assert.ok(performance.now() - started < 1000);

  const large = await sharp({ create: { width: 2000, height: 1001, channels: 3, background: '#808080' } }).jpeg().toBuffer();
  await expectError(postImage(removal.url, large), 413, 'image_too_large');
});

test('not an image, or an unsupported format, is a 415', async () => {
  await expectError(postImage(removal.url, Buffer.from('hello, I am text'), 'image/png'), 415, 'unsupported_media_type');
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
  await expectError(postImage(removal.url, svg, 'image/svg+xml'), 415, 'unsupported_media_type');
  await expectError(postImage(removal.url, Buffer.from('%PDF-1.4\n%âãÏÓ\n1 0 obj\n'), 'application/octet-stream'), 415, 'unsupported_media_type');
  await expectError(postImage(removal.url, fixture('car-1.jpg'), 'text/plain'), 415, 'unsupported_media_type');
  await expectError(postForm(removal.url, { image: Buffer.from('not an image at all') }), 415, 'unsupported_media_type');
});

test('a corrupt or truncated image is a 422', async () => {
  const jpeg = fixture('car-1.jpg');
  await expectError(postImage(removal.url, jpeg.subarray(0, jpeg.length / 2)), 422, 'corrupt_image');
  const png = await sharp(jpeg).png().toBuffer();
  await expectError(postImage(removal.url, png.subarray(0, png.length / 2), 'image/png'), 422, 'corrupt_image');
  const scrambled = Buffer.from(jpeg);
  scrambled.fill(0x55, 100, 300);
  await expectError(postImage(removal.url, scrambled), 422, 'corrupt_image');
});

test('malformed multipart is a 400', async () => {
  await expectError(multipartWithoutBoundary(), 400, 'bad_request');
  const truncated = Buffer.from('--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\nabc');
  await expectError(
    fetch(removal.url, { method: 'POST', body: truncated, headers: { 'content-type': 'multipart/form-data; boundary=xyz' } }),
    400,
    'bad_request',
  );
});

test('the instance keeps serving after every bad input', async () => {
  const response = await postImage(`${removal.url}?type=mask`, fixture('car-1.jpg'));
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'image/png');
});
