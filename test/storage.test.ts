/**
 * removeBackgroundFromStorage through the functions framework's own test
 * server, with @google-cloud/storage pointed at a local stand-in for the
 * Cloud Storage JSON API (tools/lib/fakeStorage.ts), and the real model. No
 * test reaches Google, and none depends on how long a removal takes: the
 * event's age is measured against the test's own clock.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { createServices, type Services } from '../functions/app';
import { ConfigError, loadConfig } from '../functions/config';
import { deliveryAttemptEstimate, SOURCE_KEYS } from '../functions/handlers/removeBackgroundFromStorage';
import { Logger } from '../functions/log';
import { PROJECT_ROOT } from '../functions/paths';
import { type EventOptions, finalizedEvent, postEvent, type StorageEvent, startStorageFunction } from '../tools/lib/cloudEvents';
import { type FakeObject, type FakeStorage, startFakeStorage } from '../tools/lib/fakeStorage';
import { postImage, type RunningServer } from '../tools/lib/http';
import { alphaChannel, fixture } from '../tools/lib/images';
import { type LocalServer, startLocalServer } from './support/servers';

const INPUT = 'detourage-photos';
const OUTPUT = 'detourage-cutouts';
const HOUR = 3600 * 1000;
/** The test's clock: every deployment's `now`, and every event's time unless a test makes it older. */
const NOW = Date.parse('2026-12-02T12:00:00.000Z');

function iso(time: number): string {
  return new Date(time).toISOString();
}

/** The object's finalized event, sent `ageMs` after it happened by the test's clock. */
function eventOf(object: FakeObject, options: EventOptions & { ageMs?: number } = {}): StorageEvent {
  const { ageMs = 0, ...rest } = options;
  return finalizedEvent(object, { time: iso(NOW - ageMs), ...rest });
}

let fake: FakeStorage;

/** A storage function's settings against the fake; the client's own retries are off unless a test turns them on. */
function storageEnv(env: Record<string, string> = {}): Record<string, string> {
  return { INPUT_BUCKET: INPUT, OUTPUT_BUCKET: OUTPUT, OUTPUT_PREFIX: 'cutouts/', STORAGE_RETRIES: '0', DETOURAGE_TEST_STORAGE_ENDPOINT: fake.url, ...env };
}

interface Deployed {
  services: Services;
  server: RunningServer;
  /** The JSON log lines the function wrote. */
  lines: Record<string, unknown>[];
  /** The log line of the storage function's last event. */
  lastEvent(): Record<string, unknown>;
  close(): Promise<void>;
}

/** The storage function on services of its own, registered and served as functions/index.ts does it. */
async function deploy(env: Record<string, string> = {}, now: () => number = () => NOW): Promise<Deployed> {
  const lines: Record<string, unknown>[] = [];
  const logger = new Logger({ level: 'debug', pretty: false, write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const services = createServices(loadConfig(storageEnv(env)), undefined, logger, now);
  const server = await startStorageFunction(services);
  return {
    services,
    server,
    lines,
    lastEvent: () => {
      const events = lines.filter((line) => String(line.message).startsWith('removeBackgroundFromStorage '));
      assert.ok(events.length > 0, 'the function logged its event');
      return events.at(-1)!;
    },
    close: async () => {
      await server.close();
      // Each deployment has its own holder: release its model, or the file keeps several resident.
      const { config, holder } = services;
      await Promise.all(config.allowedModels.filter((name) => holder.isModelLoaded(name)).map(async (name) => (await holder.get(name)).release()));
    },
  };
}

function uploadsTo(name: string): { status: number; ifGenerationMatch?: string }[] {
  return fake.requests
    .filter((request) => request.kind === 'upload' && request.name === name)
    .map(({ status, ifGenerationMatch }) => ({ status, ...(ifGenerationMatch === undefined ? {} : { ifGenerationMatch }) }));
}

function putPhoto(name: string, fixtureName: string, metadata: Record<string, string> = {}): FakeObject {
  return fake.put(INPUT, name, fixture(fixtureName), { contentType: 'image/jpeg', metadata });
}

function sidecarBody(name: string): { error: { code: string; message: string; parameter?: string } } {
  const sidecar = fake.get(OUTPUT, name);
  assert.ok(sidecar, `${name} was written`);
  assert.equal(sidecar.contentType, 'application/json');
  return JSON.parse(sidecar.body.toString('utf8')) as { error: { code: string; message: string; parameter?: string } };
}

before(async () => {
  fake = await startFakeStorage();
});
after(async () => {
  await fake.close();
});

describe('one deployment, the real model', () => {
  let deployed: Deployed;
  /** The HTTP API on the same settings, for the answers the sidecars must repeat. */
  let api: LocalServer;
  let car: FakeObject;

  before(async () => {
    deployed = await deploy();
    api = await startLocalServer(deployed.services.config);
  });
  after(async () => {
    await Promise.all([deployed.close(), api.close()]);
  });

  test('a finalized image becomes a PNG cutout under OUTPUT_PREFIX, its metadata naming the source', async () => {
    car = putPhoto('photos/car-1.jpg', 'car-1.jpg');
    const response = await postEvent(deployed.server.url, eventOf(car));
    assert.equal(response.status, 204);
    const output = fake.get(OUTPUT, 'cutouts/photos/car-1.png');
    assert.ok(output, 'the cutout was written');
    assert.equal(output.contentType, 'image/png');
    assert.deepEqual(output.metadata, { [SOURCE_KEYS.bucket]: INPUT, [SOURCE_KEYS.name]: 'photos/car-1.jpg', [SOURCE_KEYS.generation]: car.generation });
    const metadata = await sharp(output.body).metadata();
    assert.deepEqual([metadata.format, metadata.width, metadata.height, metadata.channels], ['png', 480, 360, 4]);
    const alpha = (await alphaChannel(output.body)).data;
    assert.ok(alpha.includes(0) && alpha.includes(255), 'the cutout has a transparent background and an opaque subject');
    assert.deepEqual(uploadsTo('cutouts/photos/car-1.png'), [{ status: 200, ifGenerationMatch: '0' }]);

    const line = deployed.lastEvent();
    assert.equal(line.severity, 'INFO');
    assert.equal(line.outcome, 'written');
    assert.deepEqual(line.event, { id: (line.event as { id: string }).id, type: 'google.cloud.storage.object.v1.finalized', object: `gs://${INPUT}/photos/car-1.jpg`, generation: car.generation });
    assert.equal(line.output, `gs://${OUTPUT}/cutouts/photos/car-1.png`);
    assert.equal(line.model, 'isnet-fp32');
    for (const stage of ['decode', 'infer', 'encode']) assert.equal(typeof (line.timingsMs as Record<string, number>)[stage], 'number', stage);
    assert.deepEqual(Object.keys(line.storageMs as object).sort(), ['describe', 'read', 'write']);
    assert.equal(line.deliveryAttemptEstimate, 1);
  });

  test('a redelivered event writes nothing: the output already names its generation', async () => {
    const before = fake.requests.length;
    const response = await postEvent(deployed.server.url, eventOf(car));
    assert.equal(response.status, 204);
    // One metadata lookup of the output, and nothing read or written.
    assert.deepEqual(fake.requests.slice(before).map((request) => request.kind), ['metadata']);
    assert.equal(deployed.lastEvent().outcome, 'duplicate');
  });

  test('a new generation of the input replaces the output of the old one, under a precondition on it', async () => {
    const previous = fake.get(OUTPUT, 'cutouts/photos/car-1.png')!;
    const newer = putPhoto('photos/car-1.jpg', 'car-1.jpg');
    assert.equal((await postEvent(deployed.server.url, eventOf(newer))).status, 204);
    assert.deepEqual(uploadsTo('cutouts/photos/car-1.png').at(-1), { status: 200, ifGenerationMatch: previous.generation });
    assert.equal(fake.get(OUTPUT, 'cutouts/photos/car-1.png')!.metadata[SOURCE_KEYS.generation], newer.generation);
    // The old generation's event, arriving late, leaves the newer output alone.
    assert.equal((await postEvent(deployed.server.url, eventOf(car))).status, 204);
    assert.equal(deployed.lastEvent().outcome, 'superseded');
  });

  test('two deliveries of one event at once: both acknowledged, one write, the other refused by its precondition', async () => {
    const plants = putPhoto('photos/plants-1.jpg', 'plants-1.jpg');
    const event = eventOf(plants);
    // Both pass their output lookup and their removal before either writes.
    fake.holdUploads(2);
    const responses = await Promise.all([postEvent(deployed.server.url, event), postEvent(deployed.server.url, event)]);
    assert.deepEqual(responses.map((response) => response.status), [204, 204]);
    assert.deepEqual(
      uploadsTo('cutouts/photos/plants-1.png').map((upload) => upload.status).sort(),
      [200, 412],
    );
    const outcomes = deployed.lines.filter((line) => (line.event as { object?: string } | undefined)?.object === `gs://${INPUT}/photos/plants-1.jpg`).map((line) => line.outcome);
    assert.deepEqual(outcomes.sort(), ['lost-race', 'written']);
  });

  test('binary mode, int64 fields as numbers, and options from the object\'s metadata over STORAGE_OPTIONS', async () => {
    const anime = putPhoto('photos/anime-girl-1.jpg', 'anime-girl-1.jpg', { 'detourage-format': 'webp', 'detourage-crop': 'true', author: 'not ours' });
    const response = await postEvent(deployed.server.url, eventOf(anime, { int64As: 'number' }), 'binary');
    assert.equal(response.status, 204);
    const output = fake.get(OUTPUT, 'cutouts/photos/anime-girl-1.webp');
    assert.ok(output, 'the metadata chose webp');
    assert.equal(output.contentType, 'image/webp');
    const metadata = await sharp(output.body).metadata();
    const input = await sharp(anime.body).metadata();
    assert.equal(metadata.format, 'webp');
    assert.equal(metadata.hasAlpha, true);
    assert.ok(metadata.width * metadata.height < input.width * input.height, 'crop=true cropped to the subject');
    assert.equal(fake.get(OUTPUT, 'cutouts/photos/anime-girl-1.png'), undefined);
  });

  test('poison is acknowledged once, with the error the HTTP API gives beside where the output would be', async () => {
    const cases: { name: string; body: Buffer; metadata?: Record<string, string>; query?: string; sidecar: string; code: string }[] = [
      { name: 'photos/notes.jpg', body: Buffer.from('not an image at all'), sidecar: 'cutouts/photos/notes.png.error.json', code: 'unsupported_media_type' },
      { name: 'photos/truncated.jpg', body: fixture('car-1.jpg').subarray(0, 300), sidecar: 'cutouts/photos/truncated.png.error.json', code: 'corrupt_image' },
      // Bad options in the metadata: the output's name keeps STORAGE_OPTIONS' format.
      { name: 'photos/gif.jpg', body: fixture('car-1.jpg'), metadata: { 'detourage-format': 'gif' }, query: 'format=gif', sidecar: 'cutouts/photos/gif.png.error.json', code: 'invalid_parameter' },
      { name: 'photos/typo.jpg', body: fixture('car-1.jpg'), metadata: { 'detourage-formatt': 'webp' }, query: 'formatt=webp', sidecar: 'cutouts/photos/typo.png.error.json', code: 'invalid_parameter' },
    ];
    for (const poison of cases) {
      const object = fake.put(INPUT, poison.name, poison.body, { contentType: 'image/jpeg', metadata: poison.metadata ?? {} });
      const response = await postEvent(deployed.server.url, eventOf(object));
      assert.equal(response.status, 204, poison.name);
      const body = sidecarBody(poison.sidecar);
      assert.equal(body.error.code, poison.code, poison.name);
      const http = await postImage(`${api.url}/remove-background${poison.query ? `?${poison.query}` : ''}`, poison.body);
      assert.deepEqual(body, await http.json(), `${poison.name}: the HTTP API's answer`);
      assert.equal(fake.get(INPUT, poison.sidecar), undefined);
      const line = deployed.lastEvent();
      assert.deepEqual([line.severity, line.outcome, (line.error as { code: string }).code], ['WARNING', 'refused', poison.code]);
      // Delivered again, it finds its refusal and writes nothing.
      const uploads = uploadsTo(poison.sidecar).length;
      assert.equal((await postEvent(deployed.server.url, eventOf(object))).status, 204);
      assert.equal(uploadsTo(poison.sidecar).length, uploads);
      assert.equal(deployed.lastEvent().outcome, 'duplicate');
    }
    const url = fake.put(INPUT, 'photos/url.jpg', fixture('car-1.jpg'), { metadata: { 'detourage-image_url': 'https://example.com/a.jpg' } });
    assert.equal((await postEvent(deployed.server.url, eventOf(url))).status, 204);
    assert.deepEqual(
      { code: sidecarBody('cutouts/photos/url.png.error.json').error.code, parameter: sidecarBody('cutouts/photos/url.png.error.json').error.parameter },
      { code: 'invalid_parameter', parameter: 'image_url' },
    );
  });

  test('a Cloud Storage 503 fails the delivery (500, so Eventarc retries), and the next delivery succeeds', async () => {
    const cloth = putPhoto('photos/cloth-1.jpg', 'cloth-1.jpg');
    const event = eventOf(cloth);
    fake.fail({ kind: 'media', status: 503, count: 1 });
    const failed = await postEvent(deployed.server.url, event);
    assert.equal(failed.status, 500);
    assert.equal(fake.get(OUTPUT, 'cutouts/photos/cloth-1.png'), undefined);
    const line = deployed.lastEvent();
    assert.deepEqual([line.severity, line.outcome], ['WARNING', 'retry']);
    const { cause, ...error } = line.error as { cause: string };
    assert.deepEqual(error, { code: 'storage', status: 503 });
    assert.match(cause, /^Cloud Storage read of gs:\/\/detourage-photos\/photos\/cloth-1\.jpg failed \(503\): .*Injected fault/);

    // The write can fail too, after the removal ran: the redelivery runs it again.
    fake.fail({ kind: 'upload', status: 503, count: 1 });
    assert.equal((await postEvent(deployed.server.url, event)).status, 500);
    assert.equal(fake.get(OUTPUT, 'cutouts/photos/cloth-1.png'), undefined);

    assert.equal((await postEvent(deployed.server.url, event)).status, 204);
    assert.ok(fake.get(OUTPUT, 'cutouts/photos/cloth-1.png'));
    assert.deepEqual(uploadsTo('cutouts/photos/cloth-1.png').map((upload) => upload.status), [503, 200]);
  });

  test('an event older than MAX_EVENT_AGE gets its sidecar and is acknowledged, without reading the object', async () => {
    const old = putPhoto('photos/old.jpg', 'car-1.jpg');
    const event = eventOf(old, { ageMs: 2 * HOUR });
    const response = await postEvent(deployed.server.url, event);
    assert.equal(response.status, 204);
    const body = sidecarBody('cutouts/photos/old.png.error.json');
    assert.equal(body.error.code, 'timeout');
    assert.match(body.error.message, /older than MAX_EVENT_AGE \(3600 s\)/);
    assert.ok(!fake.requests.some((request) => request.kind === 'media' && request.name === 'photos/old.jpg'));
    const line = deployed.lastEvent();
    assert.equal(line.outcome, 'expired');
    assert.equal(line.eventAgeMs, 2 * HOUR);
    assert.equal(line.deliveryAttemptEstimate, 17);
  });

  test('without a CloudEvent time, the age comes from the object\'s timeCreated', async () => {
    const old = putPhoto('photos/older.jpg', 'car-1.jpg');
    old.timeCreated = iso(NOW - 3 * HOUR);
    assert.equal((await postEvent(deployed.server.url, eventOf(old, { time: null }))).status, 204);
    assert.equal(sidecarBody('cutouts/photos/older.png.error.json').error.code, 'timeout');
  });

  test('what is not an input is acknowledged untouched: other types, folders, another bucket, detourage\'s own outputs', async () => {
    const writes = fake.requests.filter((request) => request.kind === 'upload').length;
    const photo = putPhoto('photos/again.jpg', 'car-1.jpg');
    const cases: [string, StorageEvent, RegExp][] = [
      ['a deletion', eventOf(photo, { type: 'google.cloud.storage.object.v1.deleted' }), /not a google\.cloud\.storage\.object\.v1\.finalized event/],
      ['a folder placeholder', eventOf(fake.put(INPUT, 'photos/', Buffer.alloc(0))), /folder/],
      ['another bucket', eventOf(fake.put('someone-else', 'photos/a.jpg', fixture('car-1.jpg'))), /not of INPUT_BUCKET/],
      ['a copy of an output', eventOf(putPhoto('photos/copy.png', 'car-1.jpg', { [SOURCE_KEYS.generation]: '1' })), /detourage's own output/],
    ];
    for (const [name, event, reason] of cases) {
      assert.equal((await postEvent(deployed.server.url, event)).status, 204, name);
      const line = deployed.lastEvent();
      assert.equal(line.outcome, 'skipped', name);
      assert.match(String(line.reason), reason, name);
    }
    const malformed = { ...eventOf(photo), data: { bucket: INPUT, name: 'photos/again.jpg' } };
    assert.equal((await postEvent(deployed.server.url, malformed)).status, 204);
    assert.match(String(deployed.lastEvent().reason), /names no object/);
    assert.equal(fake.requests.filter((request) => request.kind === 'upload').length, writes);
  });
});

describe('settings', () => {
  test('an object over MAX_UPLOAD_BYTES is refused without being read, by the event\'s size or, when it has none, its metadata\'s', async () => {
    const small = await deploy({ MAX_UPLOAD_BYTES: '1000' });
    try {
      for (const [name, withSize] of [['photos/big.jpg', true], ['photos/big-unsized.jpg', false]] as const) {
        const object = putPhoto(name, 'car-1.jpg');
        const event = eventOf(object);
        if (!withSize) delete (event.data as { size?: unknown }).size;
        assert.equal((await postEvent(small.server.url, event)).status, 204, name);
        assert.equal(sidecarBody(`cutouts/${name.replace('.jpg', '.png')}.error.json`).error.code, 'payload_too_large', name);
        assert.ok(!fake.requests.some((request) => request.kind === 'media' && request.name === name), `${name} was never downloaded`);
        assert.equal(small.lastEvent().outcome, 'refused');
      }
    } finally {
      await small.close();
    }
  });

  test('the loop guard: one bucket for both needs two disjoint prefixes, checked at start', () => {
    const same = (inputPrefix: string, outputPrefix: string) => () =>
      loadConfig({ INPUT_BUCKET: INPUT, OUTPUT_BUCKET: INPUT, INPUT_PREFIX: inputPrefix, OUTPUT_PREFIX: outputPrefix });
    const overlapping = [['', ''], ['', 'cutouts/'], ['uploads/', ''], ['photos/', 'photos/cutouts/'], ['photos/', 'photos/'], ['cutouts/a/', 'cutouts/']] as const;
    for (const [inputPrefix, outputPrefix] of overlapping) {
      assert.throws(same(inputPrefix, outputPrefix), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /OUTPUT_BUCKET is the trigger's bucket .* would let outputs trigger removals of their own/);
        return true;
      }, `${inputPrefix} / ${outputPrefix}`);
    }
    assert.equal(same('uploads/', 'cutouts/')().storage?.outputPrefix, 'cutouts/');
    assert.equal(loadConfig({ INPUT_BUCKET: INPUT, OUTPUT_BUCKET: OUTPUT }).storage?.outputBucket, OUTPUT);
  });

  test('the HTTP functions start without the storage settings; the storage function does not', () => {
    assert.equal(loadConfig({}).storage, undefined);
    assert.throws(() => loadConfig({ FUNCTION_TARGET: 'removeBackgroundFromStorage' }), /removeBackgroundFromStorage needs INPUT_BUCKET[\s\S]*needs OUTPUT_BUCKET/);
    assert.throws(() => loadConfig({ OUTPUT_PREFIX: 'cutouts/' }), /removeBackgroundFromStorage needs INPUT_BUCKET/);
  });

  test('each storage setting is read and checked', () => {
    const storage = loadConfig({
      INPUT_BUCKET: 'in.example.com',
      INPUT_PREFIX: 'uploads/',
      OUTPUT_BUCKET: 'out_bucket',
      OUTPUT_PREFIX: 'cutouts/',
      STORAGE_OPTIONS: ' format=webp&crop=true ',
      MAX_EVENT_AGE: '90m',
      STORAGE_RETRIES: '0',
    }).storage;
    assert.deepEqual(
      { ...storage },
      {
        inputBucket: 'in.example.com',
        inputPrefix: 'uploads/',
        outputBucket: 'out_bucket',
        outputPrefix: 'cutouts/',
        options: 'format=webp&crop=true',
        maxEventAgeMs: 90 * 60 * 1000,
        retries: 0,
        endpointForTests: undefined,
      },
    );
    assert.equal(loadConfig(storageEnv()).storage?.maxEventAgeMs, HOUR);
    assert.equal(loadConfig({ INPUT_BUCKET: INPUT, OUTPUT_BUCKET: OUTPUT }).storage?.retries, 2);
    for (const [name, value, message] of [
      ['OUTPUT_BUCKET', 'gs://out', /OUTPUT_BUCKET must be a bucket's name .*without gs:\/\//],
      ['INPUT_BUCKET', 'Photos', /INPUT_BUCKET must be a bucket's name/],
      ['MAX_EVENT_AGE', '10', /MAX_EVENT_AGE must be a duration from 60 s to 168 h, such as 3600, 90m or 1h, got "10"/],
      ['MAX_EVENT_AGE', '1 day', /MAX_EVENT_AGE must be a duration/],
      ['STORAGE_RETRIES', '11', /STORAGE_RETRIES must be between 0 and 10/],
      ['OUTPUT_PREFIX', 'a\nb', /OUTPUT_PREFIX must be the start of an object name/],
    ] as const) {
      assert.throws(() => loadConfig({ INPUT_BUCKET: INPUT, OUTPUT_BUCKET: OUTPUT, [name]: value }), message, `${name}=${value}`);
    }
    assert.throws(
      () => loadConfig({ INPUT_BUCKET: INPUT, OUTPUT_BUCKET: OUTPUT, DETOURAGE_TEST_STORAGE_ENDPOINT: 'http://127.0.0.1:1', K_SERVICE: 'removebackgroundfromstorage' }),
      /DETOURAGE_TEST_STORAGE_ENDPOINT is for tests only and is refused on Cloud Run/,
    );
  });

  test('STORAGE_OPTIONS is read by the API\'s parser at start, with its messages', () => {
    const start = (options: string) => () => createServices(loadConfig(storageEnv({ STORAGE_OPTIONS: options })));
    for (const [options, message] of [
      ['format=gif', /STORAGE_OPTIONS: Invalid format "gif": expected/],
      ['formatt=webp', /STORAGE_OPTIONS: Unknown parameter "formatt"/],
      ['crop=true&crop=false', /STORAGE_OPTIONS: The parameter "crop" is given more than once/],
      ['image_url=https://example.com/a.jpg', /STORAGE_OPTIONS: image_url gives an image, which STORAGE_OPTIONS cannot/],
      ['format=auto', /STORAGE_OPTIONS: format=auto picks the format from the result/],
      ['model=u3net', /STORAGE_OPTIONS: Unknown model "u3net"/],
    ] as const) {
      assert.throws(start(options), (error: unknown) => error instanceof ConfigError && message.test(error.message), options);
    }
    assert.doesNotThrow(start('format=webp&crop=true&bg_color=white'));
  });

  test('the delivery attempt is estimated from the event\'s age against Eventarc\'s backoff', () => {
    // Backoff 10 s, doubling to 600 s: deliveries at 0, 10, 30, 70, 150, 310, 630, 1230 s, then every 600 s.
    assert.deepEqual([0, 9_999, 10_000, 29_999, 30_000, 630_000, 1_229_999, 1_230_000, 2 * HOUR].map(deliveryAttemptEstimate), [1, 1, 2, 2, 3, 7, 7, 8, 17]);
  });
});

describe('in one bucket, and with the client\'s own retries', () => {
  test('objects under OUTPUT_PREFIX and outside INPUT_PREFIX are acknowledged untouched', async () => {
    const deployed = await deploy({ OUTPUT_BUCKET: INPUT, INPUT_PREFIX: 'uploads/', OUTPUT_PREFIX: 'cutouts/' });
    try {
      const writes = fake.requests.filter((request) => request.kind === 'upload').length;
      for (const [name, reason] of [['cutouts/uploads/a.png', /under OUTPUT_PREFIX/], ['elsewhere/a.jpg', /not under INPUT_PREFIX/]] as const) {
        const object = fake.put(INPUT, name, fixture('car-1.jpg'));
        assert.equal((await postEvent(deployed.server.url, eventOf(object))).status, 204);
        assert.equal(deployed.lastEvent().outcome, 'skipped');
        assert.match(String(deployed.lastEvent().reason), reason);
      }
      assert.equal(fake.requests.filter((request) => request.kind === 'upload').length, writes);
      assert.equal(deployed.services.holder.isLoaded, false);
    } finally {
      await deployed.close();
    }
  });

  test('STORAGE_RETRIES: the client retries a 503 itself, and the event needs no redelivery', async () => {
    const deployed = await deploy({ STORAGE_RETRIES: '1' });
    try {
      // An event whose output is done already: the lookup is all it needs, and no model loads.
      const photo = putPhoto('photos/retried.jpg', 'car-1.jpg');
      fake.put(OUTPUT, 'cutouts/photos/retried.png', Buffer.from('done'), {
        contentType: 'image/png',
        metadata: { [SOURCE_KEYS.bucket]: INPUT, [SOURCE_KEYS.name]: 'photos/retried.jpg', [SOURCE_KEYS.generation]: photo.generation },
      });
      fake.fail({ kind: 'metadata', status: 503, count: 1 });
      assert.equal((await postEvent(deployed.server.url, eventOf(photo))).status, 204);
      assert.deepEqual(
        fake.requests.filter((request) => request.name === 'cutouts/photos/retried.png').map((request) => request.status),
        [503, 200],
      );
      assert.equal(deployed.lastEvent().outcome, 'duplicate');
    } finally {
      await deployed.close();
    }
  });

  test('an output name taken by another object is never overwritten', async () => {
    const deployed = await deploy();
    try {
      const png = putPhoto('photos/twins.png', 'car-1.jpg');
      fake.put(OUTPUT, 'cutouts/photos/twins.png', Buffer.from('someone else'), { contentType: 'image/png' });
      assert.equal((await postEvent(deployed.server.url, eventOf(png))).status, 204);
      assert.deepEqual([deployed.lastEvent().severity, deployed.lastEvent().outcome], ['WARNING', 'conflict']);
      assert.match(String(deployed.lastEvent().reason), /was not made from this object \(its source: none recorded: detourage did not write it\)/);
      assert.equal(fake.get(OUTPUT, 'cutouts/photos/twins.png')!.body.toString(), 'someone else');
    } finally {
      await deployed.close();
    }
  });
});

describe('functions/index.ts', () => {
  const entry = path.join(PROJECT_ROOT, 'dist', 'functions', 'index.js');

  test('registers removeBackgroundFromStorage, and health never loads @google-cloud/storage', () => {
    const script = `
      require(${JSON.stringify(entry)});
      const { getTestServer } = require('@google-cloud/functions-framework/testing');
      const server = getTestServer('health').listen(0, '127.0.0.1', async () => {
        const response = await fetch('http://127.0.0.1:' + server.address().port + '/');
        const loaded = Object.keys(require.cache).some((file) => /node_modules[\\\\/]@google-cloud[\\\\/]storage[\\\\/]/.test(file));
        console.log(JSON.stringify({ status: response.status, storage: typeof getTestServer('removeBackgroundFromStorage'), loaded }));
        server.close();
      });`;
    const output = execFileSync(process.execPath, ['-e', script], { cwd: PROJECT_ROOT, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    assert.deepEqual(JSON.parse(output.trim()), { status: 200, storage: 'object', loaded: false });
  });

  test('as the storage function\'s target, it refuses to load without its settings', () => {
    const main = path.join(PROJECT_ROOT, 'node_modules', '@google-cloud', 'functions-framework', 'build', 'src', 'main.js');
    const result = spawnSync(process.execPath, [main, '--target=removeBackgroundFromStorage', '--signature-type=cloudevent', '--port=0'], {
      cwd: PROJECT_ROOT,
      env: { PATH: process.env.PATH ?? '', FUNCTION_TARGET: 'removeBackgroundFromStorage' },
      encoding: 'utf8',
      timeout: 10_000,
    });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr + result.stdout, /removeBackgroundFromStorage needs INPUT_BUCKET/);
  });
});
