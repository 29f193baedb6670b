/**
 * The pieces `npm run attack` is built from: one HTTP exchange that always
 * settles (a status, or why there was none), the normal upload and its
 * cutout check, a peak-RSS meter for the server process, a tarpit that
 * accepts connections and never answers, and the attack's images.
 */
import net from 'node:net';
import sharp, { type Sharp } from 'sharp';
import { type Answer, judgeAnswer, receive } from '../tools/lib/answers';
import { fixture } from '../tools/lib/images';
import { type BenchImage, photoLikeJpeg } from './images';
import { MIB, peakRssMiB, resetPeakRss, rssMiB } from './stats';

/** An HTTP status, or why there was none: the client gave up on purpose, ran out of patience, or lost the connection. */
export type Outcome = number | 'aborted' | 'timeout' | 'lost';

/** One request of a scenario. A probe without a body is a GET. */
export interface Probe {
  label: string;
  /** Path and query, e.g. `/remove-background?format=png`. */
  path: string;
  body?: Buffer;
  contentType?: string;
  /** What the service should answer once the fixes are in; a mismatch is reported, not failed. */
  expected: readonly Outcome[];
}

export interface Shot {
  label: string;
  outcome: Outcome;
  ms: number;
  expected: readonly Outcome[];
  /** 503 must say when to come back. */
  retryAfter: boolean;
  /** `WxH content-type` for a 200, the error code otherwise. */
  detail: string;
}

/** A normal upload of the real photo: how long it took and, unless it was a correct cutout, why not. */
export interface UploadOutcome {
  outcome: Outcome;
  ms: number;
  problem: string | null;
}

/** Longer than the server's own 55 s request deadline, so its 504 arrives before the client gives up. */
const CLIENT_TIMEOUT_MS = 120_000;

interface Exchange {
  outcome: Outcome;
  ms: number;
  answer: Answer | null;
  /** Why there was no answer: fetch's own error, or the socket error beneath it. */
  failure: string;
}

function failureOf(error: unknown): string {
  const { message, cause } = error as Error & { cause?: Error };
  return cause?.message ?? message;
}

/**
 * Every request on a connection of its own: reusing a pooled keep-alive socket
 * races the server's 5 s idle timeout, and a server whose event loop is stalled
 * runs that timeout late, closing the socket under a request already written to
 * it. That would be the bench's pool failing, not the service.
 */
async function exchange(url: string, body: Buffer | undefined, contentType: string | undefined): Promise<Exchange> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), CLIENT_TIMEOUT_MS);
  const started = performance.now();
  const headers: Record<string, string> = { connection: 'close', ...(contentType === undefined ? {} : { 'content-type': contentType }) };
  try {
    const response = await fetch(url, { method: body === undefined ? 'GET' : 'POST', body, headers, signal: controller.signal });
    const answer = await receive(response);
    return { outcome: answer.status, ms: performance.now() - started, answer, failure: '' };
  } catch (error) {
    const outcome = controller.signal.aborted ? 'timeout' : 'lost';
    return { outcome, ms: performance.now() - started, answer: null, failure: failureOf(error) };
  } finally {
    clearTimeout(timer);
  }
}

function describe({ answer, failure }: Exchange): string {
  if (answer === null) return failure;
  const type = answer.headers.get('content-type') ?? '';
  if (answer.status === 200) return `${answer.headers.get('x-width')}x${answer.headers.get('x-height')} ${type}`;
  try {
    return (JSON.parse(answer.body.toString()) as { error: { code: string } }).error.code;
  } catch {
    return type;
  }
}

export async function send(baseUrl: string, probe: Probe): Promise<Shot> {
  const result = await exchange(`${baseUrl}${probe.path}`, probe.body, probe.contentType);
  const { outcome, ms, answer } = result;
  return { label: probe.label, outcome, ms, expected: probe.expected, retryAfter: answer?.headers.has('retry-after') ?? false, detail: describe(result) };
}

/**
 * A GET from a client that hangs up `patienceMs` after its request is on the
 * wire. A raw socket, because fetch's abort timer starts before there is a
 * connection: of 300 fetches aborted at 50 ms, fewer than one in ten reached
 * the server, so the flood would not have been one.
 */
export function sendImpatient(baseUrl: string, probe: Omit<Probe, 'body' | 'contentType'>, patienceMs: number): Promise<Shot> {
  const { hostname, port } = new URL(baseUrl);
  const started = performance.now();
  return new Promise((resolve) => {
    let patience: NodeJS.Timeout | undefined;
    const finish = (outcome: Outcome): void => {
      clearTimeout(patience);
      clearTimeout(guard);
      socket.destroy();
      resolve({ label: probe.label, outcome, ms: performance.now() - started, expected: probe.expected, retryAfter: false, detail: '' });
    };
    const guard = setTimeout(() => finish('timeout'), CLIENT_TIMEOUT_MS);
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(`GET ${probe.path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n\r\n`);
      patience = setTimeout(() => finish('aborted'), patienceMs);
    });
    // The first of these settles the promise; the rest are the echo of destroy().
    socket.once('data', (chunk: Buffer) => {
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(chunk.toString('latin1'));
      finish(status ? Number(status[1]) : 'lost');
    });
    socket.once('error', () => finish('lost'));
    socket.once('close', () => finish('lost'));
  });
}

/** One after another, so each request has the server to itself apart from the normal upload beside it. */
export async function sendInTurn(baseUrl: string, probes: readonly Probe[]): Promise<Shot[]> {
  const shots: Shot[] = [];
  for (const probe of probes) shots.push(await send(baseUrl, probe));
  return shots;
}

export function sendAtOnce(baseUrl: string, probes: readonly Probe[]): Promise<Shot[]> {
  return Promise.all(probes.map((probe) => send(baseUrl, probe)));
}

/** POSTs the photo as image/jpeg and checks the answer is a PNG cutout of the photo's size. */
export async function normalUpload(baseUrl: string, photo: BenchImage): Promise<UploadOutcome> {
  const result = await exchange(`${baseUrl}/remove-background`, photo.bytes, photo.contentType);
  const { outcome, ms, answer } = result;
  let problem: string | null;
  if (answer === null) problem = `no answer (${outcome}: ${result.failure})`;
  else if (answer.status !== 200) problem = `${answer.status} ${describe(result)}`;
  else problem = await judgeAnswer(answer, { image: { width: photo.width, height: photo.height } });
  return { outcome, ms, problem };
}

/** `/remove-background?…`; pairs rather than a record, so a name can be given twice. */
export function removalPath(query: ReadonlyArray<readonly [string, string]> = []): string {
  const search = new URLSearchParams(query.map(([name, value]): [string, string] => [name, value])).toString();
  return search === '' ? '/remove-background' : `/remove-background?${search}`;
}

/**
 * The server's peak resident set over a window. VmHWM is reset at the start of
 * each window (clear_refs), so the model load or an earlier phase does not
 * hide in it; VmRSS is also sampled every 100 ms, which is all there is if the
 * reset is refused.
 */
export class PeakMeter {
  private sampledMiB = 0;
  private lapsMiB = 0;
  private resettable = true;
  private readonly sampler: NodeJS.Timeout;

  constructor(private readonly pid: number) {
    this.sampler = setInterval(() => {
      rssMiB(this.pid).then(
        (mib) => {
          this.sampledMiB = Math.max(this.sampledMiB, mib);
        },
        () => undefined,
      );
    }, 100);
  }

  /** Forgets everything measured so far. */
  async start(): Promise<void> {
    this.lapsMiB = 0;
    await this.newWindow();
  }

  /** The peak of the window since the last lap (or start), then a new window; every lap counts toward total(). */
  async lap(): Promise<number> {
    const peak = await this.windowPeak();
    this.lapsMiB = Math.max(this.lapsMiB, peak);
    await this.newWindow();
    return peak;
  }

  /** The peak since start(). */
  async total(): Promise<number> {
    return Math.max(this.lapsMiB, await this.windowPeak());
  }

  stop(): void {
    clearInterval(this.sampler);
  }

  private async windowPeak(): Promise<number> {
    const now = await rssMiB(this.pid);
    const hwm = this.resettable ? await peakRssMiB(this.pid) : 0;
    return Math.max(hwm, this.sampledMiB, now);
  }

  private async newWindow(): Promise<void> {
    try {
      await resetPeakRss(this.pid);
    } catch {
      this.resettable = false;
    }
    this.sampledMiB = await rssMiB(this.pid);
  }
}

/** A TCP server that accepts every connection and never says a word, until close(). */
export interface Tarpit {
  port: number;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

export function startTarpit(): Promise<Tarpit> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    // The service hangs up when its fetch times out; that is not an error here.
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        accepted: () => accepted,
        close: () =>
          new Promise<void>((closed) => {
            for (const socket of sockets) socket.destroy();
            server.close(() => closed());
          }),
      });
    });
  });
}

export type ImageName = 'car' | 'square6300' | 'photo40mp' | 'wide20000' | 'long70000';

/** What the service takes in one file; an attack image over it would test the upload limit instead. */
const UPLOAD_LIMIT_BYTES = 20 * MIB;

async function benchImage(name: string, bytes: Buffer): Promise<BenchImage> {
  const { width = 0, height = 0, format } = await sharp(bytes).metadata();
  if (bytes.length >= UPLOAD_LIMIT_BYTES) throw new Error(`${name} is ${bytes.length} bytes, over the 20 MiB upload limit`);
  return { name, bytes, width, height, contentType: `image/${format}` };
}

/** Flat colour: the refusals these images are for depend on their dimensions, not their pixels. */
function flat(width: number, height: number): Sharp {
  return sharp({ create: { width, height, channels: 3, background: { r: 90, g: 140, b: 200 } } });
}

/**
 * The two 40 MP photos have grain and a subject (bench/images.ts), so their
 * decode costs what a camera's would and crop=true finds something to crop to.
 */
const MAKERS: Record<ImageName, () => Promise<Buffer>> = {
  car: () => Promise.resolve(fixture('car-1.jpg')),
  square6300: () => photoLikeJpeg(6300, 6300, 2),
  photo40mp: () => photoLikeJpeg(8000, 5000, 3),
  wide20000: () => flat(20000, 1500).jpeg({ quality: 90 }).toBuffer(),
  long70000: () => flat(70000, 300).png().toBuffer(),
};

export class AttackImages {
  private constructor(private readonly images: ReadonlyMap<ImageName, BenchImage>) {}

  /** Made once, before any server runs, so generating them never competes with a measurement. */
  static async make(names: Iterable<ImageName>): Promise<AttackImages> {
    const images = new Map<ImageName, BenchImage>();
    for (const name of new Set(names)) images.set(name, await benchImage(name, await MAKERS[name]()));
    return new AttackImages(images);
  }

  get(name: ImageName): BenchImage {
    const image = this.images.get(name);
    if (!image) throw new Error(`the attack image ${name} was not made: add it to the scenario's images`);
    return image;
  }
}
