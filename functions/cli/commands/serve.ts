import { EXIT, loadConfigWith, parseCommandLine, UsageError } from '../args';
import type { Command } from './command';

const USAGE = `Usage: detourage serve [--port N] [--model NAME]

The local server of "npm start": health, warmup and remove-background on one
port, the model loaded on first use. Configured by the environment (MODEL,
MODELS_DIR, MAX_UPLOAD_BYTES, ...); the options override it.

Options:
  --port N        port to listen on (sets PORT; 0 picks a free one; default 8080)
  --model NAME    model that serves requests (sets MODEL)
  -h, --help      show this help`;

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine({
    args: argv,
    options: { port: { type: 'string' }, model: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  if (positionals.length > 0) throw new UsageError(`serve takes no arguments, got ${positionals.join(' ')}`);
  const config = loadConfigWith({ PORT: values.port, MODEL: values.model });
  // Here rather than at the top: every command is loaded by main.ts, and only this one needs express and the HTTP container.
  const { serveUntilTerminated } = await import('../../server');
  await serveUntilTerminated(config, (line) => process.stdout.write(`${line}\n`));
  return EXIT.ok;
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'run the local HTTP server (the same as npm start)',
  usage: USAGE,
  run,
};
