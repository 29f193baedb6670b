/**
 * The preview model over real HTTP with the real models (issue 14): which
 * model serves which request under PREVIEW_MODEL=auto and off, and how far
 * the 512² mask is from the 1024² one on the parity fixture.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../functions/config';
import { findModel } from '../functions/model/registry';
import { fetchModels } from '../functions/model/weights';
import type { ModelsBody } from '../functions/handlers/models';
import { alphaChannel, compareAlpha, fixture } from '../tools/lib/images';
import { bodyBytes, postImage, type RunningServer } from '../tools/lib/http';
import { startLocalServer } from './support/servers';

type Server = Awaited<ReturnType<typeof startLocalServer>>;

/** One removal of a fixture: the model that ran (X-Model), the size, and the matte. */
async function remove(server: RunningServer, name: string, query: string): Promise<{ model: string | null; pixels: number; alpha: Buffer }> {
  const response = await postImage(`${server.url}/remove-background?channels=alpha&${query}`, fixture(name));
  assert.equal(response.status, 200, `${name}?${query}`);
  const pixels = Number(response.headers.get('x-width')) * Number(response.headers.get('x-height'));
  return { model: response.headers.get('x-model'), pixels, alpha: (await alphaChannel(await bodyBytes(response))).data };
}

// anime-girl-1 is 850×601 (0.51 MP): a "large" image at size=auto. car-1 is 480×360 (0.17 MP): a small one.
// PREVIEW_MODEL is off by default, so `npm run setup` does not make the preview: derive it here,
// from the isnet-fp32 that setup fetched (no network; about 3 s, and nothing when it is there).
before(async () => {
  await fetchModels([findModel('isnet-preview')!], { modelsDir: loadConfig({}).modelsDir });
});

let previewMask: Buffer;
let fullMask: Buffer;

describe('PREVIEW_MODEL=auto', () => {
  let server: Server;
  before(async () => {
    server = await startLocalServer(loadConfig({ PREVIEW_MODEL: 'auto', ALLOWED_MODELS: 'isnet-fp32,isnet-fp16', MAX_LOADED_MODELS: '1' }));
  });
  after(() => server.close());

  test('size=preview (and small, regular) runs isnet-preview, at most 0.25 MP', async () => {
    for (const size of ['preview', 'small', 'regular']) {
      const result = await remove(server, 'anime-girl-1.jpg', `size=${size}`);
      assert.equal(result.model, 'isnet-preview', size);
      assert.ok(result.pixels <= 250_000, `${result.pixels} pixels`);
      previewMask = result.alpha;
    }
  });

  test('a small image at size=auto runs isnet-preview; a large one keeps isnet-fp32, and so does a request for 1.5 MP', async () => {
    assert.equal((await remove(server, 'car-1.jpg', 'size=auto')).model, 'isnet-preview');
    assert.equal((await remove(server, 'anime-girl-1.jpg', 'size=auto')).model, 'isnet-fp32');
    assert.equal((await remove(server, 'anime-girl-1.jpg', 'size=medium')).model, 'isnet-fp32');
  });

  test('both stay loaded with MAX_LOADED_MODELS=1, and GET /models lists the preview as allowed', async () => {
    const holder = server.detourage.holder;
    assert.deepEqual([holder.isModelLoaded('isnet-fp32'), holder.isModelLoaded('isnet-preview')], [true, true]);
    const body = (await (await fetch(`${server.url}/models`)).json()) as ModelsBody;
    const preview = body.models.find((model) => model.name === 'isnet-preview');
    assert.deepEqual([preview?.inputSize, preview?.allowed, preview?.downloaded, preview?.loaded, preview?.default], [512, true, true, true, false]);
  });

  test('the JSON answer names the model that ran', async () => {
    const response = await postImage(`${server.url}/remove-background?size=preview`, fixture('car-1.jpg'), 'image/jpeg', { headers: { 'content-type': 'image/jpeg', accept: 'application/json' } });
    assert.equal(response.status, 200);
    assert.equal(((await response.json()) as { data: { model: string } }).data.model, 'isnet-preview');
  });

  test('a request that names another model keeps it at any size', async () => {
    assert.equal((await remove(server, 'car-1.jpg', 'size=preview&model=isnet-fp16')).model, 'isnet-fp16');
  });
});

describe('PREVIEW_MODEL=off', () => {
  let server: Server;
  before(async () => {
    server = await startLocalServer(loadConfig({ PREVIEW_MODEL: 'off' }));
  });
  after(() => server.close());

  test('size=preview and a small image run the full model', async () => {
    const result = await remove(server, 'anime-girl-1.jpg', 'size=preview');
    assert.equal(result.model, 'isnet-fp32');
    fullMask = result.alpha;
    assert.equal((await remove(server, 'car-1.jpg', 'size=auto')).model, 'isnet-fp32');
    const body = (await (await fetch(`${server.url}/models`)).json()) as ModelsBody;
    assert.equal(body.models.find((model) => model.name === 'isnet-preview')?.allowed, false);
  });
});

/**
 * Measured: IoU 0.702, MAE 0.117 at 594×420. The 512² model sees the scene at
 * half the resolution and takes in background structure (the jellyfish) the
 * 1024² model leaves out, which is why PREVIEW_MODEL is off by default
 * (docs/models.md). The bound guards the transform: a graph rewritten wrong
 * gives noise, or nothing, far below it.
 */
test('on the parity fixture at size=preview, the 512² mask is within IoU 0.65 and MAE 0.14 of the 1024² one', () => {
  assert.equal(previewMask.length, fullMask.length);
  const { iou, mae } = compareAlpha(previewMask, fullMask);
  console.log(`preview against full at size=preview: IoU ${iou.toFixed(4)}, MAE ${mae.toFixed(5)}`);
  assert.ok(iou >= 0.65, `IoU ${iou}`);
  assert.ok(mae <= 0.14, `MAE ${mae}`);
});
