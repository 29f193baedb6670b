/**
 * HTTP as the tests, benchmarks and tools speak it to the service: the
 * requests they send, and a loopback server's start and stop.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ErrorBody {
  error: { code: string; message: string };
}

export function postImage(url: string, image: Buffer, contentType = 'image/jpeg', init: RequestInit = {}): Promise<Response> {
  return fetch(url, { method: 'POST', body: image, headers: { 'content-type': contentType }, ...init });
}

/** Posts `body` as it is; an undefined `contentType` sends no Content-Type header at all. */
export function postBody(url: string, body: Buffer, contentType: string | undefined, init: RequestInit = {}): Promise<Response> {
  // fetch would label a bare Buffer text/plain; a Blob with no type goes without the header.
  if (contentType === undefined) return fetch(url, { method: 'POST', body: new Blob([body]), ...init });
  return fetch(url, { method: 'POST', body, headers: { 'content-type': contentType }, ...init });
}

export function postForm(url: string, parts: Record<string, Buffer | string>): Promise<Response> {
  const form = new FormData();
  for (const [name, value] of Object.entries(parts)) {
    if (typeof value === 'string') form.append(name, value);
    else form.append(name, new Blob([value]), `${name}.bin`);
  }
  return fetch(url, { method: 'POST', body: form });
}

export async function bodyBytes(response: Response): Promise<Buffer> {
  return Buffer.from(await response.arrayBuffer());
}

export interface FormPart {
  name: string;
  /** A file part when set; a plain field otherwise. */
  filename?: string;
  data: Buffer | string;
}

export const TEST_BOUNDARY = 'detourage-test-boundary';

/** A multipart/form-data body built by hand, so tests can damage its framing byte by byte. */
export function multipartBody(parts: readonly FormPart[], boundary = TEST_BOUNDARY): { body: Buffer; contentType: string } {
  const pieces: Buffer[] = [];
  for (const part of parts) {
    const filename = part.filename === undefined ? '' : `; filename="${part.filename}"`;
    const type = part.filename === undefined ? '' : '\r\nContent-Type: application/octet-stream';
    pieces.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"${filename}${type}\r\n\r\n`));
    pieces.push(Buffer.isBuffer(part.data) ? part.data : Buffer.from(part.data), Buffer.from('\r\n'));
  }
  pieces.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(pieces), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** A server listening on loopback; `close` ends open connections too, so it never waits on a keep-alive. */
export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

/** Starts `server` on a free loopback port. */
export function listen(server: Server): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}
