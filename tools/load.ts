/**
 * `npm run load -- [--clients 16] [--duration 60] | [--sequential 300]`
 *
 * Spawns the local server (its own process, default config) and drives it
 * over loopback with real photos (rembg's fixtures) mixed with hostile bodies
 * (tools/lib/hostile.ts: bombs, animations, huge metadata, broken
 * multipart, SVG, polyglots, a 30 MB body). Either `--clients` loops for
 * `--duration` seconds, or one client sends `--sequential` requests one after
 * another. Reports requests by status, latency percentiles, the server's peak
 * RSS (VmHWM), RSS growth from the first to the last tenth of the run
 * (VmRSS sampled), and every answer that was neither a correct cutout nor a
 * documented error. Prints a table, then one JSON line.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { fixtureImages } from '../bench/images';
import { DEPLOYED_ENV, spawnServer, waitForHealth, warmup } from '../bench/server-process';
import { loadAverage, percentile, peakRssMiB, round, rssMiB } from '../bench/stats';
import { type Expectation, judgeAnswer, receive } from './lib/answers';
import { hostileCases } from './lib/hostile';
import { postBody } from './lib/http';
import { seededRandom } from './lib/random';

interface WorkItem {
  name: string;
  body: Buffer;
  contentType: string | undefined;
  expected: Expectation;
  hostile: boolean;
}

interface Outcome {
  item: string;
  hostile: boolean;
  status: number | 'lost';
  ms: number;
  problem: string | null;
}

const RSS_SAMPLE_MS = 250;
const GIB = 1024;
/** Targets from issue #6. */
const PEAK_RSS_TARGET_MIB = 1.25 * GIB;
const RSS_GROWTH_TARGET = 0.05;

function startProbe(): Promise<{ url: string; hits: string[]; close: () => void }> {
  const hits: string[] = [];
  const probe = http.createServer((request, response) => {
    hits.push(`${request.method} ${request.url}`);
    response.end();
  });
  return new Promise((resolve) => {
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      resolve({ url: `http://127.0.0.1:${port}`, hits, close: () => probe.close() });
    });
  });
}

/** Mean of the first and of the last tenth of the samples (at least one each). */
function growth(samples: readonly number[]): { firstMiB: number; lastMiB: number; fraction: number } {
  const tenth = Math.max(1, Math.floor(samples.length / 10));
  const mean = (values: readonly number[]): number => values.reduce((sum, value) => sum + value, 0) / values.length;
  const firstMiB = mean(samples.slice(0, tenth));
  const lastMiB = mean(samples.slice(-tenth));
  return { firstMiB, lastMiB, fraction: (lastMiB - firstMiB) / firstMiB };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      clients: { type: 'string', default: '16' },
      duration: { type: 'string', default: '60' },
      sequential: { type: 'string' },
      'hostile-share': { type: 'string', default: '0.3' },
      'backoff-ms': { type: 'string', default: '250' },
      seed: { type: 'string', default: '1' },
    },
  });
  const sequential = values.sequential === undefined ? null : Number(values.sequential);
  const clients = sequential === null ? Number(values.clients) : 1;
  const durationMs = Number(values.duration) * 1000;
  const hostileShare = Number(values['hostile-share']);
  const backoffMs = Number(values['backoff-ms']);
  const random = seededRandom(Number(values.seed));

  const probe = await startProbe();
  const photos: WorkItem[] = (await fixtureImages()).map((image) => ({
    name: image.name,
    body: image.bytes,
    contentType: image.contentType,
    expected: { image: { width: image.width, height: image.height } },
    hostile: false,
  }));
  const hostile: WorkItem[] = (await hostileCases({ probeUrl: probe.url })).map((item) => ({ ...item, hostile: true }));
  const nextItem = (): WorkItem => {
    const pool = random() < hostileShare ? hostile : photos;
    return pool[Math.floor(random() * pool.length)]!;
  };

  const loadBefore = loadAverage();
  const server = await spawnServer({ ...DEPLOYED_ENV, LOG_LEVEL: 'error' });
  const outcomes: Outcome[] = [];
  const rssSamples: number[] = [];
  let sampler: NodeJS.Timeout | undefined;
  let runMs = 0;
  try {
    await waitForHealth(server);
    await warmup(server);
    const url = `${server.url}/remove-background`;
    sampler = setInterval(() => {
      rssMiB(server.pid).then(
        (mib) => rssSamples.push(mib),
        () => undefined,
      );
    }, RSS_SAMPLE_MS);
    const started = performance.now();
    const deadline = started + durationMs;
    let remaining = sequential ?? Infinity;
    const client = async (): Promise<void> => {
      // Bounded either way: by the request count in sequential mode, by the clock otherwise.
      while (sequential === null ? performance.now() < deadline : remaining-- > 0) {
        const item = nextItem();
        const sent = performance.now();
        let outcome: Outcome;
        try {
          const answer = await receive(await postBody(url, item.body, item.contentType));
          const problem = await judgeAnswer(answer, item.expected);
          outcome = { item: item.name, hostile: item.hostile, status: answer.status, ms: performance.now() - sent, problem };
        } catch (error) {
          outcome = { item: item.name, hostile: item.hostile, status: 'lost', ms: performance.now() - sent, problem: `no answer: ${(error as Error).message}` };
        }
        outcomes.push(outcome);
        if (outcome.status === 503) await new Promise((resolve) => setTimeout(resolve, backoffMs * (0.5 + random())));
      }
    };
    await Promise.all(Array.from({ length: clients }, client));
    runMs = performance.now() - started;
  } finally {
    clearInterval(sampler);
  }
  const alive = server.child.exitCode === null && server.child.signalCode === null;
  const peakMiB = alive ? await peakRssMiB(server.pid) : Number.NaN;
  await server.stop();
  probe.close();

  const byStatus: Record<string, number> = {};
  for (const outcome of outcomes) byStatus[outcome.status] = (byStatus[outcome.status] ?? 0) + 1;
  const latency = (subset: readonly Outcome[]): { n: number; p50: number; p95: number; p99: number } => {
    const ms = subset.map((outcome) => outcome.ms);
    return { n: ms.length, p50: round(percentile(ms, 0.5)), p95: round(percentile(ms, 0.95)), p99: round(percentile(ms, 0.99)) };
  };
  const latencies = {
    all: latency(outcomes),
    photos200: latency(outcomes.filter((outcome) => !outcome.hostile && outcome.status === 200)),
    refused503: latency(outcomes.filter((outcome) => outcome.status === 503)),
    hostile: latency(outcomes.filter((outcome) => outcome.hostile && outcome.status !== 503)),
  };
  // Per hostile body, so a slow refusal (a bomb must be refused in under 100 ms) stands out.
  const hostileNames = [...new Set(outcomes.filter((outcome) => outcome.hostile).map((outcome) => outcome.item))].sort();
  const byHostileItem = Object.fromEntries(
    hostileNames.map((name) => {
      const answered = outcomes.filter((outcome) => outcome.item === name && outcome.status !== 503);
      return [name, { ...latency(answered), max: round(Math.max(...answered.map((outcome) => outcome.ms))) }];
    }),
  );
  const findings = outcomes.filter((outcome) => outcome.problem !== null);
  const lost = outcomes.filter((outcome) => outcome.status === 'lost').length;
  const rss = growth(rssSamples);

  const mode = sequential === null ? `${clients} clients for ${round(durationMs / 1000)} s` : `${sequential} sequential requests`;
  console.log(`load: ${mode}, hostile share ${hostileShare}, ${outcomes.length} requests in ${round(runMs / 1000)} s`);
  console.log(`load average before ${loadBefore.join(' ')}, after ${loadAverage().join(' ')}`);
  console.log('status   count');
  for (const [status, count] of Object.entries(byStatus).sort()) console.log(`${status.padEnd(8)} ${String(count).padStart(5)}`);
  console.log('latency ms           n      p50      p95      p99');
  for (const [name, figures] of Object.entries(latencies)) {
    console.log(`${name.padEnd(14)} ${String(figures.n).padStart(6)} ${[figures.p50, figures.p95, figures.p99].map((value) => String(value).padStart(8)).join(' ')}`);
  }
  console.log('hostile body (answered, not 503)                  n      p50      max');
  for (const [name, figures] of Object.entries(byHostileItem)) {
    console.log(`${name.slice(0, 48).padEnd(48)} ${String(figures.n).padStart(6)} ${String(figures.p50).padStart(8)} ${String(figures.max).padStart(8)}`);
  }
  console.log(`server RSS: peak (VmHWM) ${round(peakMiB)} MiB; first tenth ${round(rss.firstMiB)} MiB → last tenth ${round(rss.lastMiB)} MiB (${round(rss.fraction * 100, 2)} %, ${rssSamples.length} samples)`);
  console.log(`SVG probe hits: ${probe.hits.length}; server ${alive ? 'survived' : 'DIED'}`);
  for (const finding of findings.slice(0, 20)) console.log(`  FINDING ${finding.item} → ${finding.status}: ${finding.problem}`);
  if (findings.length > 20) console.log(`  … and ${findings.length - 20} more findings`);
  const checks = [
    { target: 'server survived', pass: alive },
    { target: 'no lost request', pass: lost === 0 },
    { target: 'every answer a correct cutout or a documented error', pass: findings.length === 0 },
    { target: 'SVG references never followed', pass: probe.hits.length === 0 },
    sequential === null
      ? { target: `peak RSS ≤ ${PEAK_RSS_TARGET_MIB} MiB`, pass: peakMiB <= PEAK_RSS_TARGET_MIB }
      : { target: `RSS growth ≤ ${RSS_GROWTH_TARGET * 100} %`, pass: rss.fraction <= RSS_GROWTH_TARGET },
  ];
  for (const check of checks) console.log(`  ${check.pass ? 'PASS' : 'FAIL'}  ${check.target}`);
  console.log(
    JSON.stringify({
      load: {
        mode: sequential === null ? 'concurrent' : 'sequential',
        clients,
        durationSeconds: round(runMs / 1000),
        requests: outcomes.length,
        hostileShare,
        byStatus,
        latencyMs: latencies,
        hostileLatencyMs: byHostileItem,
        peakRssMiB: round(peakMiB),
        rssGrowth: { firstTenthMiB: round(rss.firstMiB), lastTenthMiB: round(rss.lastMiB), percent: round(rss.fraction * 100, 2), samples: rssSamples.length },
        lost,
        findings: findings.map(({ item, status, problem }) => ({ item, status, problem })),
        probeHits: probe.hits.length,
        survived: alive,
        loadBefore,
        loadAfter: loadAverage(),
        checks,
      },
    }),
  );
  if (checks.some((check) => !check.pass)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
