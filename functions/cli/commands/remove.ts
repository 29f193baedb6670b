import { ApiError } from '../../errors';
import type { RemovalOptions } from '../../pipeline/options';
import { parseRemovalOptions } from '../../request/options';
import { checkParameterNames, cliFlags, parametersOfKind, parameterTable, type RequestParameters } from '../../request/parameters';
import { EXIT, expandBareFlags, Interrupted, loadConfigWith, parseCommandLine, UsageError } from '../args';
import { type Batch, type Remover, runBatch } from '../batch';
import { INITIAL_WINDOW, WINDOW_CEILING } from '../concurrency';
import { apiKeyCredentials, identityTokenCredentials, NO_CREDENTIALS } from '../credentials';
import { expandInputs } from '../inputs';
import { localRemover } from '../local';
import { chooseTarget, formatOfFileName, type OutputEncoding, planJob, STDIO } from '../outputs';
import type { BatchOutcome } from '../progress';
import { DEFAULT_RETRIES, endpointRemover, OVERLOAD_RETRIES, parseEndpoint } from '../remote';
import type { Command } from './command';

/** The parameters the request contract offers as flags of their own, under the same name with `-` for `_`. */
const PARAMETER_FLAGS = cliFlags().map((entry) => ({ ...entry, option: entry.name.replaceAll('_', '-') }));
/** Flags that may be given without a value, meaning `true`. */
const BARE_TRUE_FLAGS = PARAMETER_FLAGS.filter((entry) => entry.flag === 'bare').map((entry) => entry.option);
/** Said where the CLI differs from the API. */
const CLI_NOTES: Readonly<Record<string, string>> = {
  format: 'default png: an output file needs its extension',
  model: 'sets MODEL; see detourage models list',
  crop: 'margin: -p crop_margin=10%',
};

const OPTIONS = {
  output: { type: 'string', short: 'o' },
  force: { type: 'boolean', short: 'f' },
  recursive: { type: 'boolean', short: 'r' },
  quiet: { type: 'boolean', short: 'q' },
  report: { type: 'string' },
  endpoint: { type: 'string' },
  'api-key': { type: 'string' },
  'id-token': { type: 'boolean' },
  concurrency: { type: 'string' },
  retries: { type: 'string' },
  param: { type: 'string', short: 'p', multiple: true },
  help: { type: 'boolean', short: 'h' },
  // A flag from the table too; named here as well so that its value is typed, for MODEL.
  model: { type: 'string' },
  ...Object.fromEntries(PARAMETER_FLAGS.map((entry) => [entry.option, { type: 'string' } as const])),
} as const;

const HELP_WIDTH = 80;
const FLAG_COLUMN = 30;

/** `text` in lines of at most HELP_WIDTH columns, the first after `first`, the rest indented to FLAG_COLUMN. */
function helpEntry(first: string, text: string): string {
  const lines: string[] = [];
  let line = first.padEnd(FLAG_COLUMN - 1);
  for (const word of text.split(' ')) {
    if (line.length + 1 + word.length > HELP_WIDTH && line.trim() !== '') {
      lines.push(line);
      line = ' '.repeat(FLAG_COLUMN - 1);
    }
    line += ` ${word}`;
  }
  return [...lines, line].join('\n');
}

const PARAMETER_HELP = PARAMETER_FLAGS.map(({ name, option, flag, doc }) =>
  helpEntry(`  --${option}${flag === 'bare' ? '[=BOOL]' : ' VALUE'}`, CLI_NOTES[name] ? `${doc}; ${CLI_NOTES[name]}` : doc),
).join('\n');

const USAGE = `Usage: detourage remove <input...> [-o FILE|DIR] [options]

Removes the background of each input with the local model (loaded once for
the whole run), or with a deployed removeBackground (--endpoint), and writes
the results.

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
${PARAMETER_HELP}
${helpEntry('  -p, --param NAME=VALUE', 'any other parameter by its API name (scale, position, roi, quality, post_process...)')}

Endpoint (each image sent to a deployed function, as the HTTP API takes it):
  --endpoint URL              the function's URL (the local server's is
                              http://localhost:8080/remove-background)
  --api-key KEY               sent as X-Api-Key (default: $DETOURAGE_API_KEY)
  --id-token                  send a Google identity token from "gcloud auth
                              print-identity-token", renewed before it expires
  --concurrency N             requests in flight (default: ${INITIAL_WINDOW} at first, more
                              while answers come back, halved on 429/503, at
                              most ${WINDOW_CEILING})
  --retries N                 retries of a 5xx or a failed connection (default
                              ${DEFAULT_RETRIES}); 429 and 503 are retried after Retry-After, up to ${OVERLOAD_RETRIES}
                              times. Another 4xx fails that input.
  An existing output is finished work here: a second run of the same command
  sends only what the first did not finish (--force sends everything).

Options:
  -f, --force                 overwrite existing outputs
  -r, --recursive             descend into subfolders of DIR inputs
  -q, --quiet                 print failures only
  --report FILE               one JSON line per input: status, time, error
  -h, --help                  show this help

Progress goes to standard error: a bar on a terminal, otherwise one line per
input ("ok IN → OUT (MS ms)", "skip IN → OUT (exists)" or "FAILED IN:
MESSAGE") and per retry. The run goes on past a failed input and exits 1 if
any failed.

Examples:
  detourage remove photo.jpg
  detourage remove photos/ -o cutouts/ --format webp
  detourage remove 'shots/*.jpg' -o out/ --bg-color ffffff --format jpeg
  cat photo.jpg | detourage remove - > cutout.png
  detourage remove photos/ -o cutouts/ --endpoint https://REGION-PROJECT.cloudfunctions.net/removeBackground --id-token`;

/** Inputs are files on the command line; the API's ways of sending images do not apply. */
const IMAGE_SOURCE_PARAMETERS: ReadonlySet<string> = new Set([...parametersOfKind('file'), ...parametersOfKind('base64'), ...parametersOfKind('url')]);

/** The CLI always knows its output format before it runs. */
type CliOptions = RemovalOptions & { encode: OutputEncoding };

function collectParameters(values: Readonly<Record<string, unknown>>, params: readonly string[]): Record<string, string> {
  const parameters = parameterTable();
  for (const param of params) {
    const separator = param.indexOf('=');
    if (separator <= 0) throw new UsageError(`--param takes NAME=VALUE, got ${JSON.stringify(param)}`);
    parameters[param.slice(0, separator)] = param.slice(separator + 1);
  }
  for (const { name, option } of PARAMETER_FLAGS) {
    const value = values[option];
    if (typeof value === 'string') parameters[name] = value;
  }
  return parameters;
}

/**
 * The API's own parser, so a bad value gets the API's message. The output's
 * name needs its extension before the image is processed, so the CLI's
 * format defaults to png where the API's is auto: `requested` has it already,
 * and is what an endpoint is sent.
 */
function parseOptions(requested: RequestParameters): CliOptions {
  const imageSource = Object.keys(requested).find((name) => IMAGE_SOURCE_PARAMETERS.has(name));
  if (imageSource) throw new UsageError(`${imageSource} is an HTTP parameter; give the image as a file argument`);
  try {
    checkParameterNames(Object.keys(requested));
    const options = parseRemovalOptions(requested);
    const { format } = options.encode;
    if (format === 'auto') throw new UsageError('--format auto needs the result to choose an extension; give png, jpeg, webp or zip');
    return { ...options, encode: { ...options.encode, format } };
  } catch (error) {
    if (error instanceof ApiError) throw new UsageError(error.message);
    throw error;
  }
}

/** Flags that mean something only with --endpoint: locally there is nobody to show a credential to, and one image at a time. */
const ENDPOINT_FLAGS = ['api-key', 'id-token', 'concurrency', 'retries'] as const;
const MAX_CONCURRENCY = 1000;

function countFlag(flag: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text.trim());
  if (!/^\d+$/.test(text.trim()) || value < min || value > max) throw new UsageError(`--${flag} takes a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`);
  return value;
}

/**
 * A service account's token names the function's URL as its audience, as
 * Cloud Run expects: the URL without a query, and without a lone `/` (a
 * run.app URL's audience is its origin).
 */
function audienceOf(url: URL): string {
  return `${url.origin}${url.pathname === '/' ? '' : url.pathname}`;
}

function endpointRemoverOf(values: Values, requested: Record<string, string>): Remover {
  const endpoint = values.endpoint!;
  if (values['api-key'] !== undefined && values['id-token']) throw new UsageError('--api-key and --id-token are two credentials: give one');
  // --id-token wins over the environment's key, as a flag over a setting.
  const apiKey = values['id-token'] ? undefined : values['api-key'] || process.env.DETOURAGE_API_KEY?.trim() || undefined;
  const url = parseEndpoint(endpoint, apiKey !== undefined || values['id-token'] === true);
  const credentials = values['id-token'] ? identityTokenCredentials(audienceOf(url)) : apiKey === undefined ? NO_CREDENTIALS : apiKeyCredentials(apiKey);
  return endpointRemover({
    url,
    parameters: requested,
    credentials,
    retries: countFlag('retries', values.retries, 0, 100) ?? DEFAULT_RETRIES,
    concurrency: countFlag('concurrency', values.concurrency, 1, MAX_CONCURRENCY),
  });
}

/** Everything that can be wrong with the command line is found here, before any model is loaded or any request sent. */
async function plan(values: Values, positionals: string[]): Promise<{ batch: Batch; remover: Remover }> {
  if (positionals.length === 0) throw new UsageError('no input given');
  const endpointFlag = ENDPOINT_FLAGS.find((flag) => values[flag] !== undefined);
  if (values.endpoint === undefined && endpointFlag !== undefined) throw new UsageError(`--${endpointFlag} goes with --endpoint URL`);
  const fromStdin = positionals.includes(STDIO);
  const target = await chooseTarget(positionals, values.output);
  const parameters = collectParameters(values, values.param ?? []);
  const extensionFormat = target.kind === 'file' ? formatOfFileName(target.path) : undefined;
  if (extensionFormat && parameters.format === undefined) parameters.format = extensionFormat;
  const requested = { format: 'png', ...parameters };
  const options = parseOptions(requested);
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
  const remover = values.endpoint === undefined ? localRemover(options, config) : endpointRemoverOf(values, requested);
  const { files, problems } = fromStdin ? { files: [STDIO] as const, problems: [] } : await expandInputs(positionals, { recursive: values.recursive ?? false });
  const batch: Batch = {
    jobs: files.map((input) => planJob(input, target, options.encode)),
    problems,
    force: values.force ?? false,
    quiet: values.quiet ?? false,
    resume: values.endpoint !== undefined,
    report: values.report,
  };
  return { batch, remover };
}

/**
 * SIGINT and SIGTERM stop an endpoint run between writes: requests in flight
 * are abandoned, and the run exits 130 with no partial output. A second
 * signal ends the process at once, as the handler is gone by then. The local
 * run is left as it was: an inference cannot be abandoned half-way.
 */
async function runInterruptibly(batch: Batch, remover: Remover): Promise<BatchOutcome> {
  const controller = new AbortController();
  const interrupt = (): void => controller.abort(new Interrupted('interrupted'));
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    return await runBatch(batch, remover, controller.signal);
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  }
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
  const { batch, remover } = await plan(values, positionals);
  const outcome = values.endpoint === undefined ? await runBatch(batch, remover) : await runInterruptibly(batch, remover);
  return outcome.failed > 0 ? EXIT.failed : EXIT.ok;
}

export const removeCommand: Command = {
  name: 'remove',
  summary: 'remove the background of images (files, folders, patterns, or stdin)',
  usage: USAGE,
  run,
};
