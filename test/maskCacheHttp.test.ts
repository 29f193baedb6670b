/**
 * The mask cache through real HTTP on the real model: a repeat of the same
 * bytes with only later options changed is a hit that skips preprocessing and
 * inference and answers the very bytes an uncached run gives; a change of
 * model, quality, working size or bytes is a miss; a small MASK_CACHE_MB
 * evicts, and 0 never hits.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Services } from '../functions/app';
import { loadConfig } from '../functions/config';
import { Logger } from '../functions/log';
import { fixture } from '../tools/lib/images';
import { bodyBytes, postImage, type RunningServer } from '../tools/lib/http';
import { startLocalServer } from './support/servers';

const CAR = fixture('car-1.jpg');
/** The same photo with a byte after its end: the same pixels, other bytes, so another key. */
const CAR_AGAIN = Buffer.concat([CAR, Buffer.from([0])]);
/** 987x1481: size=preview gives it another working size, size=full its own, as auto does. */
const PLANTS = fixture('plants-1.jpg');

type Server = RunningServer & { detourage: Services };

interface Answer {
  body: Buffer;
  /** hit, miss or off, from Server-Timing's cache entry. */
  cache: string | undefined;
  /** The Server-Timing entries' names, in order. */
  stages: string[];
  model: string | null;
}

async function remove(server: Server, query: string, image = CAR): Promise<Answer> {
  const response = await postImage(`${server.url}/remove-background?${query}`, image);
  const body = await bodyBytes(response);
  assert.equal(response.status, 200, body.toString());
  const timing = response.headers.get('server-timing') ?? '';
  return {
    body,
    cache: /(?:^|, )cache;desc=(\w+)/.exec(timing)?.[1],
    stages: timing.split(', ').map((entry) => entry.split(';')[0]!),
    model: response.headers.get('x-model'),
  };
}

const logLines: Record<string, unknown>[] = [];
let cached: Server;

before(async () => {
  const logger = new Logger({ level: 'info', pretty: false, write: (line) => logLines.push(JSON.parse(line) as Record<string, unknown>) });
  cached = await startLocalServer(loadConfig({ PORT: '0', ALLOWED_MODELS: 'isnet-fp32,isnet-fp16', MAX_LOADED_MODELS: '2' }), undefined, logger);
});
after(() => cached.close());

/** Every later stage's options at once: what a hit must reproduce byte for byte. */
const LATER_OPTIONS = [
  'crop=true&bg_color=lime&format=jpg',
  `roi=${encodeURIComponent('0% 0% 80% 100%')}&post_process=true&refine=true&semitransparency=false&shadow_type=drop&scale=80%25&format=webp`,
  'channels=alpha&crop=true&crop_margin=10px&format=png',
];

test('a repeat with other layout, background, filters, shadow and format is a hit: no preprocessing or inference, the same bytes as an uncached run', async () => {
  const first = await remove(cached, 'format=png');
  assert.equal(first.cache, 'miss');
  for (const stage of ['decode', 'load', 'cache', 'preprocess', 'queue', 'infer', 'postprocess', 'layout', 'encode']) assert.ok(first.stages.includes(stage), `${stage} in ${first.stages.join(', ')}`);

  const hits: Buffer[] = [];
  for (const query of LATER_OPTIONS) {
    const hit = await remove(cached, query);
    assert.equal(hit.cache, 'hit', query);
    for (const stage of ['load', 'preprocess', 'queue', 'infer']) assert.ok(!hit.stages.includes(stage), `no ${stage} on a hit: ${hit.stages.join(', ')}`);
    for (const stage of ['decode', 'cache', 'postprocess', 'layout', 'encode']) assert.ok(hit.stages.includes(stage), `${stage} on a hit`);
    assert.equal(hit.model, 'isnet-fp32');
    hits.push(hit.body);
  }
  assert.ok(logLines.some((line) => line.maskCache === 'hit'), 'the log line says hit');
  assert.ok(logLines.some((line) => line.maskCache === 'miss'), 'and miss');

  const uncached = await startLocalServer(loadConfig({ PORT: '0', MASK_CACHE_MB: '0' }));
  try {
    assert.equal(uncached.detourage.maskCache, undefined);
    for (const [index, query] of LATER_OPTIONS.entries()) {
      const reference = await remove(uncached, query);
      assert.equal(reference.cache, 'off');
      assert.ok(reference.stages.includes('infer'));
      assert.ok(reference.body.equals(hits[index]!), `${query}: the hit's ${hits[index]!.length} bytes are the uncached ${reference.body.length}`);
    }
    // MASK_CACHE_MB=0 never hits, however often the same request comes.
    const again = await remove(uncached, LATER_OPTIONS[0]!);
    assert.deepEqual([again.cache, again.stages.includes('infer')], ['off', true]);
  } finally {
    await uncached.close();
  }
});

test('the model, quality, working size and bytes are in the key: a change of any misses, and each is then a hit of its own', async () => {
  // Whatever the first test left, this photo's default mask is there once this has run.
  await remove(cached, 'channels=alpha');
  const fp16 = await remove(cached, 'model=isnet-fp16&channels=alpha');
  assert.deepEqual([fp16.cache, fp16.model], ['miss', 'isnet-fp16']);
  const fp16Again = await remove(cached, 'model=isnet-fp16&format=jpg');
  assert.deepEqual([fp16Again.cache, fp16Again.model], ['hit', 'isnet-fp16']);

  assert.equal((await remove(cached, 'quality=high&channels=alpha')).cache, 'miss');
  assert.equal((await remove(cached, 'quality=high&crop=true')).cache, 'hit');

  assert.equal((await remove(cached, 'channels=alpha', CAR_AGAIN)).cache, 'miss', 'other bytes, same pixels');
  assert.equal((await remove(cached, 'format=webp')).cache, 'hit', 'the first photo is still there');

  assert.equal((await remove(cached, 'channels=alpha', PLANTS)).cache, 'miss');
  assert.equal((await remove(cached, 'size=preview&channels=alpha', PLANTS)).cache, 'miss', 'size=preview resizes it: another input');
  assert.equal((await remove(cached, 'size=full&format=jpg', PLANTS)).cache, 'hit', 'size=full is its own size, as auto');
  assert.equal((await remove(cached, 'size=preview&bg_color=white', PLANTS)).cache, 'hit');

  // fp32 and fp16, fast and high, two sets of bytes, two working sizes.
  assert.equal(cached.detourage.maskCache?.size, 6);
});

test('a hit never loads its model: with room for one loaded model, a repeat after another model ran answers without reloading', async () => {
  const server = await startLocalServer(loadConfig({ PORT: '0', ALLOWED_MODELS: 'isnet-fp32,isnet-fp16', MAX_LOADED_MODELS: '1' }));
  try {
    assert.equal((await remove(server, 'channels=alpha')).cache, 'miss');
    assert.equal((await remove(server, 'model=isnet-fp16&channels=alpha')).cache, 'miss');
    assert.equal(server.loadCount, 2, 'isnet-fp16 took isnet-fp32\'s place');
    const hit = await remove(server, 'crop=true');
    assert.deepEqual([hit.cache, hit.model, server.loadCount], ['hit', 'isnet-fp32', 2]);
    assert.equal(server.detourage.holder.isModelLoaded('isnet-fp32'), false, 'answered with isnet-fp16 still in its place');
  } finally {
    await server.close();
  }
});

test('MASK_CACHE_MB with room for one 1024² mask: a second image evicts the first, which misses again; the bound holds', async () => {
  const server = await startLocalServer(loadConfig({ PORT: '0', MASK_CACHE_MB: '2' }));
  try {
    const cache = server.detourage.maskCache!;
    assert.equal((await remove(server, 'channels=alpha')).cache, 'miss');
    assert.equal((await remove(server, 'crop=true')).cache, 'hit');
    assert.equal((await remove(server, 'channels=alpha', CAR_AGAIN)).cache, 'miss');
    assert.deepEqual([cache.size, cache.bytes <= cache.capacityBytes], [1, true]);
    assert.equal((await remove(server, 'crop=true')).cache, 'miss', 'evicted');
    assert.deepEqual([cache.size, cache.bytes <= cache.capacityBytes], [1, true]);
  } finally {
    await server.close();
  }
});

test('a mask larger than MASK_CACHE_MB is never stored', async () => {
  // 1 MiB is exactly a 1024² mask's pixels, which with its entry's overhead is more.
  const server = await startLocalServer(loadConfig({ PORT: '0', MASK_CACHE_MB: '1' }));
  try {
    assert.equal((await remove(server, 'channels=alpha')).cache, 'miss');
    assert.equal((await remove(server, 'channels=alpha')).cache, 'miss');
    assert.deepEqual([server.detourage.maskCache?.size, server.detourage.maskCache?.bytes], [0, 0]);
  } finally {
    await server.close();
  }
});
