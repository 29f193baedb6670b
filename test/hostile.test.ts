import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import '../functions/index';
import { loadConfig } from '../functions/config';
import { type Answer, judgeAnswer, receive } from '../tools/lib/answers';
import { type HostileCase, type HostileGroup, hostileCases, POLYGLOT_TAIL } from '../tools/lib/hostile';
import { fixture } from '../tools/lib/images';
import { listen, postBody, postImage, type RunningServer } from '../tools/lib/http';
import { startFunction, startLocalServer } from './support/servers';

/** Records every request, so a test can prove an SVG reference was never followed. */
const probeHits: string[] = [];
let probe: RunningServer;
let deployed: RunningServer;
let local: RunningServer;
let cases: HostileCase[];

before(async () => {
  probe = await listen(
    http.createServer((request, response) => {
      probeHits.push(`${request.method} ${request.url}`);
      response.end();
    }),
  );
  [deployed, local] = await Promise.all([startFunction('removeBackground'), startLocalServer(loadConfig({}))]);
  cases = await hostileCases({ probeUrl: probe.url });
});
after(async () => {
  await Promise.all([probe.close(), deployed.close(), local.close()]);
});

function send(server: RunningServer, hostile: Pick<HostileCase, 'body' | 'contentType'>): Promise<Response> {
  return postBody(`${server.url}/remove-background`, hostile.body, hostile.contentType);
}

async function assertStillServes(server: RunningServer): Promise<void> {
  const answer = await receive(await postImage(`${server.url}/remove-background`, fixture('car-1.jpg')));
  assert.equal(await judgeAnswer(answer, { image: { width: 480, height: 360 } }), null);
}

/** Sends every case of the groups, checks each answer, then a valid request. */
async function throwGroups(server: RunningServer, groups: readonly HostileGroup[], log: (line: string) => void): Promise<Map<string, Answer>> {
  const answers = new Map<string, Answer>();
  const chosen = cases.filter((hostile) => groups.includes(hostile.group));
  assert.ok(chosen.length > 0);
  for (const hostile of chosen) {
    const started = performance.now();
    const answer = await receive(await send(server, hostile));
    log(`${hostile.name} (${hostile.body.length} B): ${answer.status} in ${(performance.now() - started).toFixed(0)} ms`);
    assert.equal(await judgeAnswer(answer, hostile.expected), null, hostile.name);
    answers.set(hostile.name, answer);
  }
  await assertStillServes(server);
  return answers;
}

test('a decompression bomb is refused from its header', async (t) => {
  await throwGroups(deployed, ['size'], (line) => t.diagnostic(line));
});

test('animated GIF and WebP with thousands of frames: only the first frame is decoded', async (t) => {
  await throwGroups(deployed, ['animation'], (line) => t.diagnostic(line));
});

test('multi-megabyte text chunks, ICC profiles and EXIF are ignored, not refused', async (t) => {
  await throwGroups(deployed, ['metadata'], (line) => t.diagnostic(line));
});

for (const [name, server] of [
  ['functions framework', () => deployed],
  ['local server', () => local],
] as const) {
  test(`${name}: bad multipart, a wrong or missing Content-Type, zero bytes and a 30 MB body get their 4xx`, async (t) => {
    await throwGroups(server(), ['multipart', 'framing'], (line) => t.diagnostic(line));
  });
}

test('functions framework: a body its JSON parser rejects is a 400 before detourage runs (its HTML, not our JSON)', async () => {
  // The framework parses application/json itself and has no hook for our error format.
  const response = await send(deployed, { body: Buffer.from('{"not json'), contentType: 'application/json' });
  assert.equal(response.status, 400);
  await response.arrayBuffer();
  assert.equal((await fetch(`${deployed.url}/remove-background`)).status, 200, 'a warmup GET still answers');
});

test('polyglots are processed as the image they start with, and the tail never comes back', async (t) => {
  const answers = await throwGroups(deployed, ['polyglot'], (line) => t.diagnostic(line));
  const cutout = answers.get('JPEG with a ZIP/HTML tail')!.body;
  assert.equal(cutout.indexOf(POLYGLOT_TAIL.subarray(8)), -1);
  assert.equal(cutout.indexOf(Buffer.from('alert')), -1);
});

test('SVG is refused with 415 before any renderer sees it: no file read, no request to a local listener', async (t) => {
  await throwGroups(deployed, ['svg'], (line) => t.diagnostic(line));
  // The listener works (so a hit would have been seen), and none came from the server.
  assert.deepEqual(probeHits, []);
  await (await fetch(`${probe.url}/self-check`)).arrayBuffer();
  assert.deepEqual(probeHits, ['GET /self-check']);
});

test('failing requests around one in flight do not affect it', async () => {
  const valid = postImage(`${deployed.url}/remove-background`, fixture('car-1.jpg')).then(receive);
  const abandoned = new AbortController();
  const leaving = postImage(`${deployed.url}/remove-background`, fixture('cloth-1.jpg'), 'image/jpeg', { signal: abandoned.signal }).then(
    () => 'answered',
    () => 'aborted',
  );
  setTimeout(() => abandoned.abort(), 50);
  for (const hostile of cases.filter((candidate) => ['size', 'multipart', 'framing', 'svg'].includes(candidate.group))) {
    await (await send(deployed, hostile)).arrayBuffer();
  }
  assert.equal(await leaving, 'aborted');
  assert.equal(await judgeAnswer(await valid, { image: { width: 480, height: 360 } }), null);
});
