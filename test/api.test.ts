/**
 * The remove.bg-style parameters through real HTTP on the real model: each
 * response is decoded and checked against what the parameter promises.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import type { Services } from '../functions/app';
import { loadConfig } from '../functions/config';
import { PROJECT_ROOT } from '../functions/paths';
import { FOREGROUND_ALPHA_THRESHOLD, foregroundBox } from '../functions/pipeline/layout';
import type { Box } from '../functions/pipeline/types';
import { alphaChannel, compareAlpha, fixture, rawPixels } from '../tools/lib/images';
import { bodyBytes, type ErrorBody, listen, postForm, postImage, type RunningServer } from '../tools/lib/http';
import { startLocalServer } from './support/servers';
import { readZip } from './support/zip';

const CAR = fixture('car-1.jpg');

let service: RunningServer & { detourage: Services };
let removal: string;
/** Serves fixtures over loopback, for image_url and bg_image_url. */
let images: RunningServer;
/** The same service without the test-only loopback allowance. */
let strictService: RunningServer;

before(async () => {
  const config = loadConfig({ ...process.env, PORT: '0', DETOURAGE_TEST_ALLOW_LOOPBACK_URLS: '1', MAX_QUEUE: '8', ALLOWED_MODELS: '*' });
  service = await startLocalServer(config);
  removal = `${service.url}/remove-background`;
  strictService = await startLocalServer(loadConfig({ ...process.env, PORT: '0' }));
  images = await listen(
    createServer((request, response) => {
      const name = request.url?.slice(1) ?? '';
      if (!/^[\w.-]+\.jpg$/.test(name) || !existsSync(path.join(PROJECT_ROOT, 'test', 'fixtures', name))) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { 'content-type': 'image/jpeg' }).end(fixture(name));
    }),
  );
});
after(async () => {
  await Promise.all([service.close(), strictService.close(), images.close()]);
});

function headerBox(response: Response): Box {
  const value = (name: string): number => Number(response.headers.get(`x-foreground-${name}`));
  return { left: value('left'), top: value('top'), width: value('width'), height: value('height') };
}

async function expectImage(response: Response, contentType: string): Promise<Buffer> {
  const body = await bodyBytes(response);
  assert.equal(response.status, 200, body.toString());
  assert.equal(response.headers.get('content-type'), contentType);
  return body;
}

/** The foreground headers describe the returned image's own alpha. */
async function assertForegroundMatches(response: Response, body: Buffer): Promise<Box> {
  const alpha = await alphaChannel(body);
  const box = headerBox(response);
  assert.deepEqual(box, foregroundBox({ width: alpha.width, height: alpha.height, alpha: alpha.data }));
  return box;
}

async function expectError(responsePromise: Promise<Response>, status: number, code: string, message?: RegExp): Promise<void> {
  const response = await responsePromise;
  const text = await response.text();
  assert.equal(response.status, status, text);
  const body = JSON.parse(text) as ErrorBody;
  assert.equal(body.error.code, code, text);
  if (message) assert.match(body.error.message, message);
}

function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });
}

test('a plain upload: format auto gives a PNG, with the headers and a foreground box that matches the alpha', async () => {
  const response = await postImage(removal, CAR);
  const body = await expectImage(response, 'image/png');
  assert.equal(response.headers.get('x-width'), '480');
  assert.equal(response.headers.get('x-height'), '360');
  assert.equal(response.headers.get('x-type'), service.detourage.holder.entry.name);
  assert.match(response.headers.get('x-request-id') ?? '', /^[\w-]{8,}$/);
  assert.match(response.headers.get('server-timing') ?? '', /decode;dur=.*infer;dur=.*layout;dur=.*encode;dur=/);
  const box = await assertForegroundMatches(response, body);
  assert.ok(box.width > 100 && box.height > 50, `the car is found: ${JSON.stringify(box)}`);
});

test('image_file_b64 in JSON with Accept: application/json answers remove.bg-style JSON', async () => {
  const response = await postJson(removal, { image_file_b64: CAR.toString('base64'), size: 'full' }, { accept: 'application/json' });
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  const { data } = (await response.json()) as {
    data: { result_b64: string; foreground_top: number; foreground_left: number; foreground_width: number; foreground_height: number };
  };
  const image = Buffer.from(data.result_b64, 'base64');
  const metadata = await sharp(image).metadata();
  assert.deepEqual([metadata.format, metadata.width, metadata.height], ['png', 480, 360]);
  const alpha = await alphaChannel(image);
  assert.deepEqual(
    { left: data.foreground_left, top: data.foreground_top, width: data.foreground_width, height: data.foreground_height },
    foregroundBox({ width: alpha.width, height: alpha.height, alpha: alpha.data }),
  );
});

test('image_url in a URL-encoded form with size=preview: at most 0.25 MP, same aspect ratio', async () => {
  const form = new URLSearchParams({ image_url: `${images.url}/plants-1.jpg`, size: 'preview' });
  const response = await fetch(removal, { method: 'POST', body: form });
  const body = await expectImage(response, 'image/png');
  const metadata = await sharp(body).metadata();
  const [width, height] = [metadata.width, metadata.height];
  assert.ok(width * height <= 250_000, `${width}x${height}`);
  assert.ok(width * height > 240_000, `${width}x${height} uses the budget`);
  assert.ok(Math.abs(width / height - 987 / 1481) < 0.01);
  assert.equal(response.headers.get('x-width'), String(width));
});

test('channels=alpha gives the matte; type=mask is its older name', async () => {
  for (const query of ['channels=alpha', 'type=mask']) {
    const body = await expectImage(await postImage(`${removal}?${query}`, CAR), 'image/png');
    const metadata = await sharp(body).metadata();
    assert.deepEqual([metadata.channels, metadata.width, metadata.height], [1, 480, 360], query);
  }
});

test('format=zip holds color.jpg and alpha.png, smaller than the PNG cutout', async () => {
  const [zipResponse, pngResponse] = await Promise.all([postImage(`${removal}?format=zip`, CAR), postImage(`${removal}?format=png`, CAR)]);
  const zip = await expectImage(zipResponse, 'application/zip');
  const png = await expectImage(pngResponse, 'image/png');
  const entries = readZip(zip);
  assert.deepEqual([...entries.keys()], ['color.jpg', 'alpha.png']);
  const colour = await sharp(entries.get('color.jpg')).metadata();
  const alpha = await sharp(entries.get('alpha.png')).metadata();
  assert.deepEqual([colour.format, colour.width, colour.height, colour.channels], ['jpeg', 480, 360, 3]);
  assert.deepEqual([alpha.format, alpha.width, alpha.height, alpha.channels], ['png', 480, 360, 1]);
  const pngAlpha = await alphaChannel(png);
  assert.deepEqual((await alphaChannel(entries.get('alpha.png')!)).data, pngAlpha.data);
  assert.ok(zip.length < png.length, `zip ${zip.length} < png ${png.length}`);
});

test('crop with bg_color and format=jpg: the subject box on the colour, as a JPEG', async () => {
  const full = await postImage(`${removal}?channels=alpha`, CAR);
  const fullBox = headerBox(full);
  await full.arrayBuffer();
  const response = await postForm(removal, { image_file: CAR, crop: 'true', bg_color: 'lime', format: 'jpg' });
  const body = await expectImage(response, 'image/jpeg');
  const pixels = await rawPixels(body);
  assert.deepEqual([pixels.width, pixels.height], [fullBox.width, fullBox.height]);
  assert.deepEqual(headerBox(response), { left: 0, top: 0, width: fullBox.width, height: fullBox.height });
  // The crop hugs the subject, so some row at the top edge touches it; a corner is background.
  const corners = [0, (pixels.width - 1) * 3, (pixels.height - 1) * pixels.width * 3, (pixels.width * pixels.height - 1) * 3];
  const limeCorners = corners.filter((index) => pixels.data[index]! < 40 && pixels.data[index + 1]! > 215 && pixels.data[index + 2]! < 40);
  assert.ok(limeCorners.length >= 1, 'at least one corner is the lime background');
});

test('crop_margin adds px (CSS order) or % of the subject, and is capped at 50%', async () => {
  const plain = await postImage(`${removal}?crop=true&format=png`, CAR);
  const plainSize = await sharp(await bodyBytes(plain)).metadata();
  const margins = await postImage(`${removal}?crop=true&crop_margin=${encodeURIComponent('10px 20px 30px 40px')}`, CAR);
  const marginBody = await expectImage(margins, 'image/png');
  const size = await sharp(marginBody).metadata();
  assert.deepEqual([size.width, size.height], [plainSize.width + 60, plainSize.height + 40]);
  assert.deepEqual(headerBox(margins), { left: 40, top: 10, width: plainSize.width, height: plainSize.height });
  // Beyond the photo's edge the margin is transparent.
  const capped = await postImage(`${removal}?crop=true&crop_margin=90%25`, CAR);
  const cappedSize = await sharp(await expectImage(capped, 'image/png')).metadata();
  assert.equal(cappedSize.width, plainSize.width + 2 * Math.round(plainSize.width * 0.5));
});

test('scale and position put the subject where asked on a canvas of the original size', async () => {
  const response = await postImage(`${removal}?scale=50%25&position=${encodeURIComponent('0% 100%')}`, CAR);
  const body = await expectImage(response, 'image/png');
  const metadata = await sharp(body).metadata();
  assert.deepEqual([metadata.width, metadata.height], [480, 360]);
  const box = await assertForegroundMatches(response, body);
  assert.ok(box.width <= 241 && box.height <= 181, `fits in half the canvas: ${JSON.stringify(box)}`);
  assert.ok(box.width >= 235 || box.height >= 175, 'and fills it along one side');
  assert.ok(box.left <= 2, 'flush left');
  assert.ok(box.top + box.height >= 358, 'flush bottom');
});

test('roi: nothing outside the region is foreground', async () => {
  const response = await postImage(`${removal}?channels=alpha&roi=${encodeURIComponent('0% 0% 50% 100%')}`, CAR);
  const alpha = await alphaChannel(await expectImage(response, 'image/png'));
  for (let y = 0; y < alpha.height; y += 1) {
    for (let x = 240; x < alpha.width; x += 1) assert.equal(alpha.data[y * alpha.width + x], 0, `(${x}, ${y})`);
  }
  const box = headerBox(response);
  assert.ok(box.width > 0 && box.left + box.width <= 240, JSON.stringify(box));
});

test('bg_image_url covers the output; a translucent bg_color keeps an alpha channel', async () => {
  const covered = await postImage(`${removal}?bg_image_url=${encodeURIComponent(`${images.url}/plants-1.jpg`)}`, CAR);
  const coveredPixels = await rawPixels(await expectImage(covered, 'image/jpeg'));
  assert.deepEqual([coveredPixels.width, coveredPixels.height, coveredPixels.channels], [480, 360, 3]);
  const plants = await sharp(fixture('plants-1.jpg')).resize(480, 360, { fit: 'cover' }).raw().toBuffer();
  // The top-left corner is background in the car photo, so the plants show there.
  const difference = [0, 1, 2].map((channel) => Math.abs(coveredPixels.data[channel]! - plants[channel]!));
  assert.ok(Math.max(...difference) < 30, `corner ${difference.join(',')}`);

  const translucent = await postImage(`${removal}?bg_color=ff000080`, CAR);
  const pixels = await rawPixels(await expectImage(translucent, 'image/png'));
  assert.equal(pixels.channels, 4);
  assert.ok(Math.abs(pixels.data[3]! - 128) <= 3, `corner alpha ${pixels.data[3]}`);
  assert.ok(pixels.data[0]! > 240 && pixels.data[1]! < 15, 'corner is red');
});

test('bg_image_file as a multipart file', async () => {
  const gradient = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#0000ff' } }).png().toBuffer();
  const response = await postForm(removal, { image_file: CAR, bg_image_file: gradient, format: 'png' });
  const pixels = await rawPixels(await expectImage(response, 'image/png'));
  assert.deepEqual([...pixels.data.subarray(0, 3)], [0, 0, 255]);
});

test('a roi with no subject in it cannot be cropped: 422 no_foreground', async () => {
  await expectError(postImage(`${removal}?crop=true&roi=${encodeURIComponent('0px 0px 4px 4px')}`, CAR), 422, 'no_foreground');
});

test('invalid values and conflicting sources are 400s that name the parameter', async () => {
  const cases: [string, RegExp][] = [
    ['size=huge', /size/],
    ['size=0MP', /size/],
    ['format=gif', /format/],
    ['channels=rgb', /channels/],
    ['crop=maybe', /crop/],
    ['crop_margin=10px%2020px%2030px', /crop_margin/],
    ['crop_margin=-5px', /crop_margin/],
    ['scale=5%25', /scale/],
    ['scale=120%25', /scale/],
    ['position=left', /position/],
    ['position=150%25', /position/],
    ['roi=0%200%20100%25', /roi/],
    ['roi=0%25%200%25%20101%25%20100%25', /roi/],
    ['bg_color=notacolour', /bg_color/],
    ['quality=ultra', /quality/],
    ['bg_colour=red', /Unknown parameter "bg_colour"/],
    ['add_shadow=perhaps', /add_shadow/],
    ['shadow_type=soft', /shadow_type/],
    ['shadow_opacity=101', /shadow_opacity/],
    ['shadow_opacity=-5', /shadow_opacity/],
    ['shadow_opacity=50%25', /shadow_opacity/],
    ['semitransparency=half', /semitransparency/],
    ['type_level=3', /type_level/],
    [`bg_color=red&bg_image_url=${encodeURIComponent(`${images.url}/car-1.jpg`)}`, /bg_color or bg_image_url/],
    [`image_url=${encodeURIComponent(`${images.url}/car-1.jpg`)}`, /only one image.*image_file and image_url/],
  ];
  for (const [query, message] of cases) {
    await expectError(postImage(`${removal}?${query}`, CAR), 400, 'invalid_parameter', message);
  }
});

test('bodies: bad JSON, a JSON array, bad base64, an image_file text field, nothing at all', async () => {
  const post = (body: string, contentType: string): Promise<Response> =>
    fetch(removal, { method: 'POST', body, headers: { 'content-type': contentType } });
  await expectError(post('{"image_url":', 'application/json'), 400, 'bad_request', /JSON/);
  await expectError(post('[1,2]', 'application/json'), 400, 'bad_request', /object/);
  await expectError(postJson(removal, { image_file_b64: 'not base64!' }), 400, 'invalid_parameter', /base64/);
  await expectError(postJson(removal, { image_file_b64: 'aGVsbG8=', crop: { nested: true } }), 400, 'invalid_parameter', /crop/);
  await expectError(postForm(removal, { image_file: 'just text' }), 400, 'invalid_parameter', /file upload/);
  await expectError(postJson(removal, { size: 'full' }), 400, 'missing_image');
  await expectError(postJson(removal, { image_file_b64: Buffer.from('not an image').toString('base64') }), 415, 'unsupported_media_type');
});

test('image_url: refused addresses and failed fetches are 400s that say which rule, never which address', async () => {
  const fetchRemoval = (service_: RunningServer, url: string): Promise<Response> =>
    postJson(`${service_.url}/remove-background`, { image_url: url });
  const notPublic = /^image_url refused: the host is not a public address\.$/;
  await expectError(fetchRemoval(strictService, `${images.url}/car-1.jpg`), 400, 'invalid_parameter', notPublic);
  await expectError(fetchRemoval(service, 'http://10.1.2.3/x.jpg'), 400, 'invalid_parameter', notPublic);
  // localhost is a name (from /etc/hosts, no DNS needed): what it resolves to stays unsaid.
  const byName = await fetchRemoval(strictService, `http://localhost:${new URL(images.url).port}/car-1.jpg`);
  const byNameText = await byName.text();
  assert.equal(byName.status, 400, byNameText);
  assert.match((JSON.parse(byNameText) as ErrorBody).error.message, notPublic);
  assert.doesNotMatch(byNameText, /127\.0\.0\.1|::1|loopback/);
  await expectError(fetchRemoval(service, 'http://[::ffff:169.254.169.254]/'), 400, 'invalid_parameter', /refused/);
  await expectError(fetchRemoval(service, 'file:///etc/passwd'), 400, 'invalid_parameter', /refused/);
  await expectError(fetchRemoval(service, `${images.url}/missing.jpg`), 400, 'invalid_parameter', /HTTP 404/);
  await expectError(
    postJson(`${strictService.url}/remove-background`, { image_file_b64: CAR.toString('base64'), bg_image_url: `${images.url}/car-1.jpg` }),
    400,
    'invalid_parameter',
    /bg_image_url refused/,
  );
});

test('quality=high, refine and post_process change the matte, stay close to it, and show in Server-Timing', async () => {
  const matte = async (query: string): Promise<{ alpha: Buffer; timing: string }> => {
    const response = await postImage(`${removal}?channels=alpha&${query}`, CAR);
    const alpha = await alphaChannel(await expectImage(response, 'image/png'));
    return { alpha: alpha.data, timing: response.headers.get('server-timing') ?? '' };
  };
  const fractional = (alpha: Buffer): number => alpha.filter((value) => value > 0 && value < 255).length / alpha.length;
  const baseline = await matte('quality=fast');
  for (const query of ['quality=high', 'refine=true', 'post_process=true']) {
    const variant = await matte(query);
    assert.notDeepEqual(variant.alpha, baseline.alpha, `${query} changes the matte`);
    const { iou } = compareAlpha(variant.alpha, baseline.alpha);
    assert.ok(iou > 0.85, `${query} keeps the subject: IoU ${iou.toFixed(3)}`);
    if (query === 'refine=true') assert.match(variant.timing, /refine;dur=/);
    if (query === 'post_process=true') {
      assert.ok(fractional(variant.alpha) < fractional(baseline.alpha) / 2, 'post_process leaves fewer soft pixels');
    }
  }
});

test('model: unknown, not allowed, weights missing, and another allowed model', async () => {
  await expectError(postImage(`${removal}?model=nope`, CAR), 400, 'invalid_parameter', /Unknown model "nope"/);
  await expectError(postImage(`${strictService.url}/remove-background?model=isnet-fp16`, CAR), 400, 'invalid_parameter', /not enabled/);
  // u2netp is in the registry but only downloadable from GitHub, which this test never reaches.
  await expectError(postImage(`${removal}?model=u2netp`, CAR), 503, 'model_unavailable', /models fetch u2netp/);
  const other = await postImage(`${removal}?model=isnet-fp16&channels=alpha`, CAR);
  await expectImage(other, 'image/png');
  assert.equal(other.headers.get('x-type'), 'isnet-fp16');
});

test('FOREGROUND_ALPHA_THRESHOLD is what the box uses', () => {
  const alpha = Buffer.alloc(16);
  alpha[5] = FOREGROUND_ALPHA_THRESHOLD - 1;
  assert.equal(foregroundBox({ width: 4, height: 4, alpha }), null);
  alpha[6] = FOREGROUND_ALPHA_THRESHOLD;
  assert.deepEqual(foregroundBox({ width: 4, height: 4, alpha }), { left: 2, top: 1, width: 1, height: 1 });
});
