import type { Config } from '../../config';
import { ApiError } from '../../errors';
import { Logger } from '../../log';
import { ModelHolder } from '../../model/holder';
import type { RemovalOptions } from '../../pipeline/options';
import {
  BACKGROUND_IMAGE_PARAMETERS,
  checkParameterNames,
  IMAGE_PARAMETERS,
  parameterTable,
  type RequestParameters,
  parseRemovalOptions,
} from '../../request/options';
import { EXIT, expandBareFlags, loadConfigWith, parseCommandLine, UsageError } from '../args';
import { type Batch, runBatch } from '../batch';
import { expandInputs } from '../inputs';
import { chooseTarget, formatOfFileName, type OutputEncoding, planJob, STDIO } from '../outputs';
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

/** Inputs are files on the command line; the API's ways of sending images do not apply. */
const IMAGE_SOURCE_PARAMETERS: ReadonlySet<string> = new Set([...IMAGE_PARAMETERS, ...BACKGROUND_IMAGE_PARAMETERS]);

/** The CLI always knows its output format before it runs. */
type CliOptions = RemovalOptions & { encode: OutputEncoding };

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

/** Everything that can be wrong with the command line is found here, before any model is loaded. */
async function plan(values: Values, positionals: string[]): Promise<Batch> {
  if (positionals.length === 0) throw new UsageError('no input given');
  const fromStdin = positionals.includes(STDIO);
  const target = await chooseTarget(positionals, values.output);
  const parameters = collectParameters(values, values.param ?? []);
  const extensionFormat = target.kind === 'file' ? formatOfFileName(target.path) : undefined;
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
    jobs: files.map((input) => planJob(input, target, options.encode)),
    problems,
    options,
    config,
    force: values.force ?? false,
    quiet: values.quiet ?? false,
  };
}

/**
 * The holder alone, not the HTTP container around it. The service's log lines
 * would interleave with the batch report; they appear only when LOG_LEVEL asks.
 */
function modelHolder(config: Config): ModelHolder {
  const logger = new Logger({
    level: config.logLevel,
    pretty: true,
    write: process.env.LOG_LEVEL ? (line) => process.stderr.write(`${line}\n`) : () => undefined,
  });
  return new ModelHolder(config, undefined, logger);
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
  const batch = await plan(values, positionals);
  const outcome = await runBatch(batch, modelHolder(batch.config));
  return outcome.failed > 0 ? EXIT.failed : EXIT.ok;
}

export const removeCommand: Command = {
  name: 'remove',
  summary: 'remove the background of images (files, folders, patterns, or stdin)',
  usage: USAGE,
  run,
};
