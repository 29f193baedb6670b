import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { PROJECT_ROOT } from '../functions/paths';
import { alphaChannel, fixture, rawPixels } from '../tools/lib/images';
import { bodyBytes, postForm, postImage, type RunningServer } from '../tools/lib/http';
import { type CountedServices, registerFunctions, startFunction } from './support/servers';

let health: RunningServer;
let warmup: RunningServer;
let removal: RunningServer;
let deployed: CountedServices;

before(async () => {
  deployed = await registerFunctions();
  [health, warmup, removal] = await Promise.all([startFunction('health'), startFunction('warmup'), startFunction('removeBackground')]);
});
after(async () => {
  await Promise.all([health.close(), warmup.close(), removal.close()]);
});

test('health answers GET and HEAD without loading the model', async () => {
  const response = await fetch(health.url);
  assert.equal(response.status, 200);
  const body = (await response.json()) as Record<string, unknown>;
  assert.equal(body.status, 'ok');
  assert.equal(body.version, '0.1.0');
  assert.deepEqual(body.model, { name: 'isnet-fp32', loaded: false });
  assert.equal(typeof body.uptimeSeconds, 'number');
  assert.equal((await fetch(health.url, { method: 'HEAD' })).status, 200);
  assert.equal(deployed.loadCount, 0);
});

test("health's code path imports neither onnxruntime-node nor sharp", () => {
  const entry = path.join(PROJECT_ROOT, 'dist', 'functions', 'index.js');
  const script = `
    require(${JSON.stringify(entry)});
    const { getTestServer } = require('@google-cloud/functions-framework/testing');
    const server = getTestServer('health').listen(0, '127.0.0.1', async () => {
      const response = await fetch('http://127.0.0.1:' + server.address().port + '/');
      const loaded = Object.keys(require.cache).filter((file) => /node_modules[\\\\/](onnxruntime-node|onnxruntime-common|sharp)[\\\\/]/.test(file));
      console.log(JSON.stringify({ status: response.status, loaded }));
      server.close();
    });`;
  const output = execFileSync(process.execPath, ['-e', script], { cwd: PROJECT_ROOT, encoding: 'utf8' });
  assert.deepEqual(JSON.parse(output.trim()), { status: 200, loaded: [] });
});

test('warmup loads the model once and runs an inference before answering', async () => {
  const first = await fetch(warmup.url, { method: 'POST' });
  assert.equal(first.status, 200);
  const firstBody = (await first.json()) as Record<string, unknown>;
  assert.equal(firstBody.status, 'warm');
  assert.equal(firstBody.model, 'isnet-fp32');
  assert.equal(firstBody.alreadyWarm, false);
  assert.ok((firstBody.loadMs as number) > 0);
  assert.ok((firstBody.inferMs as number) > 0);

  const second = (await (await fetch(warmup.url)).json()) as Record<string, unknown>;
  assert.equal(second.alreadyWarm, true);
  assert.equal(second.loadMs, 0);
  assert.equal(deployed.loadCount, 1);
  const healthBody = (await (await fetch(health.url)).json()) as { model: { loaded: boolean } };
  assert.equal(healthBody.model.loaded, true);
});

test('removeBackground answers the warmup ping (GET) on its own instance', async () => {
  const response = await fetch(removal.url);
  assert.equal(response.status, 200);
  const body = (await response.json()) as Record<string, unknown>;
  assert.equal(body.status, 'warm');
  assert.equal(body.alreadyWarm, true);
});

test('a multipart upload gives an RGBA PNG at the input size with the documented headers', async () => {
  const response = await postForm(removal.url, { image: fixture('car-1.jpg') });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'image/png');
  assert.equal(response.headers.get('x-width'), '480');
  assert.equal(response.headers.get('x-height'), '360');
  assert.equal(response.headers.get('x-model'), 'isnet-fp32');
  const timing = response.headers.get('server-timing') ?? '';
  for (const stage of ['decode', 'infer', 'encode']) assert.match(timing, new RegExp(`${stage};dur=\\d`));
  const metadata = await sharp(await bodyBytes(response)).metadata();
  assert.deepEqual([metadata.format, metadata.width, metadata.height, metadata.channels], ['png', 480, 360, 4]);
});

test('the file field may also be called file or image_file', async () => {
  for (const field of ['file', 'image_file']) {
    const response = await postForm(removal.url, { [field]: fixture('car-1.jpg'), type: 'mask' });
    assert.equal(response.status, 200, field);
  }
});

test('type=mask gives a 1-channel grayscale PNG', async () => {
  const response = await postImage(`${removal.url}?type=mask`, fixture('car-1.jpg'));
  assert.equal(response.status, 200);
  const metadata = await sharp(await bodyBytes(response)).metadata();
  assert.deepEqual([metadata.format, metadata.channels, metadata.width, metadata.height], ['png', 1, 480, 360]);
});

test('format=webp keeps transparency', async () => {
  const response = await postImage(`${removal.url}?format=webp`, fixture('car-1.jpg'), 'application/octet-stream');
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'image/webp');
  const metadata = await sharp(await bodyBytes(response)).metadata();
  assert.equal(metadata.format, 'webp');
  assert.equal(metadata.hasAlpha, true);
});

test('format=jpeg composites onto white by default, bg_color onto the colour', async () => {
  const jpeg = await postImage(`${removal.url}?format=jpeg`, fixture('anime-girl-1.jpg'));
  assert.equal(jpeg.status, 200);
  assert.equal(jpeg.headers.get('content-type'), 'image/jpeg');
  const white = await rawPixels(await bodyBytes(jpeg));
  assert.equal(white.channels, 3);
  // The top-left corner is background in this image.
  assert.ok(white.data[0]! > 240 && white.data[1]! > 240 && white.data[2]! > 240);

  // Form fields carry parameters too; format auto makes an opaque result a JPEG.
  const red = await postForm(removal.url, { image: fixture('anime-girl-1.jpg'), bg_color: '#ff0000', format: 'png' });
  assert.equal(red.status, 200);
  const pixels = await rawPixels(await bodyBytes(red));
  assert.equal(pixels.channels, 3);
  assert.deepEqual([...pixels.data.subarray(0, 3)], [255, 0, 0]);
  const alpha = await alphaChannel(await bodyBytes(await postImage(`${removal.url}?type=mask`, fixture('anime-girl-1.jpg'))));
  assert.ok(alpha.data[0]! < 10, 'corner is background');
});

test('every request above reused the one model load', () => {
  assert.equal(deployed.loadCount, 1);
});
