/**
 * Several models per process: which a request may name (resolveModel), the
 * holder's LRU bound and its unloading, and GET /models.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../functions/config';
import { ApiError } from '../functions/errors';
import type { ModelsBody } from '../functions/handlers/models';
import { type HolderSettings, ModelHolder, type ModelLoader } from '../functions/model/holder';
import { findModel, type ModelEntry, modelFilePath, registry } from '../functions/model/registry';
import type { ModelInput } from '../functions/model/tensors';
import { modelToRun, type PreviewSelection, resolveModel } from '../functions/model/selection';
import { type LoadedModel, loadModel } from '../functions/model/session';
import { DEFAULT_MODELS_DIR } from '../functions/paths';
import { decodeImage } from '../functions/pipeline/decode';
import { infer } from '../functions/pipeline/infer';
import { preprocess } from '../functions/pipeline/preprocess';
import { fixture } from '../tools/lib/images';
import { postImage } from '../tools/lib/http';
import { startLocalServer } from './support/servers';

const DEFAULT = registry.default;
const OTHER = 'isnet-fp16';
const [A, B, C] = ['isnet-fp16', 'isnet-uint8', 'u2netp'] as const;

function settingsFor(overrides: Partial<HolderSettings> = {}): HolderSettings {
  return { model: A, allowedModels: [A, B, C], maxLoadedModels: 1, modelsDir: '/nowhere', inferThreads: 1, maxConcurrentInferences: 1, previewModel: 'off', ...overrides };
}

/** A fake loader that counts the loads it is asked for, records loads and releases, and counts the sessions alive at any instant. */
function fakeModels(runTime: () => Promise<void> = () => Promise.resolve()) {
  const events: string[] = [];
  let loads = 0;
  let alive = 0;
  let mostAlive = 0;
  const loader: ModelLoader = async (entry: ModelEntry) => {
    loads += 1;
    await new Promise((resolve) => setTimeout(resolve, 5));
    alive += 1;
    mostAlive = Math.max(mostAlive, alive);
    events.push(`load ${entry.name}`);
    let released = false;
    const model: LoadedModel = {
      entry,
      get alive() {
        return !released;
      },
      async run(input: ModelInput) {
        assert.equal(released, false, `${entry.name} ran after its release`);
        events.push(`run ${entry.name}`);
        await runTime();
        assert.equal(released, false, `${entry.name} was released under a running inference`);
        events.push(`ran ${entry.name}`);
        return { size: input.size, data: new Float32Array(input.size * input.size) };
      },
      async release() {
        await new Promise((resolve) => setTimeout(resolve, 2));
        released = true;
        alive -= 1;
        events.push(`release ${entry.name}`);
      },
    };
    return model;
  };
  return { loader, events, loads: () => loads, mostAlive: () => mostAlive };
}

/** Which of the test's models the holder has loaded now, in the order of [A, B, C]. */
const loadedOf = (holder: ModelHolder): string[] => [A, B, C].filter((name) => holder.isModelLoaded(name));

const input = (): ModelInput => ({ size: 2, data: new Float32Array(12) });

test('resolveModel: default, allowed, unknown, not allowed, weights missing', async () => {
  const modelsDir = await mkdtemp(path.join(os.tmpdir(), 'detourage-resolve-'));
  try {
    await symlink(modelFilePath(DEFAULT_MODELS_DIR, findModel(A)!), modelFilePath(modelsDir, findModel(A)!));
    const config = { ...loadConfig({ MODEL: A, ALLOWED_MODELS: `${A},${B}` }), modelsDir };
    assert.equal(resolveModel(config, undefined).name, A);
    assert.equal(resolveModel(config, '').name, A);
    assert.equal(resolveModel(config, A).name, A);
    const refused = (requested: string, status: number, code: string, message: RegExp) =>
      assert.throws(
        () => resolveModel(config, requested),
        (error: unknown) => error instanceof ApiError && error.status === status && error.code === code && message.test(error.message),
      );
    refused('../../etc/passwd', 400, 'invalid_parameter', /^Unknown model "..\/..\/etc\/passwd". This server offers: isnet-fp16, isnet-uint8\.$/);
    refused(C, 400, 'invalid_parameter', /^Model u2netp is not enabled on this server\. This server offers: isnet-fp16, isnet-uint8\.$/);
    refused(B, 503, 'model_unavailable', /isnet-uint8 are missing .*npx detourage models fetch isnet-uint8$/);
  } finally {
    await rm(modelsDir, { recursive: true, force: true });
  }
});

test('holder: the least recently used model is unloaded past MAX_LOADED_MODELS, and released', async () => {
  const fake = fakeModels();
  const holder = new ModelHolder(settingsFor({ maxLoadedModels: 2 }), fake.loader);
  await holder.get(A);
  await holder.get(B);
  await holder.get(A);
  assert.deepEqual(loadedOf(holder), [A, B]);
  // B is the least recently used now: C's load unloads it, not A.
  await holder.get(C);
  assert.deepEqual(loadedOf(holder), [A, C]);
  assert.deepEqual(fake.events, [`load ${A}`, `load ${B}`, `release ${B}`, `load ${C}`]);
  assert.equal(fake.loads(), 3);
  assert.equal(holder.isModelLoaded(B), false);
  await assert.rejects(holder.get('nope'), (error: unknown) => error instanceof ApiError && error.status === 400);
  await assert.rejects(new ModelHolder(settingsFor({ allowedModels: [A] }), fake.loader).get(B), /not enabled/);
});

test('holder: an unload waits for the inference running on the model, then the next load starts', async () => {
  let finish!: () => void;
  const fake = fakeModels(() => new Promise<void>((resolve) => (finish = resolve)));
  const holder = new ModelHolder(settingsFor({ maxConcurrentInferences: 2 }), fake.loader);
  const a = await holder.get(A);
  const running = holder.runInference(() => a.run(input()));
  await new Promise((resolve) => setTimeout(resolve, 10));
  const b = holder.get(B);
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.deepEqual(fake.events, [`load ${A}`, `run ${A}`], 'B waits: A is still running');
  finish();
  await running;
  await b;
  assert.deepEqual(fake.events, [`load ${A}`, `run ${A}`, `ran ${A}`, `release ${A}`, `load ${B}`]);
  assert.equal(fake.mostAlive(), 1);
});

test('holder: a model unloaded between get and run is loaded again for the run', async () => {
  const fake = fakeModels();
  const holder = new ModelHolder(settingsFor(), fake.loader);
  const a = await holder.get(A);
  await holder.get(B);
  assert.equal(a.alive, false);
  await holder.runInference(() => a.run(input()));
  assert.deepEqual(fake.events, [`load ${A}`, `release ${A}`, `load ${B}`, `release ${B}`, `load ${A}`, `run ${A}`, `ran ${A}`]);
  assert.deepEqual(loadedOf(holder), [A]);
});

test('holder: under mixed concurrent traffic no more than MAX_LOADED_MODELS sessions are ever alive', async () => {
  const fake = fakeModels(() => new Promise((resolve) => setTimeout(resolve, Math.random() * 5)));
  const holder = new ModelHolder(settingsFor({ maxConcurrentInferences: 2 }), fake.loader);
  const names = [A, B, C];
  // Counted in the task: the holder runs a task only once it is past the queue.
  let inferences = 0;
  await Promise.all(
    Array.from({ length: 30 }, async (_, index) => {
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
      const model = await holder.get(names[index % 3]);
      await holder.runInference(() => {
        inferences += 1;
        return model.run(input());
      });
    }),
  );
  assert.equal(fake.mostAlive(), 1);
  assert.equal(inferences, 30);
  assert.equal(fake.events.filter((event) => event.startsWith('ran ')).length, 30);
});

test('modelToRun: the preview stands in for its base up to its previewMaxPixels, with PREVIEW_MODEL=auto, when allowed', () => {
  const [fp32, fp16] = [findModel('isnet-fp32')!, findModel('isnet-fp16')!];
  const auto: PreviewSelection = { allowedModels: ['isnet-fp32', 'isnet-preview', 'isnet-fp16'], previewModel: 'auto' };
  const run = (selection: PreviewSelection, requested: ModelEntry, pixels: number): string => modelToRun(selection, requested, pixels).name;
  assert.equal(run(auto, fp32, 250_000), 'isnet-preview');
  assert.equal(run(auto, fp32, 1), 'isnet-preview');
  assert.equal(run(auto, fp32, 250_001), 'isnet-fp32');
  assert.equal(run(auto, fp16, 1000), 'isnet-fp16', 'another model keeps its own');
  assert.equal(run({ ...auto, previewModel: 'off' }, fp32, 1000), 'isnet-fp32');
  assert.equal(run({ ...auto, allowedModels: ['isnet-fp32'] }, fp32, 1000), 'isnet-fp32', 'only an allowed preview runs');
});

test('a preview companion stays loaded beside its base and is not counted against MAX_LOADED_MODELS', async () => {
  const names = ['isnet-fp32', 'isnet-preview', 'isnet-fp16'];
  const loadedAfter = async (previewModel: 'off' | 'auto'): Promise<string[]> => {
    const fake = fakeModels();
    const holder = new ModelHolder(settingsFor({ model: 'isnet-fp32', allowedModels: names, previewModel }), fake.loader);
    for (const name of names) await holder.get(name);
    return names.filter((name) => holder.isModelLoaded(name)).sort();
  };
  assert.deepEqual(await loadedAfter('auto'), ['isnet-fp16', 'isnet-preview']);
  assert.deepEqual(await loadedAfter('off'), ['isnet-fp16']);
});

// isnet-fp16 rather than isnet-uint8 as the other model: it is on disk after `npm run setup` (the
// default's base), so the test needs no download on a fresh clone.
test('real models: GET /models, then isnet-fp16 and the default in turn with MAX_LOADED_MODELS=1; eviction ends the worker', async () => {
  const released: string[] = [];
  // The real loader, with its release observed: it resolves once the worker thread has exited.
  const loader: ModelLoader = async (entry, settings) => {
    const model = await loadModel(entry, settings);
    return {
      entry: model.entry,
      get alive() {
        return model.alive;
      },
      run: (modelInput) => model.run(modelInput),
      release: async () => {
        await model.release();
        released.push(entry.name);
      },
    };
  };
  const config = loadConfig({ ALLOWED_MODELS: `${DEFAULT},${OTHER}`, MAX_LOADED_MODELS: '1' });
  const server = await startLocalServer(config, loader);
  const listing = async (): Promise<ModelsBody> => (await fetch(`${server.url}/models`)).json() as Promise<ModelsBody>;
  try {
    const before = await listing();
    assert.equal(before.default, DEFAULT);
    assert.equal(before.models.length, registry.models.length);
    assert.deepEqual(before.models.find((model) => model.name === OTHER), {
      name: OTHER,
      description: findModel(OTHER)!.description,
      license: findModel(OTHER)!.license,
      inputSize: 1024,
      default: false,
      allowed: true,
      downloaded: true,
      loaded: false,
    });
    assert.deepEqual(
      before.models.filter((model) => model.allowed).map((model) => [model.name, model.default]),
      [[DEFAULT, true], [OTHER, false]],
    );
    assert.equal(before.models.find((model) => model.name === 'u2net')?.downloaded, false);
    assert.equal((await fetch(`${server.url}/models`, { method: 'POST' })).status, 405);

    const { holder } = server.detourage;
    const other = await holder.get(OTHER);
    const image = await decodeImage(fixture('car-1.jpg'), { maxInputPixels: config.maxInputPixels });
    await holder.runInference(async () => infer(other, await preprocess(image, other.entry)));
    assert.deepEqual(
      (await listing()).models.filter((model) => model.loaded).map((model) => model.name),
      [OTHER],
    );

    const response = await postImage(`${server.url}/remove-background?type=mask`, fixture('car-1.jpg'));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-model'), DEFAULT);
    assert.deepEqual(released, [OTHER], 'its session was released (its worker has exited) before the default loaded');
    assert.equal(other.alive, false);
    assert.deepEqual(
      (await listing()).models.filter((model) => model.loaded).map((model) => model.name),
      [DEFAULT],
    );
    assert.equal(server.loadCount, 2);
  } finally {
    await server.close();
  }
});
