/**
 * The hostile scenarios of `npm run attack` (docs/attack.md). Each runs in a
 * fresh, warmed server process and sends a normal upload of the real photo
 * *during* its attack; the runner (attack.ts) measures the peak RSS around it
 * and checks the server still serves a correct cutout afterwards.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { multipartBody } from '../tools/lib/http';
import {
  type AttackImages,
  type ImageName,
  type Outcome,
  type PeakMeter,
  type Probe,
  removalPath,
  sendAtOnce,
  sendImpatient,
  sendInTurn,
  type Shot,
  startTarpit,
  type UploadOutcome,
} from './attack-support';
import type { BenchImage } from './images';
import { MIB, round, rssMiB } from './stats';

export interface ScenarioContext {
  url: string;
  pid: number;
  images: AttackImages;
  meter: PeakMeter;
  /** Median of three normal uploads right after warmup. */
  normalMs: number;
  /** VmRSS just before the scenario, and the peak of a normal upload on this process (MiB). */
  idleRssMiB: number;
  normalPeakMiB: number;
  upload(): Promise<UploadOutcome>;
}

/** A target of the checklist that only one scenario can judge. */
export interface Check {
  target: string;
  pass: boolean;
  detail: string;
}

export interface ScenarioReport {
  shots: Shot[];
  /** The normal upload made while the attack was going on. */
  during: UploadOutcome;
  /** Lines for the report, and the same figures for the JSON line. */
  notes: string[];
  figures: Record<string, number>;
  checks: Check[];
}

export interface Scenario {
  name: string;
  summary: string;
  images: readonly ImageName[];
  /** Settings on top of the bench's own for this scenario's server. */
  env?: Readonly<Record<string, string>>;
  /** Past this the runner stops waiting for the scenario and reports it unfinished. */
  budgetMs: number;
  run(context: ScenarioContext): Promise<ScenarioReport>;
}

/** Long enough for the hostile requests to be on the server, short enough that they are still running. */
const DURING_DELAY_MS = 300;

/** Starts the attack, then the normal upload DURING_DELAY_MS later, and waits for both. */
async function alongside(context: ScenarioContext, attack: () => Promise<Shot[]>): Promise<{ shots: Shot[]; during: UploadOutcome }> {
  const [shots, during] = await Promise.all([attack(), sleep(DURING_DELAY_MS).then(() => context.upload())]);
  return { shots, during };
}

function report(attack: { shots: Shot[]; during: UploadOutcome }, extra: Partial<Omit<ScenarioReport, 'shots' | 'during'>> = {}): ScenarioReport {
  return { notes: [], figures: {}, checks: [], ...attack, ...extra };
}

function raw(label: string, image: BenchImage, query: ReadonlyArray<readonly [string, string]>, expected: readonly Outcome[]): Probe {
  return { label, path: removalPath(query), body: image.bytes, contentType: image.contentType, expected };
}

function multipart(label: string, parts: Record<string, BenchImage>, query: ReadonlyArray<readonly [string, string]>, expected: readonly Outcome[]): Probe {
  const { body, contentType } = multipartBody(
    Object.entries(parts).map(([name, image]) => ({ name, filename: `${image.name}.${image.contentType.slice('image/'.length)}`, data: image.bytes })),
  );
  return { label, path: removalPath(query), body, contentType, expected };
}

const FLOOD_REQUESTS = 300;
const FLOOD_PATIENCE_MS = 50;
const FLOOD_SETTLE_MS = 1_000;
const FLOOD_MAX_ADDED_MIB = 50;
const FLOOD_MAX_SLOWDOWN = 3;

/**
 * Each GET /remove-background warms the instance; clients that leave at once
 * cost nothing to send, so a flood of them must not cost the server memory or
 * make the next real upload wait.
 */
const warmupFlood: Scenario = {
  name: 'warmup-flood',
  summary: `${FLOOD_REQUESTS} GET /remove-background at once, each client hanging up ${FLOOD_PATIENCE_MS} ms after sending it; then the next upload`,
  images: ['car'],
  budgetMs: 240_000,
  run: async (context) => {
    const before = await rssMiB(context.pid);
    const probe = { label: `GET /remove-background, hang up after ${FLOOD_PATIENCE_MS} ms`, path: '/remove-background', expected: ['aborted', 200, 503] as const };
    const shots = await Promise.all(Array.from({ length: FLOOD_REQUESTS }, () => sendImpatient(context.url, probe, FLOOD_PATIENCE_MS)));
    await sleep(FLOOD_SETTLE_MS);
    const settledAddsMiB = (await rssMiB(context.pid)) - before;
    // The next upload is part of the window: what the flood left queued runs beside it.
    const during = await context.upload();
    // Over a normal upload's own peak, so the inference every upload needs is not counted as the flood's.
    const peakAddsMiB = (await context.meter.total()) - context.normalPeakMiB;
    const addsMiB = Math.max(settledAddsMiB, peakAddsMiB);
    const slowdown = during.ms / context.normalMs;
    return report(
      { shots, during },
      {
        notes: [
          `VmRSS ${FLOOD_SETTLE_MS} ms after the flood: ${round(settledAddsMiB)} MiB over before; peak ${round(peakAddsMiB)} MiB over a normal upload's peak`,
          `next upload ${round(during.ms)} ms = ${round(slowdown, 2)}× normal (${round(context.normalMs)} ms)`,
        ],
        figures: { settledAddsMiB: round(settledAddsMiB), peakAddsMiB: round(peakAddsMiB), nextUploadSlowdown: round(slowdown, 2) },
        checks: [
          { target: `warmup flood adds ≤ ${FLOOD_MAX_ADDED_MIB} MiB`, pass: addsMiB <= FLOOD_MAX_ADDED_MIB, detail: `${round(addsMiB)} MiB` },
          {
            target: `upload after the warmup flood ≤ ${FLOOD_MAX_SLOWDOWN}× normal latency`,
            pass: during.problem === null && slowdown <= FLOOD_MAX_SLOWDOWN,
            detail: `${round(slowdown, 2)}×, ${during.problem ?? 'a correct cutout'}`,
          },
        ],
      },
    );
  },
};

/**
 * A 40 MP upload fits the input limit, but crop_margin can make the output
 * four times its subject, and a background image is then scaled to that.
 */
const outputAmplification: Scenario = {
  name: 'output-amplification',
  summary: '6300×6300 JPEG with crop=true and crop_margin 50% or 500px, raw and as multipart with a 40 MP bg_image_file',
  images: ['square6300', 'photo40mp'],
  budgetMs: 420_000,
  run: (context) => {
    const square = context.images.get('square6300');
    const background = context.images.get('photo40mp');
    const expected = [200, 413];
    const probes = ['50%', '500px'].flatMap((margin) => {
      const query = [['crop', 'true'], ['crop_margin', margin]] as const;
      return [
        raw(`6300² raw, crop_margin=${margin}`, square, query, expected),
        multipart(`6300² + 40 MP bg_image_file, crop_margin=${margin}`, { image_file: square, bg_image_file: background }, query, expected),
      ];
    });
    return alongside(context, () => sendInTurn(context.url, probes)).then((attack) => report(attack));
  },
};

/** Parameter values that are names on Object.prototype, and outputs past an encoder's dimension limit. */
const paramErrors: Scenario = {
  name: 'param-500s',
  summary: 'format/size/channels=constructor or __proto__; 20000×1500 to WebP, 70000×300 to JPEG',
  images: ['car', 'wide20000', 'long70000'],
  budgetMs: 240_000,
  run: (context) => {
    const car = context.images.get('car');
    const wide = context.images.get('wide20000');
    const long = context.images.get('long70000');
    const prototypeNames: ReadonlyArray<readonly [string, string]> = [
      ['format', 'constructor'],
      ['format', '__proto__'],
      ['size', 'constructor'],
      ['channels', 'constructor'],
    ];
    const probes = [
      ...prototypeNames.map((pair) => raw(`car-1 ${pair.join('=')}`, car, [pair], [400])),
      // WebP stops at 16383 px a side, JPEG at 65535.
      raw('20000×1500 JPEG format=webp', wide, [['format', 'webp']], [422]),
      raw('70000×300 PNG format=jpg', long, [['format', 'jpg']], [422]),
      raw('70000×300 PNG bg_color=white', long, [['bg_color', 'white']], [200]),
    ];
    return alongside(context, () => sendInTurn(context.url, probes)).then((attack) => report(attack));
  },
};

/** A parameter given twice, or the image given twice, must be refused rather than one copy silently winning. */
const ambiguity: Scenario = {
  name: 'ambiguity',
  summary: 'formt twice, format twice, multipart with both image and image_file',
  images: ['car'],
  budgetMs: 120_000,
  run: (context) => {
    const car = context.images.get('car');
    const probes = [
      raw('?formt=a&formt=b', car, [['formt', 'a'], ['formt', 'b']], [400]),
      raw('?format=png&format=webp', car, [['format', 'png'], ['format', 'webp']], [400]),
      multipart('multipart image + image_file', { image: car, image_file: car }, [], [400]),
    ];
    return alongside(context, () => sendInTurn(context.url, probes)).then((attack) => report(attack));
  },
};

const TARPIT_REQUESTS = 6;
const TARPIT_FETCH_TIMEOUT_MS = 5_000;

/** URLs that never answer must not hold the slots an uploaded image needs. */
const tarpit: Scenario = {
  name: 'tarpit',
  summary: `${TARPIT_REQUESTS} image_url requests to a server that never answers, a normal upload ${DURING_DELAY_MS} ms later`,
  images: ['car'],
  env: { URL_FETCH_TIMEOUT_MS: String(TARPIT_FETCH_TIMEOUT_MS) },
  budgetMs: 120_000,
  run: async (context) => {
    const pit = await startTarpit();
    try {
      const body = Buffer.from(JSON.stringify({ image_url: `http://127.0.0.1:${pit.port}/x.jpg` }));
      const probe: Probe = { label: 'JSON image_url to the tarpit', path: removalPath(), body, contentType: 'application/json', expected: [503, 400, 504] };
      const attack = await alongside(context, () => sendAtOnce(context.url, Array.from({ length: TARPIT_REQUESTS }, () => probe)));
      return report(attack, {
        notes: [`the tarpit accepted ${pit.accepted()} connections`],
        figures: { tarpitConnections: pit.accepted() },
        checks: [
          {
            target: `the upload beside ${TARPIT_REQUESTS} tarpit URLs gets 200`,
            pass: attack.during.outcome === 200,
            detail: `${attack.during.outcome} in ${round(attack.during.ms)} ms`,
          },
        ],
      });
    } finally {
      await pit.close();
    }
  },
};

/** Just under the body limit (MAX_UPLOAD_BYTES × 4/3 for base64 fields), so the server must parse it. */
const PARSE_BODY_BYTES = 26_000_000;

function repeatedFormBody(): Buffer {
  return Buffer.from('a&'.repeat(PARSE_BODY_BYTES / 2));
}

function manyMembersJson(): Buffer {
  const members: string[] = [];
  let length = 2;
  for (let index = 0; length < PARSE_BODY_BYTES; index += 1) {
    const member = `"a${index}":1`;
    members.push(member);
    length += member.length + 1;
  }
  return Buffer.from(`{${members.join(',')}}`);
}

/**
 * A body of millions of tiny parameters is cheap to send and must be refused
 * without building millions of objects. Each body is measured alone first;
 * then both go again beside the normal upload, which shows whether parsing
 * blocks the event loop.
 */
const parseCost: Scenario = {
  name: 'parse-cost',
  summary: `${PARSE_BODY_BYTES / 1e6} MB urlencoded a&a&a… and ${PARSE_BODY_BYTES / 1e6} MB JSON {"a0":1,…}`,
  images: [],
  budgetMs: 240_000,
  run: async (context) => {
    const bodies = [
      { label: 'urlencoded a&a&a…', body: repeatedFormBody(), contentType: 'application/x-www-form-urlencoded' },
      { label: 'JSON {"a0":1,"a1":1,…}', body: manyMembersJson(), contentType: 'application/json' },
    ];
    const probes = bodies.map((body) => ({ ...body, path: removalPath(), expected: [400] as const }));
    const notes: string[] = [];
    const figures: Record<string, number> = {};
    const alone: Shot[] = [];
    for (const [index, probe] of probes.entries()) {
      const before = await rssMiB(context.pid);
      await context.meter.lap();
      alone.push(...(await sendInTurn(context.url, [probe])));
      const growthMiB = (await context.meter.lap()) - before;
      const bodyMiB = probe.body.length / MIB;
      notes.push(`${probe.label}: ${round(bodyMiB)} MiB body, peak ${round(growthMiB)} MiB over before (${round(growthMiB - bodyMiB)} MiB beyond the body)`);
      figures[`peakGrowthMiB${index}`] = round(growthMiB);
    }
    const attack = await alongside(context, () => sendInTurn(context.url, probes));
    return report({ shots: [...alone, ...attack.shots], during: attack.during }, { notes, figures });
  },
};

const CONCURRENT_UPLOADS = 8;

/** More 40 MP uploads than the queue holds: the surplus must be refused at once, not decoded. */
const concurrentBig: Scenario = {
  name: 'concurrent-big',
  summary: `${CONCURRENT_UPLOADS} concurrent 8000×5000 JPEG uploads with format=png`,
  images: ['photo40mp'],
  budgetMs: 300_000,
  run: (context) => {
    const probe = raw('8000×5000 JPEG format=png', context.images.get('photo40mp'), [['format', 'png']], [200, 503, 413]);
    return alongside(context, () => sendAtOnce(context.url, Array.from({ length: CONCURRENT_UPLOADS }, () => probe))).then((attack) => report(attack));
  },
};

export const SCENARIOS: readonly Scenario[] = [warmupFlood, outputAmplification, paramErrors, ambiguity, tarpit, parseCost, concurrentBig];
