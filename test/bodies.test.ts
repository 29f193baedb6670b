/**
 * Form and JSON bodies are counted before they are parsed, so a body built to
 * make the parser allocate is refused for about its own size in memory.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadConfig } from '../functions/config';
import { ApiError } from '../functions/errors';
import { Logger } from '../functions/log';
import { checkFormFieldCount, scanJsonObject } from '../functions/request/fieldScan';
import type { ErrorBody } from '../tools/lib/http';
import { type RunningServer } from '../tools/lib/http';
import { startLocalServer } from './support/servers';

let service: RunningServer;

before(async () => {
  const quiet = new Logger({ level: 'error', pretty: false, write: () => undefined });
  service = await startLocalServer(loadConfig({ ...process.env, PORT: '0' }), undefined, quiet);
});
after(() => service.close());

const MB = 1024 * 1024;
/** Under the upload cap's room for a base64 field (28 MB at the default 20 MiB), so only the parser can refuse them. */
const BODY_BYTES = 26 * MB;

/**
 * Built before any request: building them takes seconds of one synchronous
 * loop, after which both the server's keep-alive timer and the client's
 * next request fire at once, and the request would meet a closed socket.
 */
function manyMembers(): Buffer {
  const members: string[] = [];
  for (let index = 0, length = 2; length < BODY_BYTES; index += 1) {
    const member = `"m${index}":0`;
    members.push(member);
    length += member.length + 1;
  }
  return Buffer.from(`{${members.join(',')}}`);
}
const MANY_MEMBERS = manyMembers();
const HUGE_ARRAY = Buffer.from(`{"image_url":[${'0,'.repeat(BODY_BYTES / 2 - 16)}0]}`);

function refusedWith(code: string, message: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof ApiError, String(error));
    assert.equal(error.code, code);
    assert.match(error.message, message);
    return true;
  };
}

test('the form scan refuses past 50 fields, and lets 50 through', () => {
  assert.throws(() => checkFormFieldCount(Buffer.from('a&'.repeat(BODY_BYTES / 2)), 50), refusedWith('bad_request', /form body has too many fields: at most 50/));
  checkFormFieldCount(Buffer.from(Array.from({ length: 50 }, (_, index) => `f${index}=1`).join('&')), 50);
  assert.throws(() => checkFormFieldCount(Buffer.from(Array.from({ length: 51 }, () => 'f=1').join('&')), 50));
});

test('the JSON scan: one flat object of at most 50 members, strings and escapes skipped whole', () => {
  const names = (text: string): string[] => scanJsonObject(Buffer.from(text), 50).map(([start, end]) => text.slice(start, end));
  assert.deepEqual(names(' {"a": 1, "b\\"{[,": "x\\\\", "c": "[{,\\"}]"} '), ['"a"', '"b\\"{[,"', '"c"']);
  assert.deepEqual(names(''), []);
  assert.throws(() => names(`[${'0,'.repeat(BODY_BYTES / 2)}0]`), refusedWith('bad_request', /must be an object/));
  assert.throws(() => names('"text"'), refusedWith('bad_request', /must be an object/));
  assert.throws(() => names('{"size": "full", "crop": {"nested": true}}'), refusedWith('invalid_parameter', /member "crop" must be a string/));
  assert.throws(() => names('{"roi": [1, 2]}'), refusedWith('invalid_parameter', /member "roi"/));
  const many = `{${Array.from({ length: 51 }, (_, index) => `"m${index}":0`).join(',')}}`;
  assert.throws(() => names(many), refusedWith('bad_request', /JSON body has too many fields: at most 50/));
  assert.equal(names(many.replace(',"m50":0', '')).length, 50);
});

/** The highest RSS of this process (client and server both) while `work` runs, over what it was before. */
async function rssGrowth(work: () => Promise<void>): Promise<number> {
  const before = process.memoryUsage.rss();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 1);
  try {
    await work();
  } finally {
    clearInterval(sampler);
  }
  return Math.max(peak, process.memoryUsage.rss()) - before;
}

async function expectRefusedCheaply(body: Buffer, contentType: string, code: string, message: RegExp): Promise<void> {
  const growth = await rssGrowth(async () => {
    const response = await fetch(`${service.url}/remove-background`, { method: 'POST', body, headers: { 'content-type': contentType } });
    const text = await response.text();
    assert.equal(response.status, 400, text);
    const { error } = JSON.parse(text) as ErrorBody;
    assert.equal(error.code, code);
    assert.match(error.message, message);
  });
  // The body is read once into memory by the server (and copied by the client); a parse of it would cost far more.
  assert.ok(growth < 150 * MB, `RSS grew by ${(growth / MB).toFixed(0)} MB for a ${(body.length / MB).toFixed(0)} MB body`);
}

test('a 26 MB form body of 13 million empty fields is refused without building them', async () => {
  await expectRefusedCheaply(Buffer.from('a&'.repeat(BODY_BYTES / 2)), 'application/x-www-form-urlencoded', 'bad_request', /too many fields/);
});

test('a 26 MB JSON object of millions of members, or one huge array, is refused without parsing it', async () => {
  await expectRefusedCheaply(MANY_MEMBERS, 'application/json', 'bad_request', /too many fields/);
  await expectRefusedCheaply(HUGE_ARRAY, 'application/json', 'invalid_parameter', /image_url/);
});
