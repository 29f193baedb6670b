import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { LookupAddress } from 'node:dns';
import { createServer, type IncomingHttpHeaders, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { ApiError, type ErrorCode } from '../functions/errors';
import { type AddressRange, classifyAddress } from '../functions/request/addressPolicy';
import { fetchImageUrl, type FetchUrlOptions, MAX_REDIRECTS } from '../functions/request/fetchUrl';

const IMAGE = randomBytes(50_000);
/** A fetch whose deadline is broken would otherwise hang the run instead of failing it. */
const HANG_GUARD = { timeout: 5000 };

const ADDRESS_CASES: [string, AddressRange][] = [
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['223.255.255.255', 'public'],
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'this network'],
  ['10.0.0.1', 'private'],
  ['10.255.255.255', 'private'],
  ['100.63.255.255', 'public'],
  ['100.64.0.1', 'carrier-grade NAT'],
  ['100.127.255.255', 'carrier-grade NAT'],
  ['100.128.0.0', 'public'],
  ['127.0.0.1', 'loopback'],
  ['127.255.255.254', 'loopback'],
  ['169.254.169.254', 'link-local'],
  ['172.15.255.255', 'public'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['172.32.0.0', 'public'],
  ['192.0.0.8', 'reserved'],
  ['192.0.2.1', 'documentation'],
  ['192.88.99.1', 'reserved'],
  ['192.168.1.1', 'private'],
  ['198.17.255.255', 'public'],
  ['198.18.0.1', 'benchmarking'],
  ['198.19.255.255', 'benchmarking'],
  ['198.20.0.0', 'public'],
  ['198.51.100.7', 'documentation'],
  ['203.0.113.9', 'documentation'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['240.0.0.1', 'reserved'],
  ['255.255.255.255', 'broadcast'],

  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['0:0:0:0:0:0:0:1', 'loopback'],
  ['2606:4700:4700::1111', 'public'],
  ['2001:4860:4860::8888', 'public'],
  ['2001:200::1', 'public'],
  ['::ffff:127.0.0.1', 'loopback'],
  ['::ffff:7f00:1', 'loopback'],
  ['::ffff:10.1.2.3', 'private'],
  ['::ffff:169.254.169.254', 'link-local'],
  ['::ffff:0.0.0.0', 'unspecified'],
  ['::ffff:8.8.8.8', 'public'],
  ['::127.0.0.1', 'IPv4-compatible'],
  ['::8.8.8.8', 'IPv4-compatible'],
  ['64:ff9b::8.8.8.8', 'public'],
  ['64:ff9b::7f00:1', 'loopback'],
  ['64:ff9b::a9fe:a9fe', 'link-local'],
  ['64:ff9b::192.168.0.1', 'private'],
  ['64:ff9b:1::1', 'local-use NAT64'],
  ['2002:7f00:1::1', 'loopback'],
  ['2002:a00:1::', 'private'],
  ['2002:a9fe:a9fe::1', 'link-local'],
  ['2002:808:808::1', 'public'],
  ['fc00::1', 'unique-local'],
  ['fd12:3456:789a::1', 'unique-local'],
  ['fe80::1', 'link-local'],
  ['fe80::1%eth0', 'link-local'],
  ['febf:ffff::1', 'link-local'],
  ['fec0::1', 'site-local'],
  ['ff02::1', 'multicast'],
  ['ff0e::101', 'multicast'],
  ['2001:db8::1', 'documentation'],
  ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', 'documentation'],
  ['3fff::1', 'documentation'],
  ['2001:0:4136:e378::1', 'reserved'],
  ['100::1', 'reserved'],
  ['::ffff:0:7f00:1', 'reserved'],
  ['1::1', 'reserved'],
  ['4000::1', 'reserved'],

  ['localhost', 'not an IP address'],
  ['', 'not an IP address'],
  ['1.2.3', 'not an IP address'],
  ['01.2.3.4', 'not an IP address'],
  ['[::1]', 'not an IP address'],
];

test('classifyAddress names the range of IPv4 and IPv6 addresses', () => {
  const actual = Object.fromEntries(ADDRESS_CASES.map(([address]) => [address, classifyAddress(address)]));
  assert.deepEqual(actual, Object.fromEntries(ADDRESS_CASES));
});

interface SeenRequest {
  url: string;
  headers: IncomingHttpHeaders;
}

interface TestServer {
  port: number;
  origin: string;
  requests: SeenRequest[];
  /** TCP connections accepted, so refusals can be shown to happen before any connect. */
  connections(): number;
}

/** A loopback server that records what reaches it and is torn down, open sockets included, after the test. */
async function serve(t: TestContext, handler: RequestListener, host = '127.0.0.1', port = 0): Promise<TestServer> {
  const server = createServer(handler);
  const requests: SeenRequest[] = [];
  let connections = 0;
  server.on('connection', () => (connections += 1));
  server.on('request', (request) => requests.push({ url: request.url ?? '', headers: request.headers }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const actualPort = (server.address() as AddressInfo).port;
  return { port: actualPort, origin: `http://${host}:${actualPort}`, requests, connections: () => connections };
}

const serveImage: RequestListener = (_request, response) => {
  response.writeHead(200, { 'content-type': 'image/png' }).end(IMAGE);
};

function options(overrides: Partial<FetchUrlOptions> = {}): FetchUrlOptions {
  return { parameterName: 'image_url', maxBytes: 1024 * 1024, timeoutMs: 2000, allowLoopbackForTests: true, ...overrides };
}

async function assertFails(work: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
  await assert.rejects(work, (error: unknown) => {
    assert.ok(error instanceof ApiError, `expected an ApiError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.match(error.message, message);
    return true;
  });
}

test('returns the exact bytes and sends only the User-Agent and Accept it should', async (t) => {
  const server = await serve(t, serveImage);
  const body = await fetchImageUrl(`${server.origin}/cat.png?size=large`, options());
  assert.deepEqual(body, IMAGE);
  assert.equal(server.requests.length, 1);
  const seen = server.requests[0]!;
  assert.equal(seen.url, '/cat.png?size=large');
  assert.equal(seen.headers['user-agent'], 'detourage');
  assert.equal(seen.headers.accept, 'image/*');
  assert.equal(seen.headers.cookie, undefined);
  assert.equal(seen.headers.authorization, undefined);
});

test('refuses schemes other than http and https, credentials and non-URLs', async (t) => {
  const server = await serve(t, serveImage);
  const cases: [string, RegExp][] = [
    ['file:///etc/passwd', /scheme file: is not allowed/],
    ['ftp://example.com/cat.png', /scheme ftp: is not allowed/],
    ['data:image/png;base64,iVBORw0KGgo=', /scheme data: is not allowed/],
    ['gopher://example.com/', /scheme gopher: is not allowed/],
    ['javascript:alert(1)', /scheme javascript: is not allowed/],
    [`http://user:secret@127.0.0.1:${server.port}/`, /credentials/],
    [`http://user@127.0.0.1:${server.port}/`, /credentials/],
    ['not a url', /it is not a valid URL\.$/],
    ['', /it is not a valid URL\.$/],
  ];
  for (const [url, reason] of cases) {
    await assertFails(fetchImageUrl(url, options()), 'invalid_parameter', new RegExp(`^image_url refused: .*${reason.source}`));
  }
  assert.equal(server.connections(), 0);
});

test('without the test allowance, every spelling of loopback is refused before connecting', async (t) => {
  const server = await serve(t, serveImage);
  const urls = [
    `http://127.0.0.1:${server.port}/`,
    `http://localhost:${server.port}/`,
    `http://2130706433:${server.port}/`,
    `http://0x7f.1:${server.port}/`,
    `http://0177.0.0.1:${server.port}/`,
    `http://127.1:${server.port}/`,
    `http://[::1]:${server.port}/`,
    `http://[::ffff:127.0.0.1]:${server.port}/`,
  ];
  for (const url of urls) {
    await assertFails(
      fetchImageUrl(url, options({ allowLoopbackForTests: false })),
      'invalid_parameter',
      /^image_url refused: the host is not a public address\.$/,
    );
  }
  assert.equal(server.connections(), 0);
});

test('the URL parser normalises other IPv4 spellings before the check', async (t) => {
  const server = await serve(t, serveImage);
  assert.deepEqual(await fetchImageUrl(`http://0x7f.0.0.1:${server.port}/`, options()), IMAGE);
  assert.deepEqual(await fetchImageUrl(`http://2130706433:${server.port}/`, options()), IMAGE);
  assert.equal(server.requests.length, 2);
});

test('the test allowance lets loopback through and nothing else', async (t) => {
  const server = await serve(t, serveImage);
  const urls = [
    `http://0.0.0.0:${server.port}/`,
    `http://0:${server.port}/`,
    'http://10.0.0.1:9/',
    'http://169.254.169.254:9/latest/meta-data/',
    'http://[fd00::1]:9/',
    'http://[::ffff:192.168.0.1]:9/',
    'http://[64:ff9b::a9fe:a9fe]:9/',
  ];
  for (const url of urls) {
    await assertFails(
      fetchImageUrl(url, options({ timeoutMs: 300 })),
      'invalid_parameter',
      /^image_url refused: the host is not a public address\.$/,
    );
  }
  assert.equal(server.connections(), 0);
});

/** /hops/N redirects N times with a mix of statuses and of relative and absolute Locations, then serves the image. */
function redirectChain(origin: () => string): RequestListener {
  const statuses = [301, 302, 303, 307, 308];
  return (request, response) => {
    const remaining = Number(/^\/hops\/(\d+)$/.exec(request.url ?? '')?.[1] ?? NaN);
    if (remaining === 0) return serveImage(request, response);
    const location = remaining % 2 === 0 ? `${remaining - 1}` : `${origin()}/hops/${remaining - 1}`;
    response.writeHead(statuses[remaining % statuses.length]!, { location }).end();
  };
}

test(`follows a chain of ${MAX_REDIRECTS} redirects and refuses one more`, async (t) => {
  let origin = '';
  const server = await serve(
    t,
    redirectChain(() => origin),
  );
  origin = server.origin;

  assert.deepEqual(await fetchImageUrl(`${origin}/hops/${MAX_REDIRECTS}`, options()), IMAGE);
  assert.deepEqual(
    server.requests.map((request) => request.url),
    ['/hops/5', '/hops/4', '/hops/3', '/hops/2', '/hops/1', '/hops/0'],
  );

  server.requests.length = 0;
  await assertFails(
    fetchImageUrl(`${origin}/hops/${MAX_REDIRECTS + 1}`, options()),
    'invalid_parameter',
    /^image_url refused: too many redirects \(more than 5\) \(after 5 redirects\)\.$/,
  );
  assert.equal(server.requests.length, MAX_REDIRECTS + 1);
});

function redirectTo(location: string, status = 302): RequestListener {
  return (_request, response) => {
    response.writeHead(status, { location }).end();
  };
}

test('a redirect to a refused scheme is refused', async (t) => {
  for (const [location, scheme] of [
    ['file:///etc/passwd', 'file:'],
    ['ftp://127.0.0.1/cat.png', 'ftp:'],
    ['javascript:alert(1)', 'javascript:'],
  ]) {
    const server = await serve(t, redirectTo(location!));
    await assertFails(
      fetchImageUrl(`${server.origin}/`, options()),
      'invalid_parameter',
      new RegExp(`^image_url refused: the scheme ${scheme} is not allowed.* \\(after 1 redirect\\)\\.$`),
    );
  }
});

test('a redirect to a private or metadata address is refused without connecting', async (t) => {
  for (const location of ['http://10.0.0.1:9/', 'http://169.254.169.254:9/computeMetadata/v1/', 'http://[::ffff:a9fe:a9fe]:9/']) {
    const server = await serve(t, redirectTo(location, 307));
    await assertFails(
      // A short budget keeps a regression from hanging on an unroutable address.
      fetchImageUrl(`${server.origin}/`, options({ timeoutMs: 300 })),
      'invalid_parameter',
      /^image_url refused: the host is not a public address \(after 1 redirect\)\.$/,
    );
  }
});

test('a redirect to something that is not a URL is refused without quoting it', async (t) => {
  const server = await serve(t, redirectTo('http://[10.0.0.1/'));
  await assertFails(fetchImageUrl(`${server.origin}/`, options()), 'invalid_parameter', /^image_url refused: it is not a valid URL \(after 1 redirect\)\.$/);
});

test('a redirect without a Location is an error', async (t) => {
  const server = await serve(t, (_request, response) => {
    response.writeHead(302).end();
  });
  await assertFails(fetchImageUrl(`${server.origin}/`, options()), 'invalid_parameter', /HTTP 302 without a Location/);
});

test('a final status outside 2xx is an error naming the status', async (t) => {
  const server = await serve(t, (_request, response) => {
    response.writeHead(404).end('not here');
  });
  await assertFails(
    fetchImageUrl(`${server.origin}/missing.png`, options()),
    'invalid_parameter',
    /^image_url could not be fetched: the server answered HTTP 404\.$/,
  );
});

test('a body of exactly maxBytes is accepted', async (t) => {
  const server = await serve(t, serveImage);
  assert.deepEqual(await fetchImageUrl(`${server.origin}/`, options({ maxBytes: IMAGE.length })), IMAGE);
});

test('a Content-Length over the cap is refused before any body arrives', async (t) => {
  const server = await serve(t, (_request, response) => {
    response.writeHead(200, { 'content-length': '2000' });
    // Headers only: waiting for the body would end in a timeout, not a 413.
    response.flushHeaders();
  });
  await assertFails(
    fetchImageUrl(`${server.origin}/`, options({ maxBytes: 1000, timeoutMs: 5000 })),
    'payload_too_large',
    /^The image_url image is larger than 1000 bytes\.$/,
  );
});

test('a streamed body over the cap is cut off while it streams', async (t) => {
  const chunk = Buffer.alloc(16 * 1024, 7);
  const safetyLimit = 64 * 1024 * 1024;
  let sent = 0;
  let serverSawClose!: () => void;
  const closed = new Promise<boolean>((resolve) => (serverSawClose = () => resolve(true)));
  let finished = false;
  const server = await serve(t, (_request, response) => {
    // No Content-Length: chunked, endless until the client hangs up.
    response.writeHead(200, { 'content-type': 'image/png' });
    response.on('close', () => {
      finished = response.writableFinished;
      serverSawClose();
    });
    const pump = (): void => {
      while (!response.destroyed && sent < safetyLimit) {
        sent += chunk.length;
        if (!response.write(chunk)) return void response.once('drain', pump);
      }
      if (sent >= safetyLimit) response.end();
    };
    pump();
  });
  await assertFails(fetchImageUrl(`${server.origin}/`, options({ maxBytes: 100_000 })), 'payload_too_large', /larger than 100000 bytes/);
  assert.equal(await closed, true);
  assert.equal(finished, false, 'the server finished its endless body, so the client never hung up');
  assert.ok(sent < safetyLimit, `the server wrote ${sent} bytes before the client hung up`);
});

test('a server that never answers times out within the budget', HANG_GUARD, async (t) => {
  const server = await serve(t, () => {
    // Never answers; the server teardown closes the socket.
  });
  const started = performance.now();
  await assertFails(
    fetchImageUrl(`${server.origin}/`, options({ timeoutMs: 300 })),
    'invalid_parameter',
    /^image_url could not be fetched: timed out after 300 ms\.$/,
  );
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 250 && elapsed < 1500, `took ${elapsed} ms`);
  assert.equal(server.requests.length, 1);
});

test('the timeout covers a body that trickles in', HANG_GUARD, async (t) => {
  const server = await serve(t, (_request, response) => {
    response.writeHead(200, { 'content-length': '1000' });
    const drip = setInterval(() => response.write('x'), 50);
    response.on('close', () => clearInterval(drip));
  });
  await assertFails(fetchImageUrl(`${server.origin}/`, options({ timeoutMs: 300 })), 'invalid_parameter', /timed out after 300 ms/);
});

test("the caller's signal stops the fetch with the caller's reason", HANG_GUARD, async (t) => {
  const server = await serve(t, () => {
    // Never answers.
  });
  const caller = new AbortController();
  const reason = new ApiError('timeout', 'The request took too long.');
  setTimeout(() => caller.abort(reason), 100);
  await assert.rejects(fetchImageUrl(`${server.origin}/`, options({ signal: caller.signal, timeoutMs: 5000 })), (error) => error === reason);
});

test('a connection reset mid-body is an error with the reason', async (t) => {
  const server = await serve(t, (_request, response) => {
    response.writeHead(200, { 'content-length': '1000' });
    response.write(Buffer.alloc(100), () => response.destroy());
  });
  await assertFails(
    fetchImageUrl(`${server.origin}/`, options()),
    'invalid_parameter',
    /^image_url could not be fetched: the connection failed \(\w+\)\.$/,
  );
});

test('a refused connection is an error with the reason', async (t) => {
  const server = await serve(t, serveImage);
  const closedPort = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  assert.notEqual(closedPort, server.port);
  await assertFails(
    fetchImageUrl(`http://127.0.0.1:${closedPort}/`, options()),
    'invalid_parameter',
    /could not be fetched: the connection failed \(ECONNREFUSED\)/,
  );
});

/** A resolver that answers from a script, one entry per call, and counts the calls. */
function scriptedResolver(answers: string[][]): { resolve: FetchUrlOptions['resolve']; calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    resolve: (hostname) => {
      const addresses = answers[calls.length % answers.length] ?? [];
      calls.push(hostname);
      return Promise.resolve(addresses.map((address): LookupAddress => ({ address, family: address.includes(':') ? 6 : 4 })));
    },
  };
}

/**
 * Server A answers on 127.0.0.1 and server B on 127.0.0.2, both on one port, so
 * only the address the connection uses decides which of them gets a request.
 */
async function rebindingPair(t: TestContext, handler: RequestListener): Promise<{ a: TestServer; b: TestServer }> {
  const a = await serve(t, handler, '127.0.0.1');
  const b = await serve(t, handler, '127.0.0.2', a.port);
  return { a, b };
}

test('DNS rebinding: the connection goes to the address that was checked', async (t) => {
  const { a, b } = await rebindingPair(t, serveImage);
  // A second resolution, as a naive fetch would do when connecting, would get B.
  const dns = scriptedResolver([['127.0.0.1'], ['127.0.0.2']]);
  const body = await fetchImageUrl(`http://rebind.test:${a.port}/cat.png`, options({ resolve: dns.resolve }));
  assert.deepEqual(body, IMAGE);
  assert.deepEqual(dns.calls, ['rebind.test']);
  assert.deepEqual(
    a.requests.map((request) => [request.url, request.headers.host]),
    [['/cat.png', `rebind.test:${a.port}`]],
  );
  assert.equal(b.connections(), 0);
});

test('DNS rebinding: each redirect hop is resolved once and connects to its own answer', async (t) => {
  const { a, b } = await rebindingPair(t, (request, response) => {
    if (request.url === '/start') response.writeHead(302, { location: '/cat.png' }).end();
    else serveImage(request, response);
  });
  const dns = scriptedResolver([['127.0.0.1'], ['127.0.0.2']]);
  assert.deepEqual(await fetchImageUrl(`http://rebind.test:${a.port}/start`, options({ resolve: dns.resolve })), IMAGE);
  assert.deepEqual(dns.calls, ['rebind.test', 'rebind.test']);
  assert.deepEqual(
    a.requests.map((request) => request.url),
    ['/start'],
  );
  assert.deepEqual(
    b.requests.map((request) => request.url),
    ['/cat.png'],
  );
});

test('a hostname is refused if any of its addresses is refused, and the message never says what it resolved to', async (t) => {
  const server = await serve(t, serveImage);
  for (const answers of [['127.0.0.1', '10.0.0.1'], ['10.1.2.3'], ['::1', 'fe80::1'], ['169.254.169.254'], ['100.64.0.7'], ['fd12:3456::9']]) {
    const dns = scriptedResolver([answers]);
    await assertFails(
      fetchImageUrl(`http://images.test:${server.port}/`, options({ resolve: dns.resolve, timeoutMs: 300 })),
      'invalid_parameter',
      /^image_url refused: the host is not a public address\.$/,
    );
  }
  // Nor once a connection has failed: Node's own message would name the address it tried.
  const dns = scriptedResolver([['127.0.0.9']]);
  await assert.rejects(fetchImageUrl('http://closed.test:9/', options({ resolve: dns.resolve })), (error: unknown) => {
    assert.ok(error instanceof ApiError);
    assert.match(error.message, /^image_url could not be fetched: the connection failed \(ECONNREFUSED\)\.$/);
    assert.doesNotMatch(error.message, /127\.0\.0\.9/);
    return true;
  });
  assert.equal(server.connections(), 0);
});

test('resolution failures are errors with the reason', HANG_GUARD, async () => {
  const notFound = Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.test'), { code: 'ENOTFOUND' });
  await assertFails(
    fetchImageUrl('http://nowhere.test/', options({ resolve: () => Promise.reject(notFound) })),
    'invalid_parameter',
    /^image_url could not be fetched: the host nowhere\.test could not be resolved \(ENOTFOUND\)\.$/,
  );
  await assertFails(
    fetchImageUrl('http://empty.test/', options({ resolve: () => Promise.resolve([]) })),
    'invalid_parameter',
    /the host empty\.test has no address/,
  );
  await assertFails(
    fetchImageUrl('http://slow.test/', options({ resolve: () => new Promise(() => undefined), timeoutMs: 200 })),
    'invalid_parameter',
    /timed out after 200 ms/,
  );
});
