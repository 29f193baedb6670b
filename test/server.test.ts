import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { PROJECT_ROOT } from '../functions/paths';
import { fixture } from '../tools/lib/images';
import { bodyBytes, type ErrorBody, postForm } from '../tools/lib/http';

let child: ChildProcess;
let baseUrl: string;

/** `npm start` without the setup step: the compiled server as its own process. */
before(async () => {
  child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'functions', 'server.js')], {
    env: { ...process.env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const match = /listening on (http:\/\/\S+)/.exec(line.toString());
  assert.ok(match, line.toString());
  baseUrl = match[1]!.replace('localhost', '127.0.0.1');
});
after(() => {
  if (child.exitCode === null) child.kill('SIGKILL');
});

test('/ and /health answer health', async () => {
  for (const route of ['/', '/health']) {
    const body = (await (await fetch(`${baseUrl}${route}`)).json()) as { status: string };
    assert.equal(body.status, 'ok');
  }
});

test('/warmup and /remove-background serve the same model', async () => {
  const warm = (await (await fetch(`${baseUrl}/warmup`)).json()) as { status: string; alreadyWarm: boolean };
  assert.deepEqual([warm.status, warm.alreadyWarm], ['warm', false]);
  const response = await postForm(`${baseUrl}/remove-background`, { image: fixture('car-1.jpg') });
  assert.equal(response.status, 200);
  assert.equal((await sharp(await bodyBytes(response)).metadata()).channels, 4);
  const again = (await (await fetch(`${baseUrl}/remove-background`)).json()) as { alreadyWarm: boolean };
  assert.equal(again.alreadyWarm, true);
});

test('an unknown path is a JSON 404', async () => {
  const response = await fetch(`${baseUrl}/nope`);
  assert.equal(response.status, 404);
  assert.equal(((await response.json()) as ErrorBody).error.code, 'not_found');
});

test('SIGTERM finishes the request in flight, then exits 0', async () => {
  const inFlight = postForm(`${baseUrl}/remove-background?type=mask`, { image: fixture('car-1.jpg') });
  await new Promise((resolve) => setTimeout(resolve, 100));
  child.kill('SIGTERM');
  const response = await inFlight;
  assert.equal(response.status, 200);
  const [code] = (await once(child, 'exit')) as [number];
  assert.equal(code, 0);
});
