import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { PROJECT_ROOT } from '../../functions/paths';
import { alphaChannel } from '../../tools/lib/images';

export const BIN = path.join(PROJECT_ROOT, 'bin', 'detourage');

export interface CliRun {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

export interface CliOptions {
  cwd?: string;
  input?: Buffer;
  env?: Record<string, string>;
  /** Called once the process has started, e.g. to signal it. */
  started?: (child: ReturnType<typeof spawn>) => void;
}

/** The real CLI as its own process, stdin/stdout/stderr all pipes (so not a terminal). */
export async function detourage(args: string[], options: CliOptions = {}): Promise<CliRun> {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? PROJECT_ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  child.stdin.end(options.input);
  options.started?.(child);
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString() };
}

export async function exists(filePath: string): Promise<boolean> {
  return fs.access(filePath).then(
    () => true,
    () => false,
  );
}

/** A real cutout: some pixels fully transparent, some (nearly: the matte rarely reaches 255) opaque. */
export async function assertCutout(image: Buffer): Promise<void> {
  assert.equal((await sharp(image).metadata()).channels, 4);
  const alpha = (await alphaChannel(image)).data;
  assert.ok(alpha.includes(0), 'no transparent pixel');
  assert.ok(alpha.some((value) => value >= 250), 'no opaque pixel');
}
