import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../functions/config';
import { modelNames, registry } from '../functions/model/registry';
import { DEFAULT_MODELS_DIR, PROJECT_ROOT } from '../functions/paths';

test('defaults', () => {
  const config = loadConfig({});
  assert.equal(config.model, registry.default);
  assert.deepEqual(config.allowedModels, [registry.default]);
  assert.equal(config.maxLoadedModels, 1);
  assert.equal(config.modelsDir, DEFAULT_MODELS_DIR);
  assert.equal(config.maxUploadBytes, 20 * 1024 * 1024);
  assert.equal(config.maxInputPixels, 40_000_000);
  assert.equal(config.port, 8080);
  assert.equal(config.maxConcurrentInferences, 1);
  assert.equal(config.maxQueue, 4);
  assert.equal(config.requestTimeoutMs, 55_000);
  assert.equal(config.maxOutputPixels, 40_000_000);
  assert.equal(config.maxConcurrentFetches, 4);
  assert.equal(config.maskCacheBytes, 32 * 1024 * 1024);
  assert.ok(config.inferThreads >= 1);
});

test('the memory comes from MEMORY_LIMIT_MB, else the cgroup (v2, then v1), else the machine; the budget leaves the model and a fifth', () => {
  const files = (contents: Record<string, string>) => (file: string) => contents[file];
  const v2 = '/sys/fs/cgroup/memory.max';
  const v1 = '/sys/fs/cgroup/memory/memory.limit_in_bytes';
  const gib2 = String(2 * 1024 ** 3);
  const fromSetting = loadConfig({ MEMORY_LIMIT_MB: '2048' }, files({ [v2]: String(4 * 1024 ** 3) }));
  assert.deepEqual([fromSetting.memoryLimitMiB, fromSetting.memoryLimitSource], [2048, 'MEMORY_LIMIT_MB']);
  // 1638 MiB (80%) less isnet-fp32's measured 1170 MiB peak (with the CPU arena) and the mask cache's 32 MiB.
  assert.equal(fromSetting.requestMemoryBytes, 436 * 1024 * 1024);
  const fromV2 = loadConfig({}, files({ [v2]: `${gib2}\n`, [v1]: String(4 * 1024 ** 3) }));
  assert.deepEqual([fromV2.memoryLimitMiB, fromV2.memoryLimitSource], [2048, 'cgroup v2']);
  const fromV1 = loadConfig({}, files({ [v2]: 'max\n', [v1]: gib2 }));
  assert.deepEqual([fromV1.memoryLimitMiB, fromV1.memoryLimitSource], [2048, 'cgroup v1']);
  // cgroup v1 writes a figure near 2^63 for "no limit".
  const unlimited = loadConfig({}, files({ [v1]: '9223372036854771712' }));
  assert.equal(unlimited.memoryLimitSource, 'machine');
  assert.throws(() => loadConfig({ MEMORY_LIMIT_MB: '1024' }), /1024 MiB of memory \(from MEMORY_LIMIT_MB\) leaves -383 MiB for requests: the models need about 1170 MiB, the mask cache 32 MiB/);
  assert.throws(() => loadConfig({ MEMORY_LIMIT_MB: '2GiB' }), /MEMORY_LIMIT_MB must be a positive integer/);
});

test('every variable is read', () => {
  const config = loadConfig({
    MODEL: 'isnet-uint8',
    ALLOWED_MODELS: ' isnet-fp16, isnet-uint8 ,isnet-fp16',
    MAX_LOADED_MODELS: '2',
    MODELS_DIR: '/srv/models',
    MAX_UPLOAD_BYTES: '1000',
    MAX_INPUT_PIXELS: '2000',
    MAX_OUTPUT_PIXELS: '3000',
    MEMORY_LIMIT_MB: '16384',
    MASK_CACHE_MB: '100',
    MAX_CONCURRENT_FETCHES: '3',
    INFER_THREADS: '3',
    INFER_CPU_ARENA: 'off',
    PORT: '9000',
    MAX_CONCURRENT_INFERENCES: '2',
    MAX_QUEUE: '0',
    REQUEST_TIMEOUT_MS: '30000',
    URL_FETCH_TIMEOUT_MS: '2500',
    DETOURAGE_TEST_ALLOW_LOOPBACK_URLS: '1',
    AUTH: 'firebase, API-KEY',
    API_KEY_HASHES: `ci:${'AB'.repeat(32)}`,
    FIREBASE_PROJECT_ID: 'my-firebase-app',
    WARMUP_SERVICE_ACCOUNTS: 'Warmup@my-project.iam.gserviceaccount.com, warmup@my-project.iam.gserviceaccount.com',
    DETOURAGE_TEST_KEY_SERVER: 'http://127.0.0.1:9999',
    CORS_ORIGINS: 'https://app.example.com, http://localhost:5173',
    RATE_LIMIT_PER_MINUTE: '30',
    LOG_LEVEL: 'WARNING',
    GOOGLE_CLOUD_PROJECT: 'my-project',
  });
  assert.deepEqual(
    { ...config },
    {
      model: 'isnet-uint8',
      allowedModels: ['isnet-fp16', 'isnet-uint8'],
      previewModel: 'off',
      maxLoadedModels: 2,
      modelsDir: '/srv/models',
      maxUploadBytes: 1000,
      maxInputPixels: 2000,
      maxOutputPixels: 3000,
      memoryLimitMiB: 16384,
      memoryLimitSource: 'MEMORY_LIMIT_MB',
      // 80% of 16384 MiB, less isnet-fp16's 1400 MiB peak, half of it (no arena) for the second model and the second inference, and the mask cache.
      requestMemoryBytes: (Math.floor(16384 * 0.8) - 2800 - 100) * 1024 * 1024,
      maskCacheBytes: 100 * 1024 * 1024,
      maxConcurrentFetches: 3,
      inferThreads: 3,
      cpuArena: false,
      port: 9000,
      maxConcurrentInferences: 2,
      maxQueue: 0,
      requestTimeoutMs: 30000,
      urlFetchTimeoutMs: 2500,
      allowLoopbackUrlsForTests: true,
      auth: ['firebase', 'api-key'],
      apiKeys: [{ id: 'ci', sha256: 'ab'.repeat(32) }],
      firebaseProjectId: 'my-firebase-app',
      warmupServiceAccounts: ['warmup@my-project.iam.gserviceaccount.com'],
      keyServerForTests: 'http://127.0.0.1:9999',
      rateLimitPerMinute: 30,
      corsOrigins: ['https://app.example.com', 'http://localhost:5173'],
      logLevel: 'warning',
      project: 'my-project',
      // removeBackgroundFromStorage's settings, read by test/storage.test.ts.
      storage: undefined,
    },
  );
});

test('invalid values are all named in one clear error', () => {
  assert.throws(
    () => loadConfig({ MODEL: 'u3net', MAX_UPLOAD_BYTES: '20MB', MAX_INPUT_PIXELS: '0', INFER_THREADS: '-1', PORT: '70000' }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      for (const pattern of [/MODEL "u3net" is not in the registry/, /MAX_UPLOAD_BYTES must be a positive integer, got "20MB"/, /MAX_INPUT_PIXELS/, /INFER_THREADS/, /PORT must be between 0 and 65535/]) {
        assert.match(error.message, pattern);
      }
      return true;
    },
  );
  assert.throws(() => loadConfig({ MAX_UPLOAD_BYTES: '64000000' }), /MAX_UPLOAD_BYTES must be between 1 and 32000000/);
  assert.throws(() => loadConfig({ INFER_CPU_ARENA: 'yes please' }), /INFER_CPU_ARENA must be true or false/);
});

test('MASK_CACHE_MB: 0 turns the cache off, its bound comes out of the request budget, and a bad or too large value is refused', () => {
  const mib = 1024 * 1024;
  const off = loadConfig({ MEMORY_LIMIT_MB: '2048', MASK_CACHE_MB: '0' });
  assert.deepEqual([off.maskCacheBytes, off.requestMemoryBytes], [0, 468 * mib]);
  const large = loadConfig({ MEMORY_LIMIT_MB: '2048', MASK_CACHE_MB: '200' });
  assert.deepEqual([large.maskCacheBytes, large.requestMemoryBytes], [200 * mib, 268 * mib]);
  for (const value of ['-1', '1.5', '32MB', 'lots']) {
    assert.throws(() => loadConfig({ MASK_CACHE_MB: value }), /MASK_CACHE_MB must be a positive integer/, value);
  }
  assert.throws(() => loadConfig({ MASK_CACHE_MB: '70000' }), /MASK_CACHE_MB must be between 0 and 65536, got 70000/);
  // A bound that leaves the removals too little is refused at start, naming the setting to lower.
  assert.throws(() => loadConfig({ MEMORY_LIMIT_MB: '2048', MASK_CACHE_MB: '430' }), /leaves 38 MiB for requests: .*the mask cache 430 MiB \(MASK_CACHE_MB\).* or MASK_CACHE_MB\./);
});

test('ALLOWED_MODELS defaults to MODEL, * means the whole registry, and it must name registry models including MODEL', () => {
  assert.deepEqual(loadConfig({ MODEL: 'isnet-uint8' }).allowedModels, ['isnet-uint8']);
  assert.deepEqual(loadConfig({ ALLOWED_MODELS: '*' }).allowedModels, modelNames());
  assert.throws(() => loadConfig({ ALLOWED_MODELS: 'isnet-uint8,u3net,../x' }), /ALLOWED_MODELS names models not in the registry: u3net, \.\.\/x/);
  assert.throws(() => loadConfig({ MODEL: 'isnet-fp16', ALLOWED_MODELS: 'isnet-uint8' }), /ALLOWED_MODELS \(isnet-uint8\) must include MODEL isnet-fp16/);
  assert.throws(() => loadConfig({ MAX_LOADED_MODELS: '0' }), /MAX_LOADED_MODELS must be between 1 and 16, got 0/);
});

test('PREVIEW_MODEL: off by default; auto allows each allowed model\'s preview and reserves its whole peak beside the others', () => {
  assert.equal(loadConfig({}).previewModel, 'off');
  const auto = loadConfig({ PREVIEW_MODEL: 'AUTO', MEMORY_LIMIT_MB: '4096' });
  assert.equal(auto.previewModel, 'auto');
  assert.deepEqual(auto.allowedModels, ['isnet-fp32', 'isnet-preview']);
  // 3276 MiB (80%) less isnet-fp32's 1170 MiB peak and isnet-preview's 650 (both stay loaded), and the 32 MiB mask cache.
  assert.equal(auto.requestMemoryBytes, (3276 - 1170 - 650 - 32) * 1024 * 1024);
  assert.equal(loadConfig({ PREVIEW_MODEL: 'off', MEMORY_LIMIT_MB: '4096' }).requestMemoryBytes, (3276 - 1170 - 32) * 1024 * 1024);
  // Only a model that has a preview brings one in.
  assert.deepEqual(loadConfig({ PREVIEW_MODEL: 'auto', MODEL: 'isnet-fp16' }).allowedModels, ['isnet-fp16']);
  assert.deepEqual(loadConfig({ PREVIEW_MODEL: 'auto', ALLOWED_MODELS: 'isnet-fp32,isnet-preview' }).allowedModels, ['isnet-fp32', 'isnet-preview']);
  assert.throws(() => loadConfig({ PREVIEW_MODEL: 'yes' }), /PREVIEW_MODEL must be off or auto, got "yes"/);
  // On 2 GiB the two models leave too little for requests, and the message says which setting to change.
  assert.throws(() => loadConfig({ PREVIEW_MODEL: 'auto', MEMORY_LIMIT_MB: '2048' }), /leaves -214 MiB for requests: the models need about 1820 MiB[\s\S]*or set PREVIEW_MODEL=off/);
});

test('the local server refuses to start on an invalid value, with the message', () => {
  const result = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'functions', 'server.js')], {
    env: { ...process.env, PORT: '0', MODEL: 'nope' },
    encoding: 'utf8',
    timeout: 10_000,
  });
  assert.equal(result.status, 78);
  assert.match(result.stderr, /Invalid configuration:[\s\S]*MODEL "nope"/);
});

test('the functions framework refuses to load the functions on an invalid value', () => {
  const result = spawnSync(
    process.execPath,
    [path.join(PROJECT_ROOT, 'node_modules', '@google-cloud', 'functions-framework', 'build', 'src', 'main.js'), '--target=health', '--port=0'],
    { cwd: PROJECT_ROOT, env: { ...process.env, MAX_INPUT_PIXELS: 'lots' }, encoding: 'utf8', timeout: 10_000 },
  );
  assert.notEqual(result.status, 0);
  assert.match(result.stderr + result.stdout, /MAX_INPUT_PIXELS must be a positive integer, got "lots"/);
});

test('the test-only loopback allowance is refused on Cloud Run', () => {
  assert.throws(
    () => loadConfig({ DETOURAGE_TEST_ALLOW_LOOPBACK_URLS: '1', K_SERVICE: 'removebackground' }),
    /DETOURAGE_TEST_ALLOW_LOOPBACK_URLS is for tests only and is refused on Cloud Run/,
  );
  assert.equal(loadConfig({ K_SERVICE: 'removebackground' }).allowLoopbackUrlsForTests, false);
});
