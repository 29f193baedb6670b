import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createServices } from '../../app';
import type { Config } from '../../config';
import { ApiError } from '../../errors';
import { Logger } from '../../log';
import { resolveModel } from '../../model/selection';
import type { RemovalOptions } from '../../pipeline/options';
import type { OutputFormat } from '../../pipeline/types';
import { parseRemovalOptions } from '../../request/options';
import { checkParameterNames, PARAMETER_NAMES, parametersOfKind, parameterTable, type RequestParameters } from '../../request/parameters';
import { EXIT, expandBareFlags, loadConfigWith, parseCommandLine, UsageError } from '../args';
import { expandInputs, type InputFile, type InputProblem, isFolderTarget, isSingleFile } from '../inputs';
import { type BatchOutcome, BatchReporter } from '../progress';
import type { Command } from './command';

/** Flags that are HTTP parameters under the same name, `-` for `_`. */
const PARAMETER_FLAGS = ['format', 'type', 'bg-color', 'model', 'channels', 'crop', 'refine', 'size'] as const;
/** Flags that may be given without a value, meaning `true`. */
const BARE_TRUE_FLAGS = ['crop', 'refine'];

const OPTIONS = {
  output: { type: 'string', short: 'o' },
  force: { type: 'boolean', short: 'f' },
  recursive: { type: 'boolean', short: 'r' },
  quiet: { type: 'boolean', short: 'q' },
  param: { type: 'string', short: 'p', multiple: true },
  help: { type: 'boolean', short: 'h' },
  format: { type: 'string' },
  type: { type: 'string' },
  'bg-color': { type: 'string' },
  model: { type: 'string' },
  channels: { type: 'string' },
  crop: { type: 'string' },
  refine: { type: 'string' },
  size: { type: 'string' },
} as const;

const USAGE = `Usage: detourage remove <input...> [-o FILE|DIR] [options]

Removes the background of each input with the local model (loaded once for
the whole run) and writes the results.

Inputs:
  FILE            an image in any supported format (detected from its bytes)
  DIR             every image in the folder (.jpg .jpeg .png .webp .avif .gif
                  .tif .tiff); subfolders too with --recursive
  'DIR/*.jpg'     a pattern, * and ? in the file name (quote it, or let the
                  shell expand it)
  -               read one image from standard input

Folders and patterns skip hidden files and earlier outputs (*.cutout.*, *.mask.*).

Output:
  without -o      next to each input as NAME.cutout.EXT (NAME.mask.EXT for
                  --channels alpha), EXT from the format (png, webp, jpg, zip)
  -o DIR          into DIR (created if missing) as NAME.EXT; --recursive keeps
                  the subfolders
  -o FILE         one input only; a .png/.webp/.jpg/.zip name sets the format
  -o -            write to standard output (the default for input -)
  An existing output is never overwritten without --force: that input fails.

Parameters (the HTTP API's, checked by the same parser; see README "API"):
  --format png|jpeg|webp|zip  output format (default png; zip holds color.jpg
                              and alpha.png)
  --channels rgba|alpha       alpha: the matte alone as a grayscale image
  --bg-color COLOUR           composite onto a colour (ff0000, #f00, ff000080,
                              or a CSS name such as white)
  --model NAME                model to run (sets MODEL; see "detourage models list")
  --crop[=BOOL]               crop to the subject (margin: -p crop_margin=10%)
  --size VALUE                preview, medium, hd, 4k, full, or e.g. 2MP
  --refine[=BOOL]             refine edges and their colours
  -p, --param NAME=VALUE      any other parameter by its API name (scale,
                              position, roi, quality, post_process, type...)

Options:
  -f, --force                 overwrite existing outputs
  -r, --recursive             descend into subfolders of DIR inputs
  -q, --quiet                 print failures only
  -h, --help                  show this help

Progress goes to standard error: a bar on a terminal, otherwise one line per
input ("ok IN → OUT (MS ms)" or "FAILED IN: MESSAGE"). The run goes on past
a failed input and exits 1 if any failed.

Examples:
  detourage remove photo.jpg
  detourage remove photos/ -o cutouts/ --format webp
  detourage remove 'shots/*.jpg' -o out/ --bg-color ffffff --format jpeg
  cat photo.jpg | detourage remove - > cutout.png`;

const EXTENSIONS: Record<OutputFormat, string> = { png: 'png', webp: 'webp', jpeg: 'jpg', zip: 'zip' };
const FORMAT_BY_EXTENSION: Readonly<Record<string, OutputFormat>> = {
  '.png': 'png',
  '.webp': 'webp',
  '.jpg': 'jpeg',
  '.jpeg': 'jpeg',
  '.zip': 'zip',
};
/** Inputs are files on the command line; the API's ways of sending images do not apply. */
const IMAGE_SOURCE_PARAMETERS: ReadonlySet<string> = new Set(PARAMETER_NAMES.filter((name) => !parametersOfKind('value').includes(name)));
const STDIO = '-';

/** The CLI always knows its output format before it runs. */
type CliOptions = RemovalOptions & { encode: { format: OutputFormat } };

type Target =
  | { kind: 'beside' }
  | { kind: 'folder'; path: string }
  | { kind: 'file'; path: string }
  | { kind: 'stdout' };

interface Job {
  /** For messages. */
  label: string;
  input: InputFile | typeof STDIO;
  /** A path, or STDIO for standard output. */
  output: string;
}

function parameterName(flag: string): string {
  return flag.replaceAll('-', '_');
}

function collectParameters(values: Readonly<Record<string, unknown>>, params: readonly string[]): Record<string, string> {
  const parameters = parameterTable();
  for (const param of params) {
    const separator = param.indexOf('=');
    if (separator <= 0) throw new UsageError(`--param takes NAME=VALUE, got ${JSON.stringify(param)}`);
    parameters[param.slice(0, separator)] = param.slice(separator + 1);
  }
  for (const flag of PARAMETER_FLAGS) {
    const value = values[flag];
    if (typeof value === 'string') parameters[parameterName(flag)] = value;
  }
  return parameters;
}

/**
 * The API's own parser, so a bad value gets the API's message. The output's
 * name needs its extension before the image is processed, so the CLI's
 * format defaults to png where the API's is auto.
 */
function parseOptions(parameters: RequestParameters): CliOptions {
  const imageSource = Object.keys(parameters).find((name) => IMAGE_SOURCE_PARAMETERS.has(name));
  if (imageSource) throw new UsageError(`${imageSource} is an HTTP parameter; give the image as a file argument`);
  try {
    checkParameterNames(Object.keys(parameters));
    const options = parseRemovalOptions({ format: 'png', ...parameters });
    const { format } = options.encode;
    if (format === 'auto') throw new UsageError('--format auto needs the result to choose an extension; give png, jpeg, webp or zip');
    return { ...options, encode: { ...options.encode, format } };
  } catch (error) {
    if (error instanceof ApiError) throw new UsageError(error.message);
    throw error;
  }
}

async function chooseTarget(inputs: readonly string[], output: string | undefined): Promise<Target> {
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
  if (!(await exists(output)) && FORMAT_BY_EXTENSION[path.extname(output).toLowerCase()] === undefined) {
    return { kind: 'folder', path: output };
  }
  throw new UsageError(`-o ${output} names a file, but several inputs (or a folder, or a pattern) need an output folder`);
}

function outputName(input: string, options: CliOptions, suffix: boolean): string {
  const stem = path.basename(input, path.extname(input));
  const extension = EXTENSIONS[options.encode.format];
  return suffix ? `${stem}.${options.encode.channels === 'alpha' ? 'mask' : 'cutout'}.${extension}` : `${stem}.${extension}`;
}

function planJob(input: InputFile | typeof STDIO, target: Target, options: CliOptions): Job {
  const label = input === STDIO ? 'stdin' : input.path;
  switch (target.kind) {
    case 'stdout':
      return { label, input, output: STDIO };
    case 'file':
      return { label, input, output: target.path };
    case 'folder': {
      const output =
        input === STDIO
          ? path.join(target.path, `stdin.${EXTENSIONS[options.encode.format]}`)
          : path.join(target.path, input.subdirectory, outputName(input.path, options, false));
      return { label, input, output };
    }
    case 'beside':
      if (input === STDIO) throw new Error('standard input always has a target');
      return { label, input, output: path.join(path.dirname(input.path), outputName(input.path, options, true)) };
  }
}

/**
 * Written beside the target and then moved into place, so an interrupted run
 * never leaves a truncated output that a re-run would keep. Without --force the
 * move is a hard link, which fails if the output appeared since the check.
 */
async function writeOutput(output: string, body: Buffer, force: boolean): Promise<void> {
  if (output === STDIO) {
    await new Promise<void>((resolve, reject) => process.stdout.write(body, (error) => (error ? reject(error) : resolve())));
    return;
  }
  await fs.mkdir(path.dirname(output), { recursive: true });
  const temporary = `${output}.${process.pid}.tmp`;
  await fs.writeFile(temporary, body);
  try {
    if (force) await fs.rename(temporary, output);
    else await linkExclusively(temporary, output);
  } finally {
    await fs.rm(temporary, { force: true });
  }
}

/** Some file systems (FAT, some network mounts) have no hard links: an exclusive copy is the next best. */
async function linkExclusively(source: string, target: string): Promise<void> {
  try {
    await fs.link(source, target);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw error;
    await fs.copyFile(source, target, fsConstants.COPYFILE_EXCL);
  }
}

async function exists(filePath: string): Promise<boolean> {
  try {
    await fs.access(filePath);
    return true;
  } catch {
    return false;
  }
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Node's `ENOENT: no such file or directory, open 'x'` repeats the path the report line already shows. */
function describe(error: unknown): string {
  const { code, message } = error as { code?: unknown; message?: unknown };
  const known: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EISDIR: 'is a folder',
    ENOSPC: 'no space left on the device',
  };
  if (typeof code === 'string' && known[code]) return known[code];
  return typeof message === 'string' ? message : String(error);
}

function outputExists(output: string): string {
  return `${output} already exists (--force overwrites it)`;
}

interface Plan {
  jobs: Job[];
  /** Inputs that named nothing, reported as failures. */
  problems: InputProblem[];
  options: CliOptions;
  config: Config;
  force: boolean;
  quiet: boolean;
}

/** Everything that can be wrong with the command line is found here, before any model is loaded. */
async function plan(values: Values, positionals: string[]): Promise<Plan> {
  if (positionals.length === 0) throw new UsageError('no input given');
  const fromStdin = positionals.includes(STDIO);
  const target = await chooseTarget(positionals, values.output);
  const parameters = collectParameters(values, values.param ?? []);
  const extensionFormat = target.kind === 'file' ? FORMAT_BY_EXTENSION[path.extname(target.path).toLowerCase()] : undefined;
  if (extensionFormat && parameters.format === undefined) parameters.format = extensionFormat;
  const options = parseOptions(parameters);
  if (extensionFormat && extensionFormat !== options.encode.format) {
    throw new UsageError(`-o ${values.output} does not match --format ${options.encode.format}`);
  }
  if (target.kind === 'stdout' && process.stdout.isTTY) {
    throw new UsageError('the output would go to the terminal: give -o FILE, or redirect standard output');
  }
  if (fromStdin && process.stdin.isTTY) {
    throw new UsageError('"-" reads an image from standard input, but it is a terminal: pipe or redirect an image into it');
  }
  const config = loadConfigWith({ MODEL: values.model });
  const { files, problems } = fromStdin ? { files: [STDIO] as const, problems: [] } : await expandInputs(positionals, { recursive: values.recursive ?? false });
  return {
    jobs: files.map((input) => planJob(input, target, options)),
    problems,
    options,
    config,
    force: values.force ?? false,
    quiet: values.quiet ?? false,
  };
}

async function execute({ jobs, problems, options, config, force, quiet }: Plan): Promise<BatchOutcome> {
  const reporter = new BatchReporter(process.stderr, jobs.length + problems.length, { quiet });
  for (const problem of problems) reporter.failed(problem.input, problem.message);
  // The model loads on the first image that decodes, once for the whole run.
  // The service's log lines would interleave with the batch report; they appear only when LOG_LEVEL asks.
  const logger = new Logger({
    level: config.logLevel,
    pretty: true,
    write: process.env.LOG_LEVEL ? (line) => process.stderr.write(`${line}\n`) : () => undefined,
  });
  const { holder } = createServices(config, undefined, logger);
  const { planRemoval, removeBackground } = await import('../../pipeline/removal');
  const claimed = new Map<string, string>();
  try {
    for (const job of jobs) {
      reporter.started(job.label);
      const started = performance.now();
      const outputKey = job.output === STDIO ? STDIO : path.resolve(job.output);
      const earlier = claimed.get(outputKey);
      if (earlier !== undefined) {
        reporter.failed(job.label, `${job.output} is already the output of ${earlier}`);
        continue;
      }
      claimed.set(outputKey, job.label);
      // Checked before the work so that a re-run passes over finished images in a moment.
      if (job.output !== STDIO && !force && (await exists(job.output))) {
        reporter.failed(job.label, outputExists(job.output));
        continue;
      }
      try {
        const bytes = job.input === STDIO ? await readStdin() : await fs.readFile(job.input.path);
        if (bytes.length === 0) throw new Error(`${job.input === STDIO ? 'standard input' : 'the file'} is empty`);
        // One image at a time on the user's own machine: the limits apply, the server's memory admission does not.
        const plan = await planRemoval({ image: bytes, backgroundImage: null, options }, resolveModel(config, options.model), config);
        const result = await removeBackground(plan, { holder });
        await writeOutput(job.output, result.image.body, force);
        reporter.succeeded(job.label, job.output === STDIO ? 'stdout' : job.output, performance.now() - started);
      } catch (error) {
        // Without the model no other input can succeed either.
        if (error instanceof ApiError && error.code === 'model_unavailable') {
          throw new Error(error.message, { cause: error });
        }
        const code = (error as { code?: unknown }).code;
        reporter.failed(job.label, code === 'EEXIST' ? outputExists(job.output) : describe(error));
      }
    }
  } catch (error) {
    reporter.finish({ summary: false });
    throw error;
  }
  return reporter.finish();
}

function parse(argv: string[]) {
  return parseCommandLine({ args: expandBareFlags(argv, BARE_TRUE_FLAGS), options: OPTIONS, allowPositionals: true, strict: true });
}

type Values = ReturnType<typeof parse>['values'];

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  const outcome = await execute(await plan(values, positionals));
  return outcome.failed > 0 ? EXIT.failed : EXIT.ok;
}

export const removeCommand: Command = {
  name: 'remove',
  summary: 'remove the background of images (files, folders, patterns, or stdin)',
  usage: USAGE,
  run,
};
