/**
 * `npm run fuzz -- [--count 2000] [--seed N] [--concurrency 2] [--max-seconds S] [--max-input-pixels P]`: the fuzzer of
 * test/fuzz.test.ts at length, against the local server in its own process,
 * so a crash shows as a dead process rather than a dead test runner. Prints
 * counts by status, every finding (a 500, a request never answered, an
 * answer that is neither a proper cutout nor a documented error), whether the
 * server survived and still serves, and one final JSON line. Exits 1 on any
 * finding. With --max-seconds no case starts after that time, and the report
 * says how many ran. --max-input-pixels sets the server's MAX_INPUT_PIXELS:
 * below the seeds' 19,200 pixels, an intact header is refused 413 before any
 * pixel is decoded, so thousands of cases run in minutes but exercise only
 * framing and header parsing, not pixel decoding or the model.
 */
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { spawnServer, waitForHealth, warmup } from '../bench/server-process';
import { loadAverage, peakRssMiB, round } from '../bench/stats';
import { judgeAnswer, receive } from './lib/answers';
import { fuzzCases, fuzzSeedImages, runFuzz } from './lib/fuzz';
import { fixture } from './lib/images';
import { postImage } from './lib/http';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '2000' },
      seed: { type: 'string', default: '1' },
      concurrency: { type: 'string', default: '2' },
      'max-seconds': { type: 'string' },
      'max-input-pixels': { type: 'string' },
    },
  });
  const count = Number(values.count);
  const seed = Number(values.seed);
  const concurrency = Number(values.concurrency);
  const maxSeconds = values['max-seconds'] === undefined ? Infinity : Number(values['max-seconds']);
  const loadBefore = loadAverage();
  const maxInputPixels = values['max-input-pixels'];
  const server = await spawnServer({ LOG_LEVEL: 'error', ...(maxInputPixels === undefined ? {} : { MAX_INPUT_PIXELS: maxInputPixels }) });
  try {
    await waitForHealth(server);
    await warmup(server);
    const url = `${server.url}/remove-background`;
    const progressEvery = Math.max(1, Math.floor(count / 20));
    const report = await runFuzz(url, fuzzCases(await fuzzSeedImages(), seed, count), {
      concurrency,
      deadline: performance.now() + maxSeconds * 1000,
      onAnswer: (progress) => {
        if (progress.cases % progressEvery === 0) process.stderr.write(`  ${progress.cases}/${count} ${JSON.stringify(progress.byStatus)}\n`);
      },
    });
    const alive = server.child.exitCode === null && server.child.signalCode === null;
    let stillServes = false;
    if (alive) {
      // Small enough for any --max-input-pixels this tool is meant for.
      const small = await sharp(fixture('car-1.jpg')).resize(120, 90).jpeg().toBuffer();
      const answer = await receive(await postImage(url, small));
      stillServes = (await judgeAnswer(answer, { image: { width: 120, height: 90 } })) === null;
    }
    const peakMiB = alive ? round(await peakRssMiB(server.pid)) : null;
    const pixelLimit = maxInputPixels === undefined ? 'default MAX_INPUT_PIXELS' : `MAX_INPUT_PIXELS=${maxInputPixels}`;
    console.log(`fuzz: ${report.cases} of ${count} cases ran, seed ${seed}, concurrency ${concurrency}, ${pixelLimit}, ${round(report.ms / 1000)} s`);
    for (const [status, n] of Object.entries(report.byStatus).sort()) console.log(`  ${status.padEnd(5)} ${n}`);
    for (const finding of report.findings) console.log(`  FINDING #${finding.index} ${finding.name}: ${finding.problem}`);
    console.log(`server ${alive ? 'survived' : 'DIED'}; a valid request afterwards ${stillServes ? 'got a correct PNG' : 'FAILED'}; peak RSS ${peakMiB} MiB`);
    console.log(`load average before ${loadBefore.join(' ')}, after ${loadAverage().join(' ')}`);
    console.log(JSON.stringify({ fuzz: { seed, count, ran: report.cases, maxInputPixels: maxInputPixels ?? null, concurrency, seconds: round(report.ms / 1000), byStatus: report.byStatus, findings: report.findings, survived: alive, stillServes, peakRssMiB: peakMiB, loadBefore, loadAfter: loadAverage() } }));
    if (report.findings.length > 0 || !stillServes) process.exitCode = 1;
  } finally {
    await server.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
