/**
 * The CLI's outputs without the model: their names and claims (cli/outputs.ts)
 * and their writing (cli/atomicWrite.ts). test/cli.test.ts runs the whole
 * command; these are the cases it cannot provoke, such as a write that fails
 * half-way.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { writeFileAtomically } from '../functions/cli/atomicWrite';
import { type Job, OutputClaims, planJob, STDIO } from '../functions/cli/outputs';
import { PROJECT_ROOT } from '../functions/paths';

const BODY = Buffer.from('the whole image');

let workDir: string;

before(async () => {
  workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'detourage-outputs-'));
});
after(async () => {
  await fs.rm(workDir, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const dir = path.join(workDir, name);
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

test('an atomic write creates the folders and leaves only the output, no temporary file', async () => {
  const dir = await freshDir('written');
  const output = path.join(dir, 'sub', 'car.png');
  await writeFileAtomically(output, BODY, false);
  assert.deepEqual(await fs.readFile(output), BODY);
  assert.deepEqual(await fs.readdir(path.dirname(output)), ['car.png']);
});

test('without overwrite an existing output is kept as it was and the write fails with EEXIST', async () => {
  const dir = await freshDir('kept');
  const output = path.join(dir, 'car.png');
  await fs.writeFile(output, 'earlier');
  await assert.rejects(writeFileAtomically(output, BODY, false), { code: 'EEXIST' });
  assert.equal(await fs.readFile(output, 'utf8'), 'earlier');
  assert.deepEqual(await fs.readdir(dir), ['car.png']);
  await writeFileAtomically(output, BODY, true);
  assert.deepEqual(await fs.readFile(output), BODY);
  assert.deepEqual(await fs.readdir(dir), ['car.png']);
});

test('a failed move leaves what was there and no temporary file', async () => {
  const dir = await freshDir('moved');
  const output = path.join(dir, 'car.png');
  await fs.mkdir(output);
  await assert.rejects(writeFileAtomically(output, BODY, true));
  assert.ok((await fs.stat(output)).isDirectory());
  assert.deepEqual(await fs.readdir(dir), ['car.png']);
});

test('a write that fails half-way (the file size limit) leaves neither a partial output nor a temporary file', async () => {
  const dir = await freshDir('half');
  const output = path.join(dir, 'car.png');
  const atomicWrite = path.join(PROJECT_ROOT, 'dist', 'functions', 'cli', 'atomicWrite.js');
  // `ulimit -f 1` caps files at 1 KiB: Node ignores SIGXFSZ, so the write fails with EFBIG after its first kibibyte.
  const script = `require(process.argv[1]).writeFileAtomically(process.argv[2], Buffer.alloc(64 * 1024), false).then(
    () => console.log('written'),
    (error) => console.log(error.code),
  );`;
  const { stdout } = await promisify(execFile)('/bin/sh', ['-c', 'ulimit -f 1 && exec "$0" -e "$1" "$2" "$3"', process.execPath, script, atomicWrite, output]);
  assert.equal(stdout.trim(), 'EFBIG');
  assert.deepEqual(await fs.readdir(dir), []);
});

test('outputs beside the input, in a folder and from stdin are named by format and channels', () => {
  const input = { path: path.join('shots', 'car.jpeg'), subdirectory: '' };
  assert.equal(planJob(input, { kind: 'beside' }, { format: 'png', channels: 'rgba' }).output, path.join('shots', 'car.cutout.png'));
  assert.equal(planJob(input, { kind: 'beside' }, { format: 'jpeg', channels: 'alpha' }).output, path.join('shots', 'car.mask.jpg'));
  const nested = { path: path.join('shots', 'day', 'car.jpeg'), subdirectory: 'day' };
  assert.equal(planJob(nested, { kind: 'folder', path: 'out' }, { format: 'webp', channels: 'rgba' }).output, path.join('out', 'day', 'car.webp'));
  assert.deepEqual(planJob(STDIO, { kind: 'folder', path: 'out' }, { format: 'zip', channels: 'rgba' }), {
    label: 'stdin',
    input: STDIO,
    output: path.join('out', 'stdin.zip'),
  });
});

test('an output is refused when an earlier job writes it, and found to exist when it is there and force is off', async () => {
  const dir = await freshDir('claims');
  const existing = path.join(dir, 'old.png');
  await fs.writeFile(existing, 'earlier');
  const job = (label: string, output: string): Job => ({ label, input: { path: label, subdirectory: '' }, output });
  const claims = new OutputClaims(false);
  assert.deepEqual(await claims.claim(job('a.jpg', path.join(dir, 'a.png'))), { result: 'free' });
  // The same file by another name is the same output.
  const relative = path.relative(process.cwd(), path.join(dir, 'a.png'));
  assert.deepEqual(await claims.claim(job('a.webp', relative)), { result: 'refused', message: `${relative} is already the output of a.jpg` });
  assert.deepEqual(await claims.claim(job('old.jpg', existing)), { result: 'exists' });
  assert.deepEqual(await new OutputClaims(true).claim(job('old.jpg', existing)), { result: 'free' });
  // Claimed side by side, as an endpoint run claims them: the second still sees the first.
  const sideBySide = new OutputClaims(false);
  const [first, second] = await Promise.all([sideBySide.claim(job('b.jpg', path.join(dir, 'b.png'))), sideBySide.claim(job('b.webp', path.join(dir, 'b.png')))]);
  assert.deepEqual([first.result, second.result], ['free', 'refused']);
});
