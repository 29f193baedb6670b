/**
 * Where each input's result goes (beside it, into a folder, to the one file
 * -o names, or to standard output) and under what name; and which outputs may
 * not be written: one already there without --force, or one an earlier input
 * of the same run writes.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { type Channels, FILE_EXTENSIONS as EXTENSIONS, type OutputFormat } from '../pipeline/types';
import { UsageError } from './args';
import { type InputFile, isFolderTarget, isSingleFile } from './inputs';

/** `-` on the command line: standard input as the input, standard output as -o. */
export const STDIO = '-';

/** What an output's name is made from: the CLI always knows its format before it runs. */
export interface OutputEncoding {
  format: OutputFormat;
  channels: Channels;
}

export type OutputTarget =
  | { kind: 'beside' }
  | { kind: 'folder'; path: string }
  | { kind: 'file'; path: string }
  | { kind: 'stdout' };

/** One input and where its result goes. */
export interface Job {
  /** For messages. */
  label: string;
  input: InputFile | typeof STDIO;
  /** A path, or STDIO for standard output. */
  output: string;
}

const FORMAT_BY_EXTENSION: Readonly<Record<string, OutputFormat>> = {
  '.png': 'png',
  '.webp': 'webp',
  '.jpg': 'jpeg',
  '.jpeg': 'jpeg',
  '.zip': 'zip',
};

/** The format a file name's extension stands for, if it stands for one. */
export function formatOfFileName(file: string): OutputFormat | undefined {
  return FORMAT_BY_EXTENSION[path.extname(file).toLowerCase()];
}

async function exists(filePath: string): Promise<boolean> {
  try {
    await fs.access(filePath);
    return true;
  } catch {
    return false;
  }
}

export async function chooseTarget(inputs: readonly string[], output: string | undefined): Promise<OutputTarget> {
  const fromStdin = inputs.includes(STDIO);
  if (fromStdin && inputs.length > 1) throw new UsageError('"-" (standard input) cannot be combined with other inputs');
  const single = fromStdin || (await isSingleFile(inputs));
  if (output === undefined) return fromStdin ? { kind: 'stdout' } : { kind: 'beside' };
  if (output === STDIO) {
    if (!single) throw new UsageError('-o - (standard output) takes a single input');
    return { kind: 'stdout' };
  }
  if (await isFolderTarget(output)) return { kind: 'folder', path: output };
  if (single) return { kind: 'file', path: output };
  if (!(await exists(output)) && formatOfFileName(output) === undefined) {
    return { kind: 'folder', path: output };
  }
  throw new UsageError(`-o ${output} names a file, but several inputs (or a folder, or a pattern) need an output folder`);
}

function outputName(input: string, encoding: OutputEncoding, suffix: boolean): string {
  const stem = path.basename(input, path.extname(input));
  const extension = EXTENSIONS[encoding.format];
  return suffix ? `${stem}.${encoding.channels === 'alpha' ? 'mask' : 'cutout'}.${extension}` : `${stem}.${extension}`;
}

export function planJob(input: InputFile | typeof STDIO, target: OutputTarget, encoding: OutputEncoding): Job {
  const label = input === STDIO ? 'stdin' : input.path;
  switch (target.kind) {
    case 'stdout':
      return { label, input, output: STDIO };
    case 'file':
      return { label, input, output: target.path };
    case 'folder': {
      const output =
        input === STDIO
          ? path.join(target.path, `stdin.${EXTENSIONS[encoding.format]}`)
          : path.join(target.path, input.subdirectory, outputName(input.path, encoding, false));
      return { label, input, output };
    }
    case 'beside':
      if (input === STDIO) throw new Error('standard input always has a target');
      return { label, input, output: path.join(path.dirname(input.path), outputName(input.path, encoding, true)) };
  }
}

export function alreadyExists(output: string): string {
  return `${output} already exists (--force overwrites it)`;
}

/** Whether a job may write its output: `exists` is an output already there, with --force off. */
export type Claim = { result: 'free' } | { result: 'exists' } | { result: 'refused'; message: string };

/**
 * Which outputs may be written. Checked before the work so that a re-run
 * passes over finished images in a moment; the write itself checks again
 * (atomicWrite.ts), for an output that appears meanwhile.
 */
export class OutputClaims {
  /** Each output path, resolved, by the label of the job that writes it. */
  private readonly writers = new Map<string, string>();

  constructor(private readonly force: boolean) {}

  async claim(job: Job): Promise<Claim> {
    const key = job.output === STDIO ? STDIO : path.resolve(job.output);
    const earlier = this.writers.get(key);
    if (earlier !== undefined) return { result: 'refused', message: `${job.output} is already the output of ${earlier}` };
    // Taken before the check below awaits, so that jobs claimed side by side still see each other.
    this.writers.set(key, job.label);
    if (job.output !== STDIO && !this.force && (await exists(job.output))) return { result: 'exists' };
    return { result: 'free' };
  }
}
