/**
 * A small seeded mutation fuzzer for /remove-background: valid JPEG, PNG and
 * multipart bodies damaged in ways parsers trip on (bit flips biased to the
 * headers, overwritten size fields, truncation, splices of two bodies,
 * duplicated or removed ranges, damaged multipart framing, wrong
 * Content-Types). Used by test/fuzz.test.ts (a few dozen cases) and
 * `npm run fuzz` (thousands, against the server as its own process).
 */
import sharp from 'sharp';
import { type Answer, judgeAnswer, receive } from './answers';
import { multipartBody, postBody, TEST_BOUNDARY } from './http';
import { fixture } from './images';
import { seededRandom } from './random';

export interface FuzzCase {
  index: number;
  /** The seed body and the mutations applied, e.g. "png: flip×3(header), truncate". */
  name: string;
  body: Buffer;
  contentType: string | undefined;
}

interface SeedImage {
  name: string;
  bytes: Buffer;
  contentType: string;
}

type Random = () => number;

/** Where decoders read sizes, markers and chunk lengths; most interesting damage lands here. */
const HEADER_BYTES = 1024;

const CONTENT_TYPES: readonly (string | undefined)[] = [
  'image/jpeg',
  'image/png',
  'application/octet-stream',
  'multipart/form-data',
  'multipart/form-data; boundary=',
  `multipart/form-data; boundary=${TEST_BOUNDARY}x`,
  'text/plain',
  'image/svg+xml',
  undefined,
];

/** Small inputs: a mutated image that still decodes costs one inference (~2 s here) whatever its size. */
export async function fuzzSeedImages(): Promise<SeedImage[]> {
  const car = fixture('car-1.jpg');
  const small = sharp(car).resize(160, 120);
  return [
    { name: 'jpeg', bytes: await small.clone().jpeg({ quality: 80 }).toBuffer(), contentType: 'image/jpeg' },
    { name: 'progressive-jpeg', bytes: await small.clone().jpeg({ quality: 80, progressive: true }).toBuffer(), contentType: 'image/jpeg' },
    { name: 'png', bytes: await small.clone().png().toBuffer(), contentType: 'image/png' },
    { name: 'png-alpha', bytes: await small.clone().ensureAlpha(0.5).png().toBuffer(), contentType: 'image/png' },
  ];
}

const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const below = (random: Random, limit: number): number => Math.floor(random() * Math.max(1, limit));

function flipBits(random: Random, body: Buffer): [Buffer, string] {
  const out = Buffer.from(body);
  const inHeader = random() < 0.7;
  const span = inHeader ? Math.min(out.length, HEADER_BYTES) : out.length;
  const flips = 1 + below(random, 8);
  for (let flip = 0; flip < flips && span > 0; flip += 1) out[below(random, span)]! ^= 1 << below(random, 8);
  return [out, `flip×${flips}(${inHeader ? 'header' : 'anywhere'})`];
}

/** Values that break size arithmetic: zero, one, all ones, sign bits. */
function overwriteWithExtreme(random: Random, body: Buffer): [Buffer, string] {
  const out = Buffer.from(body);
  const extremes = [[0, 0], [0, 1], [0xff, 0xff], [0x7f, 0xff], [0x80, 0x00], [0xff, 0xfe]] as const;
  const value = pick(random, extremes);
  const at = below(random, Math.min(out.length, 64) - 1);
  if (out.length >= 2) out.set(value, at);
  return [out, `extreme@${at}`];
}

function truncate(random: Random, body: Buffer): [Buffer, string] {
  const at = random() < 0.5 ? below(random, Math.min(body.length, HEADER_BYTES)) : below(random, body.length);
  return [body.subarray(0, at), `truncate@${at}`];
}

function duplicateRange(random: Random, body: Buffer): [Buffer, string] {
  const from = below(random, body.length);
  const length = 1 + below(random, Math.min(4096, body.length - from));
  const at = below(random, body.length);
  return [Buffer.concat([body.subarray(0, at), body.subarray(from, from + length), body.subarray(at)]), `dup${length}@${at}`];
}

function removeRange(random: Random, body: Buffer): [Buffer, string] {
  const from = below(random, body.length);
  const length = 1 + below(random, Math.min(4096, body.length - from));
  return [Buffer.concat([body.subarray(0, from), body.subarray(from + length)]), `cut${length}@${from}`];
}

function splice(random: Random, body: Buffer, other: Buffer): [Buffer, string] {
  const at = below(random, body.length);
  const from = below(random, other.length);
  return [Buffer.concat([body.subarray(0, at), other.subarray(from)]), `splice@${at}+${from}`];
}

const BYTE_MUTATIONS = [flipBits, flipBits, overwriteWithExtreme, truncate, duplicateRange, removeRange] as const;

function mutateBytes(random: Random, body: Buffer, others: readonly SeedImage[]): [Buffer, string[]] {
  let out = body;
  const applied: string[] = [];
  const count = 1 + below(random, 3);
  for (let step = 0; step < count && out.length > 0; step += 1) {
    const [next, label] = random() < 0.15 ? splice(random, out, pick(random, others).bytes) : pick(random, BYTE_MUTATIONS)(random, out);
    out = next;
    applied.push(label);
  }
  return [out, applied];
}

/** Damage to the multipart framing itself: boundaries, header lines, CRLFs, the closing delimiter. */
function damageFraming(random: Random, body: Buffer): [Buffer, string] {
  const text = body.toString('latin1');
  const boundaries = [...text.matchAll(new RegExp(`--${TEST_BOUNDARY}`, 'g'))].map((match) => match.index);
  const damages: [string, () => string][] = [
    ['boundary-typo', () => { const at = pick(random, boundaries) + 2 + below(random, TEST_BOUNDARY.length); return text.slice(0, at) + 'X' + text.slice(at + 1); }],
    ['no-closing', () => text.slice(0, text.lastIndexOf(`--${TEST_BOUNDARY}--`))],
    ['no-header-gap', () => text.replace('\r\n\r\n', '\r\n')],
    ['lf-only', () => text.replaceAll('\r\n', '\n')],
    ['bad-disposition', () => text.replace('form-data; name="image"', pick(random, ['form-data; name=', 'attachment', 'form-data; name="image"; filename*=UTF-8\'\'%ff%fe', '']))],
    ['header-flood', () => text.replace('\r\n\r\n', `\r\n${'X-Junk: y\r\n'.repeat(2000)}\r\n`)],
    ['nested-boundary', () => text.replace(`--${TEST_BOUNDARY}\r\n`, `--${TEST_BOUNDARY}\r\n--${TEST_BOUNDARY}\r\n`)],
  ];
  const [label, damage] = pick(random, damages);
  return [Buffer.from(damage(), 'latin1'), label];
}

/**
 * The `count` cases for `seed`; the same arguments give the same bytes on
 * every run, so a failing case can be replayed by its index.
 */
export function* fuzzCases(images: readonly SeedImage[], seed: number, count: number): Generator<FuzzCase> {
  const random = seededRandom(seed);
  for (let index = 0; index < count; index += 1) {
    const image = pick(random, images);
    const asForm = random() < 0.4;
    const labels: string[] = [];
    let body: Buffer;
    let contentType: string | undefined;
    if (asForm && random() < 0.5) {
      const form = multipartBody([{ name: 'image', filename: `x.${image.name}`, data: image.bytes }]);
      const [damaged, label] = damageFraming(random, form.body);
      [body, contentType] = [damaged, form.contentType];
      labels.push(label);
    } else {
      const [mutated, applied] = mutateBytes(random, image.bytes, images);
      labels.push(...applied);
      if (asForm) ({ body, contentType } = multipartBody([{ name: 'image', filename: `x.${image.name}`, data: mutated }]));
      else [body, contentType] = [mutated, image.contentType];
    }
    if (random() < 0.1) {
      contentType = pick(random, CONTENT_TYPES);
      labels.push(`content-type ${contentType ?? '(none)'}`);
    }
    yield { index, name: `${asForm ? 'form/' : ''}${image.name}: ${labels.join(', ')}`, body, contentType };
  }
}

export interface FuzzFinding {
  index: number;
  name: string;
  problem: string;
}

export interface FuzzReport {
  cases: number;
  byStatus: Record<string, number>;
  /** Answers that were neither a proper cutout nor a documented error, and requests never answered. */
  findings: FuzzFinding[];
  ms: number;
}

/** Sends every case with `concurrency` in flight and judges each answer; none starts after `deadline` (performance.now()). */
export async function runFuzz(
  url: string,
  cases: Iterable<FuzzCase>,
  options: { concurrency: number; deadline?: number; onAnswer?: (report: FuzzReport) => void },
): Promise<FuzzReport> {
  const started = performance.now();
  const report: FuzzReport = { cases: 0, byStatus: {}, findings: [], ms: 0 };
  const iterator = cases[Symbol.iterator]();
  const worker = async (): Promise<void> => {
    for (let next = iterator.next(); !next.done && performance.now() < (options.deadline ?? Infinity); next = iterator.next()) {
      const fuzzCase = next.value;
      let answer: Answer | null = null;
      let problem: string | null;
      try {
        answer = await receive(await postBody(url, fuzzCase.body, fuzzCase.contentType));
        problem = await judgeAnswer(answer, { anything: true });
      } catch (error) {
        const cause = (error as Error).cause as Error | undefined;
        problem = `no answer: ${(error as Error).message}${cause ? ` (${cause.message})` : ''}`;
      }
      const status = answer?.status ?? 'none';
      report.cases += 1;
      report.byStatus[status] = (report.byStatus[status] ?? 0) + 1;
      if (problem) report.findings.push({ index: fuzzCase.index, name: fuzzCase.name, problem });
      options.onAnswer?.(report);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  report.ms = performance.now() - started;
  return report;
}
