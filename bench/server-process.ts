/**
 * The service as a user meets it: `node dist/functions/server.js` in its own
 * process on a loopback port, driven over HTTP.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { PROJECT_ROOT } from '../functions/paths';
import { bodyBytes, postImage } from '../tools/lib/http';
import type { BenchImage } from './images';
import { parseServerTiming } from './stats';

export interface ServerProcess {
  child: ChildProcess;
  pid: number;
  url: string;
  /** performance.now() just before spawn. */
  spawnedAt: number;
  stop(): Promise<void>;
}

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

const STOP_GRACE_MS = 5_000;

/** What scripts/deploy.sh sets for the functions' runtime, so the bench's memory is the deployed one. */
export const DEPLOYED_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };

/**
 * The benchmarks and tools send the same images again and again to measure
 * each pass, so the mask cache is off unless `env` turns it on.
 */
const UNCACHED_ENV: Readonly<Record<string, string>> = { MASK_CACHE_MB: '0' };

/** Spawns the compiled local server; `env` adds to (or overrides) this process's environment. */
export async function spawnServer(env: Record<string, string>): Promise<ServerProcess> {
  const port = await freeLoopbackPort();
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'dist', 'functions', 'server.js')], {
    env: { ...process.env, ...UNCACHED_ENV, ...env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.once('exit', (code, signal) => {
    if (code !== 0 && signal === null) console.error(`server exited with ${code}: ${stderr}`);
  });
  if (child.pid === undefined) throw new Error('the server could not be spawned');
  return {
    child,
    pid: child.pid,
    url: `http://127.0.0.1:${port}`,
    spawnedAt,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls /health every `intervalMs` and returns ms from spawn to the first 200. */
export async function waitForHealth(server: ServerProcess, intervalMs = 5, timeoutMs = 30_000): Promise<number> {
  const deadline = server.spawnedAt + timeoutMs;
  while (performance.now() < deadline) {
    if (server.child.exitCode !== null) throw new Error('the server exited before answering health');
    try {
      const response = await fetch(`${server.url}/health`);
      await response.arrayBuffer();
      if (response.status === 200) return performance.now() - server.spawnedAt;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`no health 200 within ${timeoutMs} ms`);
}

export interface RemovalSample {
  status: number;
  /** From sending the request to the last byte of the answer. */
  ms: number;
  /** performance.now() when the answer was complete. */
  finishedAt: number;
  bytes: number;
  stages: Record<string, number>;
  /** The Server-Timing header as sent, for entries without a duration such as `cache;desc=hit`. */
  serverTiming: string;
  /** X-Model: the model that ran. */
  model: string;
  /** X-Quality: the inference passes that ran, such as `one` or `one,zoomed`. */
  passes: string;
}

export async function removal(server: ServerProcess, image: BenchImage, query = ''): Promise<RemovalSample> {
  const started = performance.now();
  const response = await postImage(`${server.url}/remove-background${query}`, image.bytes, image.contentType);
  const body = await bodyBytes(response);
  const finishedAt = performance.now();
  if (response.status !== 200) throw new Error(`${image.name}${query}: HTTP ${response.status} ${body.toString().slice(0, 200)}`);
  return {
    status: response.status,
    ms: finishedAt - started,
    finishedAt,
    bytes: body.length,
    stages: parseServerTiming(response.headers.get('server-timing')),
    serverTiming: response.headers.get('server-timing') ?? '',
    model: response.headers.get('x-model') ?? '',
    passes: response.headers.get('x-quality') ?? '',
  };
}

export async function warmup(server: ServerProcess): Promise<{ loadMs: number; inferMs: number; ms: number }> {
  const started = performance.now();
  const response = await fetch(`${server.url}/warmup`);
  const body = (await response.json()) as { loadMs: number; inferMs: number };
  if (response.status !== 200) throw new Error(`warmup: HTTP ${response.status} ${JSON.stringify(body)}`);
  return { loadMs: body.loadMs, inferMs: body.inferMs, ms: performance.now() - started };
}
