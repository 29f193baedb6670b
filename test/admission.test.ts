import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadConfig } from '../functions/config';
import { Gate } from '../functions/model/gate';
import { fixture } from './support/images';
import { type ErrorBody, postImage } from './support/http';
import { startLocalServer } from './support/servers';

const tick = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('unit: the gate runs up to capacity, queues up to its limit, refuses the rest', async () => {
  const gate = new Gate(1, 1);
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
  assert.equal(gate.active, 0);
});

test('unit: a waiting task whose signal aborts leaves the queue without running', async () => {
  const gate = new Gate(1, 5);
  let ran = false;
  const blocker = gate.run(() => tick(50));
  const controller = new AbortController();
  const waiting = gate.run(async () => {
    ran = true;
    return Promise.resolve();
  }, controller.signal);
  assert.equal(gate.queued, 1);
  controller.abort(new Error('client left'));
  await assert.rejects(waiting, /client left/);
  assert.equal(gate.queued, 0);
  await blocker;
  assert.equal(ran, false);
  assert.equal(gate.active, 0);
});

type LocalServer = Awaited<ReturnType<typeof startLocalServer>>;
let server: LocalServer;
let hurried: LocalServer;
let url: string;
let hurriedUrl: string;

before(async () => {
  const config = { ...loadConfig({}), maxConcurrentInferences: 1, maxQueue: 1 };
  server = await startLocalServer({ ...config, requestTimeoutMs: 30_000 });
  // One 1024² inference takes longer than this deadline here.
  hurried = await startLocalServer({ ...config, requestTimeoutMs: 1500 });
  url = `${server.url}/remove-background?type=mask`;
  hurriedUrl = `${hurried.url}/remove-background?type=mask`;
  for (const running of [server, hurried]) assert.equal((await fetch(`${running.url}/warmup`)).status, 200);
});
after(async () => {
  await Promise.all([server.close(), hurried.close()]);
});

test('beyond one running and one waiting, requests get 503 with Retry-After at once', async () => {
  const started = performance.now();
  const pending = Array.from({ length: 5 }, () =>
    postImage(url, fixture('car-1.jpg')).then(async (response) => ({
      status: response.status,
      retryAfter: response.headers.get('retry-after'),
      at: performance.now() - started,
      body: response.status === 200 ? null : ((await response.json()) as ErrorBody),
    })),
  );
  const results = await Promise.all(pending);
  const refused = results.filter((result) => result.status === 503);
  assert.equal(results.filter((result) => result.status === 200).length, 2, JSON.stringify(results));
  assert.equal(refused.length, 3);
  for (const result of refused) {
    assert.equal(result.retryAfter, '5');
    assert.equal(result.body?.error.code, 'overloaded');
    assert.ok(result.at < 1000, `refused after ${result.at} ms`);
  }
});

test('a request past REQUEST_TIMEOUT_MS gets 504, and a queued one that timed out never runs', async () => {
  const before = hurried.detourage.holder.inferenceCount;
  const image = fixture('car-1.jpg');
  const [running, queued] = await Promise.all([postImage(hurriedUrl, image), postImage(hurriedUrl, image)]);
  assert.equal(running.status, 504);
  assert.equal(((await running.json()) as ErrorBody).error.code, 'timeout');
  assert.equal(queued.status, 504);
  // Let the inference that was already running finish; nothing else may start.
  for (let waited = 0; hurried.detourage.admission.active > 0 && waited < 20_000; waited += 100) await tick(100);
  await tick(200);
  assert.equal(hurried.detourage.holder.inferenceCount - before, 1);
  assert.equal(hurried.detourage.admission.active, 0);
  // The instance still serves: a warmup (no deadline) succeeds.
  assert.equal((await fetch(`${hurried.url}/warmup`)).status, 200);
});

test('a queued request whose client has gone is dropped before inference', async () => {
  const before = server.detourage.holder.inferenceCount;
  const first = postImage(url, fixture('car-1.jpg'));
  await tick(150);
  const controller = new AbortController();
  const abandoned = postImage(url, fixture('car-1.jpg'), 'image/jpeg', { signal: controller.signal });
  await tick(150);
  controller.abort();
  await assert.rejects(abandoned);
  assert.equal((await first).status, 200);
  await tick(200);
  assert.equal(server.detourage.holder.inferenceCount - before, 1);
  assert.equal(server.detourage.admission.active, 0);
});
