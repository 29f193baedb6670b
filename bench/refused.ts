/**
 * `npm run bench:refused -- [--requests N] [--concurrency C]`
 *
 * What a stranger's request costs a public deployment (AUTH=api-key,firebase):
 * the server process, spawned as `npm start` runs it, answers N requests of
 * each kind over keep-alive loopback, C at a time. Per kind it prints the
 * answer's status, the median and p99 latency, the server's CPU time per
 * request (from /proc/PID/stat) and its RSS rise, then one JSON line. Google's
 * key endpoint is a local key server (tools/lib/keyServer.ts), fetched once
 * before measuring, as a warm instance has it.
 *
 * For scale, the last kinds are requests that pass the check: a missing image
 * (the handler's cheapest 400) and the body-reading cost of an 8 MiB upload
 * that is refused: the functions framework reads a body before any code runs.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { apiKeyHashEntry, createApiKey } from '../functions/access/apiKey';
import { claimsOf, forgedHs256, signingKey, signToken, startKeyServer, TEST_PROJECT } from '../tools/lib/keyServer';
import { DEPLOYED_ENV, spawnServer, waitForHealth } from './server-process';
import { loadAverage, median, percentile, round, rssMiB } from './stats';

interface Kind {
  name: string;
  headers: Record<string, string>;
  body?: Buffer;
}

/** utime + stime of a process, in ms. */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticksPerSecond = 100;
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { requests: { type: 'string', default: '2000' }, concurrency: { type: 'string', default: '1' } } });
  const requests = Number(values.requests);
  const concurrency = Number(values.concurrency);
  const key = createApiKey();
  const signing = await signingKey('bench-key');
  const keyServer = await startKeyServer([signing]);
  const server = await spawnServer({
    ...DEPLOYED_ENV,
    LOG_LEVEL: 'error',
    AUTH: 'api-key,firebase',
    API_KEY_HASHES: apiKeyHashEntry('bench', key),
    FIREBASE_PROJECT_ID: TEST_PROJECT,
    DETOURAGE_TEST_KEY_SERVER: keyServer.url,
  });
  const now = Math.floor(Date.now() / 1000);
  const kinds: Kind[] = [
    { name: 'no credential (401)', headers: {} },
    { name: 'wrong API key (403)', headers: { 'X-Api-Key': createApiKey() } },
    { name: 'expired ID token (403)', headers: { Authorization: `Bearer ${await signToken(claimsOf('firebase', { iat: now - 7200, exp: now - 3600 }), signing)}` } },
    { name: 'forged HS256 ID token (403)', headers: { Authorization: `Bearer ${await forgedHs256(claimsOf('firebase'), signing)}` } },
    { name: 'ID token of another key (403)', headers: { Authorization: `Bearer ${await signToken(claimsOf('firebase'), await signingKey('bench-key'))}` } },
    { name: 'no credential, 8 MiB body (401)', headers: { 'content-type': 'image/jpeg' }, body: Buffer.alloc(8 * 1024 * 1024, 0x41) },
    { name: 'valid API key, no image (400)', headers: { 'X-Api-Key': key } },
    { name: 'valid ID token, no image (400)', headers: { Authorization: `Bearer ${await signToken(claimsOf('firebase'), signing)}` } },
  ];
  const rows: Record<string, unknown>[] = [];
  try {
    await waitForHealth(server);
    // The first token check fetches the keys; a warm instance holds them already.
    await fetch(`${server.url}/remove-background`, { method: 'POST', headers: kinds[7]!.headers });
    for (const kind of kinds) {
      const send = async (): Promise<{ ms: number; status: number }> => {
        const started = performance.now();
        const response = await fetch(`${server.url}/remove-background`, { method: 'POST', headers: kind.headers, ...(kind.body ? { body: kind.body } : {}) });
        await response.arrayBuffer();
        return { ms: performance.now() - started, status: response.status };
      };
      const count = kind.body ? Math.min(requests, 100) : requests;
      for (let i = 0; i < 50; i += 1) await send();
      const rssBefore = await rssMiB(server.pid);
      const cpuBefore = await cpuMs(server.pid);
      const times: number[] = [];
      const statuses = new Set<number>();
      const started = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < count) {
            next += 1;
            const { ms, status } = await send();
            times.push(ms);
            statuses.add(status);
          }
        }),
      );
      const wallMs = performance.now() - started;
      const cpuPerRequestMs = ((await cpuMs(server.pid)) - cpuBefore) / count;
      const row = {
        kind: kind.name,
        status: [...statuses].join('/'),
        requests: count,
        medianMs: round(median(times), 2),
        p99Ms: round(percentile(times, 0.99), 2),
        serverCpuMsPerRequest: round(cpuPerRequestMs, 3),
        perSecond: Math.round((count / wallMs) * 1000),
        rssRiseMiB: round((await rssMiB(server.pid)) - rssBefore, 1),
      };
      rows.push(row);
      console.log(
        `${row.kind.padEnd(34)} ${row.status.padEnd(4)} median ${String(row.medianMs).padStart(6)} ms  p99 ${String(row.p99Ms).padStart(6)} ms  ` +
          `server CPU ${String(row.serverCpuMsPerRequest).padStart(6)} ms/request  ${String(row.perSecond).padStart(5)}/s  RSS ${row.rssRiseMiB >= 0 ? '+' : ''}${row.rssRiseMiB} MiB`,
      );
    }
  } finally {
    await server.stop();
    await keyServer.close();
  }
  console.log(
    JSON.stringify({ bench: 'refused', date: new Date().toISOString(), node: process.version, cpus: os.availableParallelism(), loadAverage: loadAverage(), concurrency, rows }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
