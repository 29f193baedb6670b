import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import sharp from 'sharp';
import { type Config, loadConfig } from '../functions/config';
import { Gate } from '../functions/model/gate';
import { findModel } from '../functions/model/registry';
import { parseRemovalOptions } from '../functions/request/options';
import { planRemoval, warm as warmModel } from '../functions/pipeline/removal';
import { heldModel, type HeldModel } from './support/heldModel';
import { fixture } from '../tools/lib/images';
import { type ErrorBody, postForm, postImage } from '../tools/lib/http';
import { type LocalServer, startLocalServer } from './support/servers';
import { type AdmissionWatch, watchAdmission, watchGate } from './support/gates';

const tick = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const PHOTO = fixture('car-1.jpg');

/** Polls a condition that the server reaches by itself; bounded, so a bug fails the test instead of hanging it. */
async function until(condition: () => boolean, what: string, limitMs = 30_000): Promise<void> {
  for (let waited = 0; !condition(); waited += 10) {
    if (waited > limitMs) throw new Error(`timed out waiting for ${what}`);
    await tick(10);
  }
}

/**
 * A server of its own, its admission's gates watched from the start; with a held model, loaded and
 * warmed first, so that what the test holds is an inference, not the load.
 */
async function withServer(
  overrides: Partial<Config>,
  held: HeldModel | null,
  body: (server: LocalServer, gates: AdmissionWatch) => Promise<void>,
  warm = true,
): Promise<void> {
  const server = await startLocalServer({ ...loadConfig({}), ...overrides }, held?.loader);
  const gates = watchAdmission(server.detourage.admission);
  if (held && warm) {
    held.open();
    // Not over HTTP: a test's short deadline must not cut the load short.
    await warmModel(server.detourage.holder);
    held.close();
  }
  try {
    await body(server, gates);
  } finally {
    held?.open();
    await until(() => gates.requests.active === 0, 'the pipeline to empty');
    await server.close();
  }
}

async function errorOf(response: Response): Promise<{ status: number; code: string; message: string; retryAfter: string | null }> {
  const body = (await response.json()) as ErrorBody;
  return { status: response.status, code: body.error.code, message: body.error.message, retryAfter: response.headers.get('retry-after') };
}

/**
 * Whether `gate` starts a task of `weight` inside the call: it holds less than its capacity less
 * `weight`, and nobody waits. What a watch cannot see, the gate's own books, shows here.
 */
function startsAtOnce(gate: Gate, weight = 1): boolean {
  let started = false;
  void gate.run(() => {
    started = true;
    return Promise.resolve();
  }, undefined, weight);
  return started;
}

test('unit: the gate runs up to capacity, queues up to its limit, refuses the rest', async () => {
  const gate = new Gate(1, 1);
  const seen = watchGate(gate);
  const order: string[] = [];
  const slow = (name: string) => async (): Promise<string> => {
    order.push(`start ${name}`);
    await tick(30);
    return name;
  };
  const first = gate.run(slow('a'));
  const second = gate.run(slow('b'));
  await assert.rejects(gate.run(slow('c')), (error: Error & { code?: string; status?: number }) => {
    assert.equal(error.code, 'overloaded');
    assert.equal(error.status, 503);
    return true;
  });
  assert.deepEqual(await Promise.all([first, second]), ['a', 'b']);
  assert.deepEqual(order, ['start a', 'start b']);
  assert.equal(seen.active, 0);
  assert.ok(startsAtOnce(gate), 'every place was given back');
});

test('unit: a waiting task whose signal aborts leaves the queue without running', async () => {
  const gate = new Gate(1, 5);
  const seen = watchGate(gate);
  let ran = false;
  const blocker = gate.run(() => tick(50));
  const controller = new AbortController();
  const waiting = gate.run(async () => {
    ran = true;
    return Promise.resolve();
  }, controller.signal);
  assert.equal(seen.queued, 1);
  controller.abort(new Error('client left'));
  await assert.rejects(waiting, /client left/);
  assert.equal(seen.queued, 0);
  await blocker;
  assert.equal(ran, false);
  assert.equal(seen.active, 0);
  assert.ok(startsAtOnce(gate), 'the task that left holds no place');
});

test('unit: a weighted gate admits by weight, in order, and a large waiter is not passed over', async () => {
  const gate = new Gate(100, 10);
  const seen = watchGate(gate);
  const order: string[] = [];
  let releaseFirst!: () => void;
  const first = gate.run(() => new Promise<void>((resolve) => (releaseFirst = resolve)).then(() => order.push('a')), undefined, 60);
  const record = (name: string) => (): Promise<number> => Promise.resolve(order.push(name));
  const large = gate.run(record('large'), undefined, 80);
  // 60 + 10 would fit, but the large task waits ahead of it.
  const small = gate.run(record('small'), undefined, 10);
  assert.equal(seen.queued, 2);
  assert.equal(seen.inUse, 60);
  releaseFirst();
  await Promise.all([first, large, small]);
  assert.deepEqual(order, ['a', 'large', 'small']);
  assert.equal(seen.inUse, 0);
  assert.ok(startsAtOnce(gate, 100), 'all the weight was given back');
  await assert.rejects(gate.run(record('too large'), undefined, 101), RangeError);
});

test('beyond one running and one waiting, removals and warmups alike get 503 with Retry-After at once', async () => {
  const held = heldModel();
  held.close();
  // Not warmed first: on an instance that just ran an inference a warmup would answer alreadyWarm.
  await withServer({ maxConcurrentInferences: 1, maxQueue: 1 }, held, async (server, gates) => {
    const url = `${server.url}/remove-background?type=mask`;
    const admitted = [postImage(url, PHOTO), postImage(url, PHOTO)];
    await until(() => gates.requests.active === 2, 'two admitted requests');
    const refused = await Promise.all([...Array.from({ length: 3 }, () => postImage(url, PHOTO)), fetch(`${server.url}/warmup`)].map(async (answer) => errorOf(await answer)));
    for (const error of refused) assert.deepEqual([error.status, error.code, error.retryAfter], [503, 'overloaded', '5']);
    held.open();
    assert.deepEqual((await Promise.all(admitted)).map((response) => response.status), [200, 200]);
  }, false);
});

test('a request past REQUEST_TIMEOUT_MS gets 504, and a queued one that timed out never runs', async () => {
  const held = heldModel();
  held.close();
  await withServer({ maxConcurrentInferences: 1, maxQueue: 1, requestTimeoutMs: 3000 }, held, async (server, gates) => {
    const url = `${server.url}/remove-background?type=mask`;
    // The first is held at the model's door past its deadline (decoding a 480x360 photo takes a small part of it on any CPU); the second waits behind it for the model.
    const [running, queued] = await Promise.all([postImage(url, PHOTO), postImage(url, PHOTO)]);
    assert.deepEqual([running.status, (await errorOf(running)).code], [504, 'timeout']);
    assert.equal(queued.status, 504);
    assert.equal(held.waiting, 1);
    const ranBefore = held.ran;
    held.open();
    await until(() => gates.requests.active === 0, 'the held inference to finish');
    assert.equal(held.ran - ranBefore, 1);
    // Both places and both reservations are back: the instance serves on.
    assert.equal(gates.memory.inUse, 0);
  });
});

test('a queued request whose client has gone is dropped before inference', async () => {
  const held = heldModel();
  held.close();
  await withServer({ maxConcurrentInferences: 1, maxQueue: 1 }, held, async (server, gates) => {
    const url = `${server.url}/remove-background?type=mask`;
    const first = postImage(url, PHOTO);
    await held.untilWaiting(1);
    const ranBefore = held.ran;
    const controller = new AbortController();
    const abandoned = postImage(url, PHOTO, 'image/jpeg', { signal: controller.signal });
    await until(() => gates.requests.active === 2, 'the second request to queue');
    controller.abort();
    await assert.rejects(abandoned);
    await until(() => gates.requests.active === 1, 'the abandoned request to leave');
    held.open();
    assert.equal((await first).status, 200);
    assert.equal(held.ran - ranBefore, 1);
  });
});

/** The estimate of a type=mask removal of PHOTO, and settings with room for one of them, not two. */
async function roomForOne(): Promise<{ bytes: number; settings: Partial<Config> }> {
  const entry = findModel('isnet-fp32')!;
  const plan = await planRemoval({ image: PHOTO, backgroundImage: null, options: parseRemovalOptions({ type: 'mask' }) }, entry, loadConfig({}));
  return { bytes: plan.cost.bytes, settings: { requestMemoryBytes: Math.ceil(plan.cost.bytes * 1.5), maxQueue: 4 } };
}

test('a request that fits only later waits for memory, holding no pixels, then runs', async () => {
  const room = await roomForOne();
  const held = heldModel();
  held.close();
  await withServer(room.settings, held, async (server, gates) => {
    const url = `${server.url}/remove-background?type=mask`;
    const first = postImage(url, PHOTO);
    await held.untilWaiting(1);
    const second = postImage(url, PHOTO);
    await until(() => gates.memory.queued === 1, 'the second request to wait for memory');
    assert.equal(gates.memory.inUse, room.bytes);
    held.open();
    assert.deepEqual([(await first).status, (await second).status], [200, 200]);
    assert.equal(gates.memory.inUse, 0);
  });
});

/**
 * Caches PHOTO's mask, then holds a removal of other bytes (PHOTO and one byte
 * after its end: no hit, about the same estimate) at the model's door, so the
 * one inference place is taken.
 */
async function cachedWhileInferenceHeld(server: LocalServer, held: HeldModel): Promise<{ url: string; running: Promise<Response> }> {
  const url = `${server.url}/remove-background?type=mask`;
  held.open();
  assert.equal((await postImage(url, PHOTO)).status, 200);
  held.close();
  const running = postImage(url, Buffer.concat([PHOTO, Buffer.from([0])]));
  await held.untilWaiting(1);
  return { url, running };
}

test('a cached mask takes no place in the inference queue', async () => {
  const held = heldModel();
  held.close();
  await withServer({ maxQueue: 4 }, held, async (server) => {
    const { url, running } = await cachedWhileInferenceHeld(server, held);
    // Answered while the other request holds the one inference place.
    const hit = await postImage(`${url}&crop=true`, PHOTO);
    assert.equal(hit.status, 200);
    assert.match(hit.headers.get('server-timing') ?? '', /cache;desc=hit/);
    assert.doesNotMatch(hit.headers.get('server-timing') ?? '', /queue;|infer;/);
    assert.equal(held.waiting, 1);
    held.open();
    assert.equal((await running).status, 200);
  });
});

test('a cached mask still waits for memory like any removal', async () => {
  const held = heldModel();
  held.close();
  await withServer((await roomForOne()).settings, held, async (server, gates) => {
    const { url, running } = await cachedWhileInferenceHeld(server, held);
    const hit = postImage(`${url}&crop=true`, PHOTO);
    await until(() => gates.memory.queued === 1, 'the hit to wait for memory');
    held.open();
    const [first, second] = await Promise.all([running, hit]);
    assert.deepEqual([first.status, second.status], [200, 200]);
    assert.match(second.headers.get('server-timing') ?? '', /cache;desc=hit/);
  });
});

/** A plain 4800x4800 JPEG: 23 MP from a header, tiny on the wire; alone it fits a 2 GiB instance's 436 MiB (336). */
async function hugeJpeg(): Promise<Buffer> {
  return sharp({ create: { width: 4800, height: 4800, channels: 3, background: { r: 40, g: 90, b: 160 } } })
    .jpeg({ quality: 50 })
    .toBuffer();
}

test('on a 2 GiB instance a 23 MP crop with a 50% margin can never fit: 413 naming crop_margin, before any decoding', async () => {
  const held = heldModel();
  await withServer(loadConfig({ MEMORY_LIMIT_MB: '2048' }), held, async (server) => {
    const response = await postImage(`${server.url}/remove-background?crop=true&crop_margin=50%25`, await hugeJpeg());
    const error = await errorOf(response);
    assert.deepEqual([error.status, error.code], [413, 'image_too_large']);
    assert.match(error.message, /MiB of memory/);
    assert.match(error.message, /because of crop_margin: lower crop_margin/);
    assert.match(error.message, /2048 MiB from MEMORY_LIMIT_MB, less the model, 32 MiB of mask cache \(MASK_CACHE_MB\) and a margin/);
    assert.equal(held.ran, 0);
    assert.equal(server.loadCount, 0);
  }, false);
});

test('a background image that makes it too large is named', async () => {
  await withServer(loadConfig({ MEMORY_LIMIT_MB: '2048' }), null, async (server) => {
    const big = await hugeJpeg();
    const error = await errorOf(await postForm(`${server.url}/remove-background`, { image_file: big, bg_image_file: big }));
    assert.deepEqual([error.status, error.code], [413, 'image_too_large']);
    assert.match(error.message, /because of bg_image/);
  });
});

test('MAX_OUTPUT_PIXELS caps the canvas: a crop margin that grows past it is 413, an image over it without crop is 413 at once', async () => {
  const pixels = 480 * 360;
  await withServer({ maxOutputPixels: pixels }, null, async (server) => {
    const grown = await errorOf(await postImage(`${server.url}/remove-background?crop=true&crop_margin=500px`, PHOTO));
    assert.deepEqual([grown.status, grown.code], [413, 'image_too_large']);
    assert.match(grown.message, /crop_margin/);
    assert.equal((await postImage(`${server.url}/remove-background?type=mask`, PHOTO)).status, 200);
  });
  await withServer({ maxOutputPixels: pixels - 1 }, null, async (server) => {
    const error = await errorOf(await postImage(`${server.url}/remove-background`, PHOTO));
    assert.deepEqual([error.status, error.code], [413, 'image_too_large']);
    assert.match(error.message, /use size/);
    assert.equal(server.loadCount, 0);
    assert.equal((await postImage(`${server.url}/remove-background?size=0.1MP`, PHOTO)).status, 200);
  });
});

test('a flood of warmups whose clients leave costs one inference at most, and the next upload is served', async () => {
  const held = heldModel();
  held.close();
  await withServer({}, held, async (server, gates) => {
    const url = `${server.url}/remove-background`;
    const leaving = Array.from({ length: 300 }, async () => {
      const controller = new AbortController();
      const answer = fetch(url, { signal: controller.signal }).catch(() => null);
      // Each client leaves once the server has its request, whatever the machine's speed.
      await until(() => gates.requests.active > 0 || held.waiting > 0 || server.loadCount > 0, 'the warmup to start');
      controller.abort();
      return answer;
    });
    await Promise.all(leaving);
    held.open();
    await until(() => gates.requests.active === 0, 'the flood to drain');
    assert.ok(held.ran <= 1, `${held.ran} inferences for 300 abandoned warmups`);
    assert.equal(gates.memory.inUse, 0);
    assert.equal((await postImage(`${url}?type=mask`, PHOTO)).status, 200);
  }, false);
});

test('concurrent warmups share one inference; after an inference a warmup answers alreadyWarm at once', async () => {
  const held = heldModel();
  held.close();
  await withServer({}, held, async (server) => {
    const pings = Array.from({ length: 10 }, (_, index) => fetch(index % 2 === 0 ? `${server.url}/warmup` : `${server.url}/remove-background`));
    await held.untilWaiting(1);
    held.open();
    const bodies = await Promise.all(pings.map(async (ping) => (await ping).json() as Promise<{ status: string; alreadyWarm: boolean }>));
    assert.ok(bodies.every((body) => body.status === 'warm'));
    assert.equal(held.ran, 1);
    const again = (await (await fetch(`${server.url}/warmup`)).json()) as { alreadyWarm: boolean; inferMs: number };
    assert.deepEqual([again.alreadyWarm, again.inferMs], [true, 0]);
    assert.equal(held.ran, 1);
  }, false);
});

/** Accepts connections and never answers, until closed. */
async function tarpit(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/photo.jpg`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

test('image URLs that never answer hold fetch slots only: more get 503 at once, and an upload beside them gets 200', async () => {
  const pit = await tarpit();
  try {
    await withServer({ allowLoopbackUrlsForTests: true, maxConcurrentFetches: 4, urlFetchTimeoutMs: 60_000 }, null, async (server, gates) => {
      const controllers = Array.from({ length: 4 }, () => new AbortController());
      const stuck = controllers.map((controller) =>
        fetch(`${server.url}/remove-background`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ image_url: pit.url }),
          signal: controller.signal,
        }).catch(() => null),
      );
      await until(() => gates.fetches.active === 4, 'four fetches in flight');
      for (let extra = 0; extra < 2; extra += 1) {
        const error = await errorOf(await fetch(`${server.url}/remove-background?image_url=${encodeURIComponent(pit.url)}`, { method: 'POST' }));
        assert.deepEqual([error.status, error.code, error.retryAfter], [503, 'overloaded', '5']);
        assert.match(error.message, /image URLs/);
      }
      const upload = await postImage(`${server.url}/remove-background?type=mask`, PHOTO);
      assert.equal(upload.status, 200);
      assert.equal(gates.fetches.active, 4);
      for (const controller of controllers) controller.abort();
      await Promise.all(stuck);
      await until(() => gates.fetches.active === 0, 'the fetches to stop once their clients left');
    });
  } finally {
    await pit.close();
  }
});
