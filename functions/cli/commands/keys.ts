import { apiKeyHashEntry, createApiKey } from '../../access/apiKey';
import { API_KEY_ID_PATTERN } from '../../config';
import { EXIT, parseCommandLine, UsageError } from '../args';
import type { Command } from './command';

const USAGE = `Usage: detourage keys create [--id NAME]

  create   make a new API key for AUTH=api-key. Prints the key, once: it is
           stored nowhere, so hand it to the caller now. Then prints the
           entry to add to API_KEY_HASHES (ID:SHA256), the only thing the
           service keeps. To rotate, add the new entry beside the old one,
           move the callers over, then remove the old entry.

Options:
  --id NAME     the key's id, as logs name it (letters, digits, _ . -;
                default key-YYYYMMDD)
  -h, --help    show this help`;

function defaultId(): string {
  return `key-${new Date().toISOString().slice(0, 10).replaceAll('-', '')}`;
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine({
    args: argv,
    options: { id: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  const [action, ...extra] = positionals;
  if (action !== 'create') throw new UsageError(action === undefined ? 'keys needs an action: create' : `unknown keys action ${JSON.stringify(action)}`);
  if (extra.length > 0) throw new UsageError(`keys create takes no arguments, got ${extra.join(' ')}`);
  const id = values.id ?? defaultId();
  if (!API_KEY_ID_PATTERN.test(id)) throw new UsageError(`--id must be letters, digits, _ . - (at most 64, starting with a letter or digit), got ${JSON.stringify(id)}`);
  const key = createApiKey();
  process.stdout.write(
    `API key ${id} (shown only now; give it to the caller):\n${key}\n\nAdd this entry to API_KEY_HASHES (comma-separated beside any others):\n${apiKeyHashEntry(id, key)}\n`,
  );
  return Promise.resolve(EXIT.ok);
}

export const keysCommand: Command = {
  name: 'keys',
  summary: 'create an API key and the API_KEY_HASHES entry for it',
  usage: USAGE,
  run,
};
