import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../functions/config';
import { ModelHolder } from '../functions/model/holder';
import { findModel, modelFilePath, registry } from '../functions/model/registry';
import type { LoadedModel } from '../functions/model/session';
import { DEFAULT_MODELS_DIR } from '../functions/paths';
import { fixture } from '../tools/lib/images';
import { type ErrorBody, postImage, type RunningServer } from '../tools/lib/http';
import { type CountedServices, registerFunctions, startFunction, startLocalServer } from './support/servers';

const unhandled: unknown[] = [];
process.on('unhandledRejection', (reason) => unhandled.push(reason));

const entry = findModel(registry.default)!;
const settings = { model: entry.name, allowedModels: [entry.name], maxLoadedModels: 1, modelsDir: '/nowhere', inferThreads: 1, maxConcurrentInferences: 1, previewModel: 'off' as const };

test('unit: concurrent first calls share one load; a failure is forgotten, not cached', async () => {
  let calls = 0;
  let failNext = true;
  const fakeModel = { entry, alive: true } as LoadedModel;
  const holder = new ModelHolder(settings, async () => {
    calls += 1;
    await new Promise((resolve) => setTimeout(resolve, 20));
    if (failNext) {
      failNext = false;
      throw new Error('disk on fire');
    }
    return fakeModel;
  });
  const first = await Promise.allSettled(Array.from({ length: 8 }, () => holder.get()));
  assert.equal(calls, 1);
  assert.ok(first.every((result) => result.status === 'rejected'));
  assert.equal(holder.isLoaded, false);
  const second = await Promise.all(Array.from({ length: 8 }, () => holder.get()));
  assert.equal(calls, 2);
  assert.ok(second.every((model) => model.entry === entry && model.alive));
  assert.equal(holder.isLoaded, true);
  await holder.get();
  assert.equal(calls, 2);
});

test('unit: a failed load nobody awaits is not an unhandled rejection', async () => {
  const holder = new ModelHolder(settings, () => Promise.reject(new Error('nope')));
  void holder.get().catch(() => undefined);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(unhandled, []);
});

let removal: RunningServer;
let deployed: CountedServices;
before(async () => {
  // Room for all eight in the queue: this test is about loading, not admission.
  process.env.MAX_QUEUE = '8';
  // Eight inferences one after another: no deadline a slow machine could miss.
  process.env.REQUEST_TIMEOUT_MS = '3600000';
  deployed = await registerFunctions();
  removal = await startFunction('removeBackground');
});
after(() => removal.close());

test('eight concurrent first requests cause exactly one model load', async () => {
  assert.equal(deployed.loadCount, 0);
  const responses = await Promise.all(Array.from({ length: 8 }, () => postImage(`${removal.url}?type=mask`, fixture('car-1.jpg'))));
  assert.deepEqual(
    responses.map((response) => response.status),
    Array.from({ length: 8 }, () => 200),
  );
  assert.equal(deployed.loadCount, 1);
});

test('a load failure answers 503 with Retry-After, and the next request loads once the file is there', async () => {
  const modelsDir = await mkdtemp(path.join(os.tmpdir(), 'detourage-models-'));
  const server = await startLocalServer({ ...loadConfig({}), modelsDir });
  try {
    const url = `${server.url}/remove-background?type=mask`;
    const missing = await postImage(url, fixture('car-1.jpg'));
    assert.equal(missing.status, 503);
    assert.equal(missing.headers.get('retry-after'), '5');
    const missingBody = (await missing.json()) as ErrorBody;
    assert.equal(missingBody.error.code, 'model_unavailable');
    assert.match(missingBody.error.message, /missing/);
    assert.doesNotMatch(missingBody.error.message, new RegExp(modelsDir), 'no server paths in responses');

    const target = modelFilePath(modelsDir, entry);
    await writeFile(target, 'this is not an onnx file');
    const corrupt = await postImage(url, fixture('car-1.jpg'));
    assert.equal(corrupt.status, 503);
    assert.match(((await corrupt.json()) as ErrorBody).error.message, /corrupt/);

    const warmupWhileBroken = await fetch(`${server.url}/warmup`);
    assert.equal(warmupWhileBroken.status, 503);
    assert.equal(warmupWhileBroken.headers.get('retry-after'), '5');

    await rm(target);
    await symlink(modelFilePath(DEFAULT_MODELS_DIR, entry), target);
    const fixed = await postImage(url, fixture('car-1.jpg'));
    assert.equal(fixed.status, 200);
    // Missing weights are found before any load is tried; the corrupt file, the warmup and the fix each load.
    assert.equal(server.loadCount, 3);
    assert.deepEqual(unhandled, []);
  } finally {
    await server.close();
    await rm(modelsDir, { recursive: true, force: true });
  }
});
