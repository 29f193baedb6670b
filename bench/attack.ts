/**
 * `npm run attack -- [--only NAME[,NAME]]`
 *
 * Runs the hostile scenarios of bench/attack-scenarios.ts (docs/attack.md)
 * against the service's server process over loopback. Each scenario gets a
 * fresh server, because VmHWM is process-wide: spawn, health, warmup, three
 * normal uploads (their median is "normal" latency), then the scenario with a
 * normal upload during it, then one after it that must be a correct cutout.
 * Prints a table, the answers per scenario, a PASS/FAIL checklist and one JSON
 * line; exits 1 on any FAIL.
 */
import { parseArgs } from 'node:util';
import { AttackImages, normalUpload, type Outcome, PeakMeter, type Shot, type UploadOutcome } from './attack-support';
import { type Check, SCENARIOS, type Scenario } from './attack-scenarios';
import type { BenchImage } from './images';
import { DEPLOYED_ENV, type ServerProcess, spawnServer, waitForHealth, warmup } from './server-process';
import { loadAverage, median, round, rssMiB } from './stats';

/**
 * MEMORY_LIMIT_MB is the instance's memory, from which the server sizes its
 * admission budget (settings it does not know yet are ignored); loopback URLs
 * are allowed so the tarpit on 127.0.0.1 can be fetched.
 */
const BENCH_ENV: Readonly<Record<string, string>> = {
  ...DEPLOYED_ENV,
  LOG_LEVEL: 'error',
  MEMORY_LIMIT_MB: '2048',
  DETOURAGE_TEST_ALLOW_LOOPBACK_URLS: '1',
};
/** 80 % of the 2 GiB instance: what is left is the runtime's and the kernel's. */
const PEAK_TARGET_MIB = 1638;
const BASELINE_UPLOADS = 3;
/** The sum of the scenarios' budgets and their set-up, and then some: the bench always ends by itself. */
const GLOBAL_TIMEOUT_MS = 35 * 60_000;

interface ScenarioResult {
  name: string;
  summary: string;
  normalMs: number;
  idleRssMiB: number;
  normalPeakMiB: number;
  /** The server's peak RSS from the scenario's start to the end of the upload during it. */
  peakMiB: number;
  shots: Shot[];
  during: UploadOutcome | null;
  after: UploadOutcome | null;
  notes: string[];
  figures: Record<string, number>;
  checks: Check[];
  /** Why the scenario did not run to its end. */
  error: string | null;
  seconds: number;
}

/** Servers still running, so a timeout or Ctrl-C can kill them rather than leave them behind. */
const live = new Set<ServerProcess>();

type Settled<T> = { value: T } | { error: string };

/** Waits for `work` at most `ms`; a late rejection is swallowed, since nobody waits for it any more. */
async function withBudget<T>(work: Promise<T>, ms: number): Promise<Settled<T>> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<Settled<T>>((resolve) => {
    timer = setTimeout(() => resolve({ error: `did not finish within ${ms / 1000} s` }), ms);
  });
  const settled = work.then(
    (value): Settled<T> => ({ value }),
    (error: unknown): Settled<T> => ({ error: error instanceof Error ? error.message : String(error) }),
  );
  try {
    return await Promise.race([settled, expired]);
  } finally {
    clearTimeout(timer);
  }
}

async function baseline(url: string, photo: BenchImage, meter: PeakMeter): Promise<{ normalMs: number; normalPeakMiB: number }> {
  await meter.start();
  const samples: number[] = [];
  for (let index = 0; index < BASELINE_UPLOADS; index += 1) {
    const upload = await normalUpload(url, photo);
    if (upload.problem !== null) throw new Error(`baseline upload ${index + 1}: ${upload.problem}`);
    samples.push(upload.ms);
  }
  return { normalMs: median(samples), normalPeakMiB: await meter.lap() };
}

function alive(server: ServerProcess): boolean {
  return server.child.exitCode === null && server.child.signalCode === null;
}

async function peakOrNaN(meter: PeakMeter): Promise<number> {
  try {
    return await meter.total();
  } catch {
    // The process is gone, and its /proc entry with it.
    return Number.NaN;
  }
}

function emptyResult(scenario: Scenario): ScenarioResult {
  const unknown = Number.NaN;
  return {
    name: scenario.name,
    summary: scenario.summary,
    normalMs: unknown,
    idleRssMiB: unknown,
    normalPeakMiB: unknown,
    peakMiB: unknown,
    shots: [],
    during: null,
    after: null,
    notes: [],
    figures: {},
    checks: [],
    error: null,
    seconds: 0,
  };
}

async function runScenario(scenario: Scenario, images: AttackImages): Promise<ScenarioResult> {
  const started = performance.now();
  const result = emptyResult(scenario);
  const photo = images.get('car');
  const server = await spawnServer({ ...BENCH_ENV, ...scenario.env });
  live.add(server);
  const meter = new PeakMeter(server.pid);
  try {
    await waitForHealth(server);
    await warmup(server);
    Object.assign(result, await baseline(server.url, photo, meter));
    result.idleRssMiB = await rssMiB(server.pid);
    await meter.start();
    const upload = (): Promise<UploadOutcome> => normalUpload(server.url, photo);
    const context = { url: server.url, pid: server.pid, images, meter, normalMs: result.normalMs, idleRssMiB: result.idleRssMiB, normalPeakMiB: result.normalPeakMiB, upload };
    const settled = await withBudget(scenario.run(context), scenario.budgetMs);
    result.peakMiB = await peakOrNaN(meter);
    if ('error' in settled) result.error = settled.error;
    else Object.assign(result, settled.value);
    if (alive(server)) result.after = await upload();
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
  } finally {
    meter.stop();
    await server.stop();
    live.delete(server);
  }
  result.seconds = round((performance.now() - started) / 1000);
  return result;
}

function countOutcomes(outcomes: readonly Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const outcome of outcomes) counts[outcome] = (counts[outcome] ?? 0) + 1;
  return counts;
}

function formatCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([outcome, count]) => `${outcome}×${count}`)
    .join(' ');
}

function formatUpload(upload: UploadOutcome | null): string {
  return upload === null ? '—' : `${round(upload.ms)} ms (${upload.outcome})`;
}

/** Not judged (the checklist is): an answer the fixed service should not give, or a 503 that does not say when to retry. */
function unexpected(shot: Shot): boolean {
  return !shot.expected.includes(shot.outcome) || (shot.outcome === 503 && !shot.retryAfter);
}

interface ShotGroup {
  label: string;
  outcomes: Record<string, number>;
  details: string[];
  expected: readonly Outcome[];
  maxMs: number;
  unexpected: number;
}

/** Shots with the same label (a flood's 300 requests) as one line. */
function groupShots(shots: readonly Shot[]): ShotGroup[] {
  const groups = new Map<string, Shot[]>();
  for (const shot of shots) groups.set(shot.label, [...(groups.get(shot.label) ?? []), shot]);
  return [...groups.entries()].map(([label, members]) => ({
    label,
    outcomes: countOutcomes(members.map((shot) => shot.outcome)),
    details: [...new Set(members.map((shot) => shot.detail).filter((detail) => detail !== ''))],
    expected: members[0]!.expected,
    maxMs: round(Math.max(...members.map((shot) => shot.ms))),
    unexpected: members.filter(unexpected).length,
  }));
}

function printTable(results: readonly ScenarioResult[]): void {
  const columns = ['scenario'.padEnd(21), 'statuses'.padEnd(30), 'peak MiB', 'normal ms', 'during'.padEnd(18), 'after'.padEnd(18), 'cutout after'];
  console.log(columns.join(' '));
  for (const result of results) {
    const statuses = formatCounts(countOutcomes(result.shots.map((shot) => shot.outcome))) || '—';
    console.log(
      [
        result.name.padEnd(21),
        statuses.padEnd(30),
        String(round(result.peakMiB, 0)).padStart(8),
        String(round(result.normalMs, 0)).padStart(9),
        formatUpload(result.during).padEnd(18),
        formatUpload(result.after).padEnd(18),
        result.after?.problem === null ? 'yes' : `NO: ${result.after?.problem ?? 'not tried'}`,
      ].join(' '),
    );
  }
}

function printDetails(result: ScenarioResult): void {
  console.log(`\n${result.name}: ${result.summary} (${result.seconds} s)`);
  console.log(`  fresh server: normal upload ${round(result.normalMs)} ms, idle RSS ${round(result.idleRssMiB)} MiB, normal upload peak ${round(result.normalPeakMiB)} MiB`);
  for (const group of groupShots(result.shots)) {
    const flag = group.unexpected > 0 ? `  UNEXPECTED (${group.unexpected})` : '';
    const details = group.details.length > 0 ? ` [${group.details.join(', ')}]` : '';
    console.log(`  ${group.label}: ${formatCounts(group.outcomes)}${details}, max ${group.maxMs} ms; expected ${group.expected.join('/')}${flag}`);
  }
  console.log(`  upload during: ${formatUpload(result.during)}${result.during?.problem ? ` — ${result.during.problem}` : ''}`);
  for (const note of result.notes) console.log(`  ${note}`);
  if (result.error !== null) console.log(`  SCENARIO ERROR: ${result.error}`);
}

function statuses500(result: ScenarioResult): number {
  const uploads = [result.during, result.after].filter((upload): upload is UploadOutcome => upload !== null);
  return [...result.shots, ...uploads].filter((answer) => answer.outcome === 500).length;
}

/** One check over every scenario that ran; its detail names the scenarios that failed it, or the worst figure. */
function everyScenario(target: string, results: readonly ScenarioResult[], judge: (result: ScenarioResult) => { pass: boolean; figure: string }): Check {
  const judged = results.map((result) => ({ name: result.name, ...judge(result) }));
  const failed = judged.filter((entry) => !entry.pass);
  const shown = failed.length > 0 ? failed : judged;
  return { target, pass: failed.length === 0, detail: shown.map((entry) => `${entry.name} ${entry.figure}`).join(', ') };
}

function checklist(results: readonly ScenarioResult[]): Check[] {
  return [
    everyScenario(`peak RSS ≤ ${PEAK_TARGET_MIB} MiB in every scenario`, results, (result) => ({
      pass: result.peakMiB <= PEAK_TARGET_MIB,
      figure: `${round(result.peakMiB, 0)} MiB`,
    })),
    everyScenario('zero 500s in every scenario', results, (result) => ({ pass: statuses500(result) === 0, figure: `${statuses500(result)}×500` })),
    ...results.flatMap((result) => result.checks),
    everyScenario('server alive and answering a correct cutout after every scenario', results, (result) => ({
      pass: result.after?.problem === null,
      figure: result.after?.problem ?? (result.after === null ? 'not tried' : 'ok'),
    })),
    everyScenario('every scenario ran to its end', results, (result) => ({ pass: result.error === null, figure: result.error ?? 'ok' })),
  ];
}

function jsonSummary(result: ScenarioResult): Record<string, unknown> {
  const upload = (outcome: UploadOutcome | null): Record<string, unknown> | null =>
    outcome === null ? null : { outcome: outcome.outcome, ms: round(outcome.ms), problem: outcome.problem };
  return {
    name: result.name,
    statuses: countOutcomes(result.shots.map((shot) => shot.outcome)),
    requests: groupShots(result.shots),
    peakRssMiB: round(result.peakMiB),
    idleRssMiB: round(result.idleRssMiB),
    normalUploadPeakMiB: round(result.normalPeakMiB),
    normalMs: round(result.normalMs),
    during: upload(result.during),
    after: upload(result.after),
    figures: result.figures,
    error: result.error,
    seconds: result.seconds,
  };
}

/** Prints everything and says whether every check passed. */
function finish(results: readonly ScenarioResult[], extraChecks: readonly Check[]): boolean {
  console.log('');
  printTable(results);
  for (const result of results) printDetails(result);
  const checks = [...checklist(results), ...extraChecks];
  console.log('\nchecklist');
  for (const check of checks) console.log(`  ${check.pass ? 'PASS' : 'FAIL'}  ${check.target} — ${check.detail}`);
  const surprises = results.flatMap((result) => result.shots.filter(unexpected));
  console.log(`  (not judged: ${surprises.length} answers differ from what the fixed service should give; marked UNEXPECTED above)`);
  const pass = checks.every((check) => check.pass);
  console.log(JSON.stringify({ attack: { pass, loadAverage: loadAverage(), scenarios: results.map(jsonSummary), checks, unexpected: surprises.length } }));
  return pass;
}

function selectScenarios(only: string | undefined): readonly Scenario[] {
  if (only === undefined) return SCENARIOS;
  const names = only.split(',').map((name) => name.trim()).filter((name) => name !== '');
  const unknown = names.filter((name) => !SCENARIOS.some((scenario) => scenario.name === name));
  if (unknown.length > 0 || names.length === 0) {
    throw new Error(`--only takes scenario names: ${SCENARIOS.map((scenario) => scenario.name).join(', ')} (got ${only})`);
  }
  return SCENARIOS.filter((scenario) => names.includes(scenario.name));
}

const results: ScenarioResult[] = [];

/** Kills whatever server is running and reports what was finished, so a stuck run still says something. */
function abandon(reason: string, exitCode: number): void {
  for (const server of live) server.child.kill('SIGKILL');
  console.log(`\nattack: ${reason}; reporting the ${results.length} scenarios that finished`);
  finish(results, [{ target: 'the bench ran to its end', pass: false, detail: reason }]);
  process.exit(exitCode);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { only: { type: 'string' } } });
  const selected = selectScenarios(values.only);
  setTimeout(() => abandon(`global timeout of ${GLOBAL_TIMEOUT_MS / 60_000} min`, 1), GLOBAL_TIMEOUT_MS).unref();
  process.once('SIGINT', () => abandon('interrupted', 130));
  process.once('SIGTERM', () => abandon('terminated', 143));
  console.log(`attack: ${selected.map((scenario) => scenario.name).join(', ')}; load average ${loadAverage().join(' ')}`);
  const images = await AttackImages.make(['car', ...selected.flatMap((scenario) => scenario.images)]);
  for (const scenario of selected) {
    process.stderr.write(`attack: ${scenario.name}…\n`);
    const result = await runScenario(scenario, images);
    results.push(result);
    process.stderr.write(`attack: ${scenario.name} done in ${result.seconds} s\n`);
  }
  const pass = finish(results, []);
  // Exit now: a tarpit socket or a keep-alive connection must not keep the bench open.
  process.exit(pass ? 0 : 1);
}

main().catch((error: unknown) => {
  for (const server of live) server.child.kill('SIGKILL');
  console.error(error);
  process.exit(1);
});
