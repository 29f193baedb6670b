import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { BatchReporter, DownloadReporter, type OutputStream } from '../functions/cli/progress';
import { wildcardPattern } from '../functions/cli/inputs';
import { PROJECT_ROOT } from '../functions/paths';
import { parseRemovalOptions } from '../functions/request/options';
import { assertCutout, BIN, detourage, exists } from './support/cli';
import { readZip } from './support/zip';
import { fixture } from '../tools/lib/images';

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function parserMessage(parameters: Record<string, string>): string {
  try {
    parseRemovalOptions(parameters);
  } catch (error) {
    return (error as Error).message;
  }
  assert.fail(`parseRemovalOptions accepted ${JSON.stringify(parameters)}`);
}

let workDir: string;

before(async () => {
  workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'detourage-cli-'));
});
after(async () => {
  await fs.rm(workDir, { recursive: true, force: true });
});

async function freshDir(name: string, files: Record<string, Buffer | string>): Promise<string> {
  const dir = path.join(workDir, name);
  await fs.mkdir(dir, { recursive: true });
  for (const [file, content] of Object.entries(files)) await fs.writeFile(path.join(dir, file), content);
  return dir;
}

test('--version prints package.json version; --help on every command', async () => {
  const manifest = JSON.parse(await fs.readFile(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  const version = await detourage(['--version']);
  assert.deepEqual([version.code, version.stdout.toString()], [0, `${manifest.version}\n`]);

  const help = await detourage(['--help']);
  assert.equal(help.code, 0);
  for (const command of ['remove', 'models', 'serve']) assert.match(help.stdout.toString(), new RegExp(`^  ${command} `, 'm'));
  assert.match(help.stdout.toString(), /Exit codes: 0 .* 1 .* 2 usage error;\s+78 bad configuration/s);

  for (const args of [['remove', '--help'], ['models', '--help'], ['models', 'list', '--help'], ['models', 'fetch', '-h'], ['serve', '--help']]) {
    const run = await detourage(args);
    assert.equal(run.code, 0, args.join(' '));
    assert.match(run.stdout.toString(), /^Usage: detourage /, args.join(' '));
  }

  const bare = await detourage([]);
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /^Usage: detourage/);
  const unknown = await detourage(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
});

test('remove FILE writes NAME.cutout.png beside it, with alpha', async () => {
  const dir = await freshDir('single', { 'car-1.jpg': fixture('car-1.jpg') });
  const run = await detourage(['remove', path.join(dir, 'car-1.jpg')]);
  assert.equal(run.code, 0, run.stderr);
  const output = path.join(dir, 'car-1.cutout.png');
  assert.match(run.stderr, new RegExp(`^ok ${path.join(dir, 'car-1.jpg')} → ${output} \\(\\d+ ms\\)\\n$`));
  await assertCutout(await fs.readFile(output));
});

test('remove takes the API\'s parameters: crop, bg-color, size and refine to a JPEG; channels alpha and a zip', async () => {
  const dir = await freshDir('parameters', { 'plants-1.jpg': fixture('plants-1.jpg') });
  const input = path.join(dir, 'plants-1.jpg');
  const cropped = await detourage(['remove', input, '-o', path.join(dir, 'crop.jpg'), '--crop', '--bg-color', 'white', '--size', 'preview', '--refine']);
  assert.equal(cropped.code, 0, cropped.stderr);
  const jpeg = await sharp(await fs.readFile(path.join(dir, 'crop.jpg'))).metadata();
  assert.equal(jpeg.format, 'jpeg');
  assert.ok(jpeg.width * jpeg.height <= 250_000, `${jpeg.width}x${jpeg.height} fits size=preview`);
  const matte = await detourage(['remove', input, '--channels', 'alpha', '-p', 'quality=fast']);
  assert.equal(matte.code, 0, matte.stderr);
  const mask = await sharp(await fs.readFile(path.join(dir, 'plants-1.mask.png'))).metadata();
  assert.deepEqual([mask.channels, mask.width, mask.height], [1, 987, 1481]);
  const zipped = await detourage(['remove', input, '--format', 'zip', '-o', path.join(dir, 'out.zip')]);
  assert.equal(zipped.code, 0, zipped.stderr);
  assert.deepEqual([...readZip(await fs.readFile(path.join(dir, 'out.zip'))).keys()], ['color.jpg', 'alpha.png']);
  const refused = await detourage(['remove', input, '-p', 'image_url=http://example.com/x.jpg']);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /image_url is an HTTP parameter/);
});

test('remove - reads stdin and writes the PNG alone to stdout', async () => {
  const run = await detourage(['remove', '-'], { input: fixture('plants-1.jpg') });
  assert.equal(run.code, 0, run.stderr);
  assert.ok(run.stdout.subarray(0, 8).equals(PNG_SIGNATURE), 'stdout is not a PNG');
  const input = await sharp(fixture('plants-1.jpg')).metadata();
  const output = await sharp(run.stdout).metadata();
  assert.deepEqual([output.width, output.height], [input.width, input.height]);
  await assertCutout(run.stdout);
});

test('a folder batch goes past a bad file, writes the others, reports plain lines and exits 1', async () => {
  const dir = await freshDir('batch', {
    'car-1.jpg': fixture('car-1.jpg'),
    'cloth-1.jpg': fixture('cloth-1.jpg'),
    'broken.jpg': 'this is text, not a JPEG',
    'notes.txt': 'not an image name: a folder scan skips it',
    'car-0.cutout.png': 'an earlier output: a folder scan skips it',
  });
  const out = path.join(workDir, 'batch-out', 'nested');
  const run = await detourage(['remove', dir, '-o', out]);
  assert.equal(run.code, 1, run.stderr);

  assert.ok(!run.stderr.includes('\r') && !run.stderr.includes('\x1b'), 'not a terminal: no carriage returns or escape codes');
  const lines = run.stderr.trimEnd().split('\n');
  assert.deepEqual(
    lines.map((line) => line.replace(/\(\d+ ms\)/, '(N ms)').replace(/in \d+s \([\d.]+ img\/s\)/, 'in Ns (N img/s)')),
    [
      `FAILED ${path.join(dir, 'broken.jpg')}: ${'The upload is not an image in a supported format (JPEG, PNG, WebP, AVIF, GIF or TIFF).'}`,
      `ok ${path.join(dir, 'car-1.jpg')} → ${path.join(out, 'car-1.png')} (N ms)`,
      `ok ${path.join(dir, 'cloth-1.jpg')} → ${path.join(out, 'cloth-1.png')} (N ms)`,
      '2 ok, 1 failed, 3 of 3 in Ns (N img/s)',
    ],
  );
  assert.deepEqual((await fs.readdir(out)).sort(), ['car-1.png', 'cloth-1.png']);
  await assertCutout(await fs.readFile(path.join(out, 'car-1.png')));
});

test('a quoted pattern is expanded; one that matches nothing is a failure', async () => {
  const dir = await freshDir('pattern', { 'a.txt': 'text', 'b.txt': 'more text', 'c.md': 'other' });
  const run = await detourage(['remove', path.join(dir, '*.txt'), path.join(dir, 'z?.jpg'), '-o', path.join(workDir, 'pattern-out')]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, new RegExp(`^FAILED ${path.join(dir, 'z?.jpg').replace(/[?.]/g, '\\$&')}: no file matches$`, 'm'));
  assert.match(run.stderr, /^FAILED .*a\.txt: The upload is not an image/m);
  assert.match(run.stderr, /^FAILED .*b\.txt: The upload is not an image/m);
  assert.doesNotMatch(run.stderr, /c\.md/);
});

test('an existing output is kept without --force and replaced with it', async () => {
  const dir = await freshDir('force', { 'car-1.jpg': fixture('car-1.jpg'), 'car-1.cutout.png': 'precious' });
  const output = path.join(dir, 'car-1.cutout.png');
  const refused = await detourage(['remove', path.join(dir, 'car-1.jpg')]);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, new RegExp(`^FAILED .*car-1\\.jpg: ${output} already exists \\(--force overwrites it\\)$`, 'm'));
  assert.equal(await fs.readFile(output, 'utf8'), 'precious');

  const forced = await detourage(['remove', path.join(dir, 'car-1.jpg'), '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  await assertCutout(await fs.readFile(output));
});

test('--format jpeg --bg-color ff0000 composites onto red', async () => {
  const dir = await freshDir('jpeg', { 'car-1.jpg': fixture('car-1.jpg') });
  const run = await detourage(['remove', path.join(dir, 'car-1.jpg'), '--format', 'jpeg', '--bg-color', 'ff0000']);
  assert.equal(run.code, 0, run.stderr);
  const { data, info } = await sharp(await fs.readFile(path.join(dir, 'car-1.cutout.jpg'))).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  // The top-left corner is background in car-1.
  const [red, green, blue] = data.subarray(0, 3);
  assert.ok(red! > 240 && green! < 15 && blue! < 15, `corner is ${red},${green},${blue}`);
});

test('a bad option value exits 2 with the API parser message, before any work', async () => {
  const input = path.join(PROJECT_ROOT, 'test', 'fixtures', 'car-1.jpg');
  const cases: [string[], Record<string, string>][] = [
    [['--format', 'gif'], { format: 'gif' }],
    [['--bg-color', 'reddish'], { bg_color: 'reddish' }],
    [['--type', 'outline'], { type: 'outline' }],
    [['-p', 'format=bmp'], { format: 'bmp' }],
  ];
  for (const [flags, parameters] of cases) {
    const run = await detourage(['remove', input, '-o', path.join(workDir, 'never.png'), ...flags]);
    assert.equal(run.code, 2, flags.join(' '));
    assert.equal(run.stderr.split('\n')[0], `detourage remove: ${parserMessage(parameters)}`);
  }
  assert.equal(await exists(path.join(workDir, 'never.png')), false);

  const unknownFlag = await detourage(['remove', input, '--colour', 'red']);
  assert.equal(unknownFlag.code, 2);
  assert.match(unknownFlag.stderr, /Unknown option '--colour'/);
  const unknownModel = await detourage(['remove', input, '--model', 'nope']);
  assert.equal(unknownModel.code, 2);
  assert.match(unknownModel.stderr, /MODEL "nope" is not in the registry/);
});

test('a bad environment exits 78, as the server does', async () => {
  const run = await detourage(['remove', 'whatever.jpg'], { env: { MAX_INPUT_PIXELS: 'lots' } });
  assert.equal(run.code, 78);
  assert.match(run.stderr, /MAX_INPUT_PIXELS must be a positive integer/);
});

test('missing weights stop the run with exit 1 and say how to fetch them', async () => {
  const modelsDir = await freshDir('no-models', {});
  const dir = await freshDir('no-model-inputs', { 'a.jpg': fixture('car-1.jpg'), 'b.jpg': fixture('cloth-1.jpg') });
  const run = await detourage(['remove', dir], { env: { MODELS_DIR: modelsDir } });
  assert.equal(run.code, 1);
  assert.match(run.stderr, /^detourage remove: The weights of model isnet-fp32 are missing .* detourage models fetch isnet-fp32$/m);
  assert.equal(run.stderr.split('\n').length, 2, 'one line, then the run stops');
  assert.deepEqual((await fs.readdir(dir)).sort(), ['a.jpg', 'b.jpg']);

  const list = await detourage(['models', 'list'], { env: { MODELS_DIR: modelsDir } });
  assert.match(list.stdout.toString(), /^isnet-fp32 \(default\)\s+1024²\s+176 MB\s+derived\s+no$/m);
});

test('models list shows the registry and that the default and its base are downloaded', async () => {
  const run = await detourage(['models', 'list']);
  assert.equal(run.code, 0, run.stderr);
  const text = run.stdout.toString();
  assert.match(text, /^name\s+input\s+size\s+source\s+downloaded$/m);
  assert.match(text, /^isnet-fp32 \(default\)\s+1024²\s+176 MB\s+derived\s+yes$/m);
  assert.match(text, /^isnet-fp16\s+1024²\s+88 MB\s+npm-tarball\s+yes$/m);
  assert.match(text, /^u2netp\s+320²\s+\S+\s+url\s+(yes|no)$/m);

  const json = JSON.parse((await detourage(['models', 'list', '--json'])).stdout.toString()) as {
    default: string;
    models: { name: string; downloaded: string }[];
  };
  assert.equal(json.default, 'isnet-fp32');
  assert.equal(json.models.find((model) => model.name === 'isnet-fp16')?.downloaded, 'yes');
});

test('models fetch isnet-fp16 verifies and reports the weights present', async () => {
  const run = await detourage(['models', 'fetch', 'isnet-fp16']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout.toString(), `isnet-fp16: present ${path.join(PROJECT_ROOT, 'models', 'isnet-fp16.onnx')}\n`);
  const unknown = await detourage(['models', 'fetch', 'nope']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown model "nope" \(known: isnet-fp32, isnet-fp16, /);
});

test('serve runs the local server and leaves with 0 on SIGTERM', async () => {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    const match = /listening on http:\/\/localhost:(\d+)/.exec(line.toString());
    assert.ok(match, line.toString());
    const health = (await (await fetch(`http://127.0.0.1:${match[1]}/health`)).json()) as { status: string };
    assert.equal(health.status, 'ok');
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

/** A stand-in terminal: records what is written, control characters spelt out. */
function fakeTerminal(): OutputStream & { text: string } {
  return {
    isTTY: true,
    columns: 100,
    text: '',
    write(chunk: string) {
      this.text += chunk;
      return true;
    },
  };
}

test('on a terminal the batch shows a redrawn bar with count, rate and ETA', () => {
  let now = 0;
  const terminal = fakeTerminal();
  const reporter = new BatchReporter(terminal, 4, { now: () => now });
  reporter.started('a.jpg');
  now = 2000;
  reporter.succeeded('a.jpg', 'out/a.png', 2000);
  reporter.started('b.jpg');
  now = 4000;
  reporter.failed('b.jpg', 'not an image');
  const outcome = reporter.finish();
  assert.deepEqual(outcome, { succeeded: 1, skipped: 0, failed: 1 });
  const screen = terminal.text.replaceAll('\r', '<CR>').replaceAll('\x1b', '<ESC>');
  assert.match(screen, /<CR><ESC>\[K\[█{6}░{18}\] 1\/4 {2}0\.50 img\/s {2}ETA 6s {2}a\.jpg/);
  assert.match(screen, /<CR><ESC>\[Kok a\.jpg → out\/a\.png \(2000 ms\)\n/);
  assert.match(screen, /<CR><ESC>\[KFAILED b\.jpg: not an image\n/);
  assert.match(screen, /\[█{12}░{12}\] 2\/4 {2}0\.50 img\/s {2}ETA 4s {2}1 failed {2}b\.jpg/);
  assert.ok(screen.endsWith('<CR><ESC>[K1 ok, 1 failed, 2 of 4 in 4s (0.50 img/s)\n'), screen.slice(-80));
});

test('a resumed run: skipped inputs count as done but not in the rate; retrying inputs are counted on the bar, and each retry is a line in a log', () => {
  let now = 0;
  const terminal = fakeTerminal();
  const reporter = new BatchReporter(terminal, 4, { now: () => now });
  reporter.skipped('a.jpg', 'out/a.png');
  reporter.skipped('b.jpg', 'out/b.png');
  reporter.started('c.jpg');
  reporter.retried('c.jpg', '503 overloaded, again in 5.1 s (attempt 2)');
  now = 2000;
  reporter.succeeded('c.jpg', 'out/c.png', 2000);
  assert.deepEqual(reporter.finish(), { succeeded: 1, skipped: 2, failed: 0 });
  const screen = terminal.text.replaceAll('\r', '<CR>').replaceAll('\x1b', '<ESC>');
  assert.match(screen, /^skip a\.jpg → out\/a\.png \(exists\)\n/);
  assert.match(screen, /\] 2\/4 {2}0\.00 img\/s {2}ETA \? {2}1 retrying {2}c\.jpg/);
  assert.doesNotMatch(screen, /retry c\.jpg/, 'on a terminal the bar counts retries');
  assert.match(screen, /\] 3\/4 {2}0\.50 img\/s {2}ETA 2s {2}c\.jpg/, 'one image in 2 s: the skipped two took no time');
  assert.ok(screen.endsWith('1 ok, 2 skipped, 0 failed, 3 of 4 in 2s (0.50 img/s)\n'), screen.slice(-80));

  const log: OutputStream & { text: string } = { ...fakeTerminal(), isTTY: false };
  const plain = new BatchReporter(log, 2, { now: () => now });
  plain.retried('c.jpg', '503 overloaded, again in 5.1 s (attempt 2)');
  plain.failed('c.jpg', 'The service is busy.');
  assert.equal(log.text, 'retry c.jpg: 503 overloaded, again in 5.1 s (attempt 2)\nFAILED c.jpg: The service is busy.\n');
});

test('on a terminal a download shows bytes, rate and ETA; elsewhere nothing per chunk', () => {
  let now = 0;
  const terminal = fakeTerminal();
  const reporter = new DownloadReporter(terminal, () => now);
  reporter.progress({ model: 'isnet-fp16', receivedBytes: 0, totalBytes: 100e6 });
  now = 2000;
  reporter.progress({ model: 'isnet-fp16', receivedBytes: 20e6, totalBytes: 100e6 });
  reporter.finish();
  assert.match(terminal.text, /isnet-fp16 {2}\[█{5}░{19}\] 20 MB \/ 100 MB {2}10 MB\/s {2}ETA 8s/);

  const log: OutputStream & { text: string } = { ...fakeTerminal(), isTTY: false };
  const plain = new DownloadReporter(log, () => now);
  plain.progress({ model: 'isnet-fp16', receivedBytes: 20e6, totalBytes: 100e6 });
  plain.log('fetch: source 1 failed');
  plain.finish();
  assert.equal(log.text, 'fetch: source 1 failed\n');
});

test('wildcards: * and ? over the whole name, everything else literal', () => {
  const pattern = wildcardPattern('shot-?.(1)*.jpg');
  assert.ok(pattern.test('shot-a.(1).jpg'));
  assert.ok(pattern.test('shot-b.(1)-final.jpg'));
  assert.ok(!pattern.test('shot-ab.(1).jpg'));
  assert.ok(!pattern.test('shot-a.(1).jpeg'));
  assert.ok(!pattern.test('xshot-a.(1).jpg'));
});
