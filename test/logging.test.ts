import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { loadConfig } from '../functions/config';
import { Logger, traceField } from '../functions/log';
import { redactedUrl } from '../functions/request/redact';
import { fixture } from '../tools/lib/images';
import { postImage, type RunningServer } from '../tools/lib/http';
import { startLocalServer } from './support/servers';

const lines: Record<string, unknown>[] = [];
let server: RunningServer;

before(async () => {
  const logger = new Logger({ level: 'info', pretty: false, write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  server = await startLocalServer({ ...loadConfig({}), project: 'demo-project' }, undefined, logger);
});
after(() => server.close());

const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 50));

test('one structured line per request, in Cloud Logging fields, with trace, request id, model and stage timings', async () => {
  const image = fixture('car-1.jpg');
  const response = await postImage(`${server.url}/remove-background?type=mask`, image, 'image/jpeg', {
    headers: { 'content-type': 'image/jpeg', 'x-cloud-trace-context': '0123456789abcdef0123456789abcdef/1;o=1', 'x-request-id': 'req-42' },
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('x-request-id'), 'req-42');
  await settle();
  const load = lines.find((line) => line.message === 'model isnet-fp32 loaded');
  assert.ok(load && typeof load.loadMs === 'number' && load.severity === 'INFO');
  const request = lines.find((line) => line.requestId === 'req-42')!;
  assert.equal(request.severity, 'INFO');
  assert.equal(request.message, 'POST /remove-background 200');
  assert.equal(request['logging.googleapis.com/trace'], 'projects/demo-project/traces/0123456789abcdef0123456789abcdef');
  assert.equal(request.model, 'isnet-fp32');
  const http = request.httpRequest as Record<string, unknown>;
  assert.deepEqual([http.requestMethod, http.requestUrl, http.status, http.requestSize], ['POST', '/remove-background?type=mask', 200, String(image.length)]);
  assert.match(String(http.latency), /^\d+\.\d{3}s$/);
  assert.ok(Number(http.responseSize) > 0);
  const timings = request.timingsMs as Record<string, number>;
  for (const stage of ['decode', 'preprocess', 'infer', 'postprocess', 'encode']) assert.equal(typeof timings[stage], 'number');
  assert.ok(!JSON.stringify(lines).includes(image.subarray(100, 140).toString('base64')), 'no image bytes in logs');
});

test('errors are logged with their code and severity; a generated request id is echoed', async () => {
  const response = await postImage(`${server.url}/remove-background`, Buffer.from('not an image'), 'image/png', {
    headers: { 'content-type': 'image/png', traceparent: '00-fedcba9876543210fedcba9876543210-0123456789abcdef-01' },
  });
  assert.equal(response.status, 415);
  const requestId = response.headers.get('x-request-id');
  assert.match(requestId ?? '', /^[0-9a-f-]{36}$/);
  await settle();
  const line = lines.find((entry) => entry.requestId === requestId)!;
  assert.equal(line.severity, 'WARNING');
  assert.deepEqual(line.error, { code: 'unsupported_media_type' });
  assert.equal(line['logging.googleapis.com/trace'], 'projects/demo-project/traces/fedcba9876543210fedcba9876543210');
});

test('LOG_LEVEL filters, and a terminal gets readable lines', () => {
  const written: string[] = [];
  const quiet = new Logger({ level: 'warning', pretty: false, write: (line) => written.push(line) });
  quiet.info('hidden');
  quiet.warning('shown', { a: 1 });
  assert.equal(written.length, 1);
  assert.equal((JSON.parse(written[0]!) as { severity: string }).severity, 'WARNING');
  const pretty = new Logger({ level: 'info', pretty: true, write: (line) => written.push(line) });
  pretty.info('GET / 200', { requestId: 'x' });
  assert.match(written[1]!, /INFO +GET \/ 200 {2}requestId=x$/);
  assert.throws(() => loadConfig({ LOG_LEVEL: 'loud' }), /LOG_LEVEL must be one of debug, info, warning, error/);
  assert.deepEqual(traceField({ traceparent: '00-fedcba9876543210fedcba9876543210-0123456789abcdef-01' }, undefined), {});
});

test('redactedUrl keeps the path, every name, and option values only', () => {
  assert.equal(redactedUrl('/remove-background'), '/remove-background');
  assert.equal(
    redactedUrl(`/r?size=preview&format=png&crop_margin=${encodeURIComponent('10px 20px')}&bg_color=%23ff000080&model=isnet-general-use`),
    '/r?size=preview&format=png&crop_margin=10px%2020px&bg_color=%23ff000080&model=isnet-general-use',
  );
  assert.equal(
    redactedUrl('/r?image_url=https%3A%2F%2Fx.test%2Fa.jpg&bg_image_url=x&image_file_b64=aGVsbG8%3D&api_key=k&formt=png'),
    '/r?image_url=[redacted]&bg_image_url=[redacted]&image_file_b64=[redacted]&api_key=[redacted]&formt=[redacted]',
  );
  // A token in an option's place, or as a name, is not logged either.
  assert.equal(redactedUrl('/r?model=sk_live_4eC39HqLyjWDarjtT1zdp7dc&sk_live_4eC39HqLyjWDarjtT1zdp7dc=1'), '/r?model=[redacted]&[redacted]=[redacted]');
  assert.equal(redactedUrl(`/r?roi=${'1'.repeat(65)}`), '/r?roi=[redacted]');
});

test('a signed image URL and a base64 image in the query never reach the log line', async () => {
  const signed = 'https://bucket.storage.test/photo.jpg?X-Goog-Signature=0123abcdef4567SIGNED89&X-Goog-Credential=svc%40proj';
  const base64 = fixture('car-1.jpg').subarray(0, 300).toString('base64');
  const query = `size=preview&image_url=${encodeURIComponent(signed)}&image_file_b64=${encodeURIComponent(base64)}&token=hunter2`;
  const response = await fetch(`${server.url}/remove-background?${query}`, { method: 'POST', headers: { 'x-request-id': 'req-redact' } });
  assert.equal(response.status, 400, 'refused (token is unknown) before any fetch');
  await response.arrayBuffer();
  await settle();
  const line = lines.find((entry) => entry.requestId === 'req-redact')!;
  assert.equal(
    (line.httpRequest as Record<string, unknown>).requestUrl,
    '/remove-background?size=preview&image_url=[redacted]&image_file_b64=[redacted]&token=[redacted]',
  );
  const text = JSON.stringify(line);
  for (const secret of ['SIGNED', 'X-Goog', 'bucket.storage', 'hunter2', base64.slice(0, 40), encodeURIComponent(base64).slice(0, 40)]) {
    assert.ok(!text.includes(secret), `${secret} is not in ${text}`);
  }
});
