/**
 * A local stand-in for the Cloud Storage JSON API, implementing exactly the
 * calls functions/storage/objects.ts makes through @google-cloud/storage
 * (pointed at it with `apiEndpoint`): an object's metadata, its bytes (at a
 * generation), and a multipart upload under `ifGenerationMatch`, which
 * answers 412 as Cloud Storage does. DELETE is there because the library
 * deletes an upload whose hashes do not match; it never should here.
 *
 * Tests and the overhead benchmark steer it: faults for the next requests,
 * uploads held until several have arrived, and a log of what was asked.
 */
import { CRC32C } from '@google-cloud/storage';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { listen, type RunningServer } from './http';

export interface FakeObject {
  bucket: string;
  name: string;
  generation: string;
  contentType: string;
  body: Buffer;
  metadata: Record<string, string>;
  timeCreated: string;
}

/** One request as the server saw it, and its answer. */
export interface FakeRequest {
  method: string;
  kind: 'metadata' | 'media' | 'upload' | 'delete' | 'other';
  bucket: string;
  name: string;
  /** For uploads: the precondition sent. */
  ifGenerationMatch?: string;
  status: number;
}

export interface Fault {
  kind: FakeRequest['kind'];
  status: number;
  /** How many requests of that kind get it, from the next one on. */
  count: number;
}

export interface FakeStorage extends RunningServer {
  /** Adds an object as an upload through the API would, and returns it (its generation is new). */
  put(bucket: string, name: string, body: Buffer, options?: { contentType?: string; metadata?: Record<string, string> }): FakeObject;
  get(bucket: string, name: string): FakeObject | undefined;
  /** Every object, for a test that checks nothing else was written. */
  objects(): FakeObject[];
  readonly requests: readonly FakeRequest[];
  /** The next `count` requests of `kind` are answered `status` with Cloud Storage's error body. */
  fail(fault: Fault): void;
  /** Uploads wait until `count` have arrived, then go through one at a time in the order they came. */
  holdUploads(count: number): void;
}

function hashes(body: Buffer): { md5Hash: string; crc32c: string } {
  const crc = new CRC32C();
  crc.update(body);
  return { md5Hash: createHash('md5').update(body).digest('base64'), crc32c: crc.toString() };
}

function resource(object: FakeObject): Record<string, unknown> {
  return {
    kind: 'storage#object',
    id: `${object.bucket}/${object.name}/${object.generation}`,
    bucket: object.bucket,
    name: object.name,
    // The JSON API writes int64 fields as strings.
    generation: object.generation,
    metageneration: '1',
    contentType: object.contentType,
    size: String(object.body.length),
    timeCreated: object.timeCreated,
    updated: object.timeCreated,
    metadata: { ...object.metadata },
    ...hashes(object.body),
  };
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
  response.end(JSON.stringify(body));
}

function sendError(response: ServerResponse, status: number, message: string): void {
  sendJson(response, status, { error: { code: status, message, errors: [{ message, domain: 'global', reason: status === 412 ? 'conditionNotMet' : 'backendError' }] } });
}

/** The two parts of a multipart/related upload: the object's JSON resource, then its bytes. */
function multipartParts(body: Buffer, contentType: string): { metadata: Record<string, unknown>; media: Buffer; mediaType: string } {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1];
  if (!boundary) throw new Error('no multipart boundary');
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: { headers: string; content: Buffer }[] = [];
  let start = body.indexOf(delimiter);
  while (start !== -1) {
    const next = body.indexOf(delimiter, start + delimiter.length);
    if (next === -1) break;
    const part = body.subarray(start + delimiter.length + 2, next - 2);
    const split = part.indexOf('\r\n\r\n');
    parts.push({ headers: part.subarray(0, split).toString('latin1'), content: part.subarray(split + 4) });
    start = next;
  }
  const [json, media] = parts;
  if (!json || !media) throw new Error('a multipart upload has two parts');
  const mediaType = /content-type:\s*([^\r\n]+)/i.exec(media.headers)?.[1] ?? 'application/octet-stream';
  return { metadata: JSON.parse(json.content.toString('utf8')) as Record<string, unknown>, media: media.content, mediaType };
}

function readBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

/** What a URL of the JSON API asks for. */
function route(method: string, url: URL): Omit<FakeRequest, 'status' | 'method'> {
  const upload = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
  if (upload && method === 'POST') {
    const ifGenerationMatch = url.searchParams.get('ifGenerationMatch') ?? undefined;
    return { kind: 'upload', bucket: decodeURIComponent(upload[1]!), name: url.searchParams.get('name') ?? '', ...(ifGenerationMatch === undefined ? {} : { ifGenerationMatch }) };
  }
  const object = /^\/storage\/v1\/b\/([^/]+)\/o\/([^/]+)$/.exec(url.pathname);
  if (object) {
    const names = { bucket: decodeURIComponent(object[1]!), name: decodeURIComponent(object[2]!) };
    if (method === 'DELETE') return { kind: 'delete', ...names };
    if (method === 'GET') return { kind: url.searchParams.get('alt') === 'media' ? 'media' : 'metadata', ...names };
  }
  return { kind: 'other', bucket: '', name: '' };
}

export async function startFakeStorage(): Promise<FakeStorage> {
  const store = new Map<string, FakeObject>();
  const requests: FakeRequest[] = [];
  const faults: Fault[] = [];
  // Generations are microsecond timestamps in Cloud Storage: large, increasing, past 2^53 in a few centuries.
  let nextGeneration = 1_764_000_000_000_000n;
  let held: { count: number; waiting: (() => void)[] } | undefined;
  let uploads: Promise<void> = Promise.resolve();
  const key = (bucket: string, name: string): string => `${bucket}\n${name}`;

  const put: FakeStorage['put'] = (bucket, name, body, options = {}) => {
    nextGeneration += 1n;
    const object: FakeObject = {
      bucket,
      name,
      generation: String(nextGeneration),
      contentType: options.contentType ?? 'application/octet-stream',
      body,
      metadata: { ...options.metadata },
      timeCreated: new Date().toISOString(),
    };
    store.set(key(bucket, name), object);
    return object;
  };

  /** Waits for its turn: all uploads through one queue, after the hold (if any) has filled. */
  const turn = async (): Promise<void> => {
    if (held) {
      const hold = held;
      await new Promise<void>((resolve) => {
        hold.waiting.push(resolve);
        if (hold.waiting.length >= hold.count) {
          held = undefined;
          for (const release of hold.waiting) release();
        }
      });
    }
  };

  async function answer(request: IncomingMessage, response: ServerResponse, asked: Omit<FakeRequest, 'status' | 'method'>, url: URL): Promise<number> {
    const fault = faults.find((candidate) => candidate.kind === asked.kind && candidate.count > 0);
    if (fault) {
      fault.count -= 1;
      sendError(response, fault.status, 'Injected fault.');
      return fault.status;
    }
    const found = store.get(key(asked.bucket, asked.name));
    switch (asked.kind) {
      case 'metadata':
      case 'media': {
        const generation = url.searchParams.get('generation');
        if (!found || (generation !== null && generation !== found.generation)) {
          sendError(response, 404, 'No such object.');
          return 404;
        }
        if (asked.kind === 'metadata') {
          sendJson(response, 200, resource(found));
          return 200;
        }
        const { md5Hash, crc32c } = hashes(found.body);
        response.writeHead(200, { 'content-type': found.contentType, 'content-length': found.body.length, 'x-goog-hash': `crc32c=${crc32c},md5=${md5Hash}`, 'x-goog-generation': found.generation });
        response.end(found.body);
        return 200;
      }
      case 'delete':
        if (!found) {
          sendError(response, 404, 'No such object.');
          return 404;
        }
        store.delete(key(asked.bucket, asked.name));
        response.writeHead(204).end();
        return 204;
      case 'upload': {
        const body = await readBody(request);
        await turn();
        // One at a time, so that a precondition is checked and the object stored with nothing in between.
        const done = uploads.then(() => {
          const current = store.get(key(asked.bucket, asked.name));
          const expected = asked.ifGenerationMatch;
          if (expected !== undefined && (expected === '0' ? current !== undefined : current?.generation !== expected)) {
            sendError(response, 412, 'At least one of the pre-conditions you specified did not hold.');
            return 412;
          }
          const { metadata, media, mediaType } = multipartParts(body, request.headers['content-type'] ?? '');
          const custom = (metadata.metadata ?? {}) as Record<string, string>;
          const stored = put(asked.bucket, asked.name, media, { contentType: typeof metadata.contentType === 'string' ? metadata.contentType : mediaType, metadata: custom });
          sendJson(response, 200, resource(stored));
          return 200;
        });
        uploads = done.then(() => undefined);
        return done;
      }
      case 'other':
        sendError(response, 404, `Not implemented by the fake: ${request.method} ${url.pathname}`);
        return 404;
    }
  }

  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://storage.invalid');
    const asked = route(request.method ?? 'GET', url);
    answer(request, response, asked, url).then(
      (status) => requests.push({ method: request.method ?? 'GET', ...asked, status }),
      (error: unknown) => {
        requests.push({ method: request.method ?? 'GET', ...asked, status: 500 });
        sendError(response, 500, String(error));
      },
    );
  });
  const running = await listen(server);
  return {
    ...running,
    put,
    get: (bucket, name) => store.get(key(bucket, name)),
    objects: () => [...store.values()],
    requests,
    fail: (fault) => faults.push({ ...fault }),
    holdUploads: (count) => {
      held = { count, waiting: [] };
    },
  };
}
