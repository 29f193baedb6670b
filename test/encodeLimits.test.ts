/**
 * Each encoder's size limit, through real HTTP on the real model: a format
 * that cannot hold the result is a 422 that says why, and format=auto picks
 * one that can. The images are solid colours, tiny to upload.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import sharp, { type Sharp } from 'sharp';
import { loadConfig } from '../functions/config';
import { ApiError, causeForLog } from '../functions/errors';
import { Logger } from '../functions/log';
import { checkEncodable, compress, MAX_SIDE } from '../functions/pipeline/encode';
import { type ErrorBody, postImage, type RunningServer } from '../tools/lib/http';
import { startLocalServer } from './support/servers';

let service: RunningServer;
let removal: string;
/** 30 MP and 21 MP: under MAX_INPUT_PIXELS' default 40 MP. */
let wide: Buffer;
let veryWide: Buffer;

before(async () => {
  const quiet = new Logger({ level: 'error', pretty: false, write: () => undefined });
  service = await startLocalServer(loadConfig({ ...process.env, PORT: '0' }), undefined, quiet);
  removal = `${service.url}/remove-background`;
  const solid = (width: number, height: number): Sharp => sharp({ create: { width, height, channels: 3, background: '#3060a0' } });
  wide = await solid(20_000, 1_500).jpeg().toBuffer();
  veryWide = await solid(70_000, 300).png().toBuffer();
});
after(() => service.close());

async function expectNotEncodable(response: Response, message: RegExp): Promise<void> {
  const text = await response.text();
  assert.equal(response.status, 422, text);
  const { error } = JSON.parse(text) as ErrorBody;
  assert.equal(error.code, 'output_not_encodable');
  assert.match(error.message, message);
}

test('the limits: WebP 16383 px per side, JPEG 65500, PNG 2^31 - 1', () => {
  assert.deepEqual(MAX_SIDE, { webp: 16_383, jpeg: 65_500, png: 2 ** 31 - 1 });
  const refuses = (width: number, height: number, format: 'auto' | 'png' | 'jpeg' | 'webp' | 'zip', channels: 'rgba' | 'alpha' = 'rgba'): boolean => {
    try {
      checkEncodable(width, height, { format, channels });
      return false;
    } catch (error) {
      assert.ok(error instanceof ApiError && error.code === 'output_not_encodable', String(error));
      return true;
    }
  };
  assert.equal(refuses(16_383, 16_383, 'webp'), false);
  assert.equal(refuses(10, 16_384, 'webp'), true);
  assert.equal(refuses(65_500, 10, 'jpeg', 'alpha'), false);
  assert.equal(refuses(65_501, 10, 'jpeg', 'alpha'), true);
  assert.equal(refuses(65_501, 10, 'zip'), true);
  assert.equal(refuses(65_501, 10, 'auto'), false, 'auto falls back to PNG');
  assert.equal(refuses(2 ** 31, 1, 'auto'), true);
});

test("libvips' own refusal while encoding is a 422 too, not a 500", async () => {
  const pixels = { data: Buffer.alloc(16_384 * 3), width: 16_384, height: 1, channels: 3 as const };
  await assert.rejects(compress(pixels, 'webp'), (error: unknown) => {
    assert.ok(error instanceof ApiError, String(error));
    assert.equal(error.code, 'output_not_encodable');
    assert.equal(error.status, 422);
    assert.match(error.message, /16384x1 result could not be encoded as WebP/);
    // libvips' words go to the log line, not to the caller.
    assert.match(causeForLog(error).cause ?? '', /too large for the WebP format/);
    return true;
  });
});

test('format=webp on a 20000x1500 result is a 422 that says why', async () => {
  await expectNotEncodable(
    await postImage(`${removal}?format=webp`, wide),
    /^WebP holds at most 16383 px per side; this result is 20000x1500: use format=png or format=jpg or a smaller size\.$/,
  );
  await expectNotEncodable(await postImage(`${removal}?format=webp&channels=alpha`, wide), /WebP holds at most 16383 px/);
});

test('format=jpg and format=zip on a 70000x300 result are 422s; zip because of its JPEG', async () => {
  await expectNotEncodable(await postImage(`${removal}?format=jpg`, veryWide, 'image/png'), /^JPEG holds at most 65500 px per side; this result is 70000x300: use format=png or a smaller size\.$/);
  await expectNotEncodable(await postImage(`${removal}?format=zip`, veryWide, 'image/png'), /^format=zip holds a JPEG \(color\.jpg\), and JPEG holds at most 65500 px/);
});

test('format=auto on an opaque 70000x300 result gives a PNG, as JPEG cannot hold it', async () => {
  const response = await postImage(`${removal}?bg_color=white`, veryWide, 'image/png');
  const body = Buffer.from(await response.arrayBuffer());
  assert.equal(response.status, 200, body.toString().slice(0, 300));
  assert.equal(response.headers.get('content-type'), 'image/png');
  const metadata = await sharp(body).metadata();
  assert.deepEqual([metadata.format, metadata.width, metadata.height, metadata.hasAlpha], ['png', 70_000, 300, false]);
});
