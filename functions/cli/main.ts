/**
 * `detourage`: the service's pipeline from the command line. Every command
 * resolves to an exit code once its work is over (serve: once the server has
 * closed); the process then exits explicitly, because the model's inference
 * thread would keep it alive, but only after stdout and stderr have drained,
 * so an image piped to stdout is never cut short.
 */
import { ConfigError } from '../config';
import { packageVersion } from '../paths';
import { EXIT, Interrupted, UsageError } from './args';
import type { Command } from './commands/command';
import { keysCommand } from './commands/keys';
import { modelsCommand } from './commands/models';
import { removeCommand } from './commands/remove';
import { serveCommand } from './commands/serve';

const COMMANDS: readonly Command[] = [removeCommand, modelsCommand, serveCommand, keysCommand];

function usage(): string {
  const width = Math.max(...COMMANDS.map((command) => command.name.length));
  return `Usage: detourage <command> [options]

Commands:
${COMMANDS.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`).join('\n')}

Options:
  -h, --help     show this help ("detourage <command> --help" for a command's)
  -V, --version  print the version

Exit codes: 0 success; 1 some inputs failed, or a runtime error; 2 usage error;
78 bad configuration (environment variables, as the server); 130 interrupted.`;
}

function report(error: unknown, commandName: string | undefined): number {
  const prefix = commandName ? `detourage ${commandName}` : 'detourage';
  if (error instanceof UsageError) {
    process.stderr.write(`${prefix}: ${error.message}\nRun "${prefix} --help" for usage.\n`);
    return EXIT.usage;
  }
  if (error instanceof ConfigError) {
    process.stderr.write(`${prefix}: ${error.message}\n`);
    return EXIT.config;
  }
  if (error instanceof Interrupted) {
    process.stderr.write(`${prefix}: ${error.message}\n`);
    return EXIT.interrupted;
  }
  process.stderr.write(`${prefix}: ${error instanceof Error ? error.message : String(error)}\n`);
  return EXIT.failed;
}

export async function main(argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv;
  let command: Command | undefined;
  try {
    if (first === '--version' || first === '-V') {
      process.stdout.write(`${packageVersion()}\n`);
      return EXIT.ok;
    }
    if (first === '--help' || first === '-h') {
      process.stdout.write(`${usage()}\n`);
      return EXIT.ok;
    }
    if (first === 'help') {
      const topic = COMMANDS.find((candidate) => candidate.name === rest[0]);
      process.stdout.write(`${topic ? topic.usage : usage()}\n`);
      return EXIT.ok;
    }
    if (first === undefined) {
      process.stderr.write(`${usage()}\n`);
      return EXIT.usage;
    }
    command = COMMANDS.find((candidate) => candidate.name === first);
    if (!command) throw new UsageError(`unknown command ${JSON.stringify(first)}`);
    return await command.run(rest);
  } catch (error) {
    return report(error, command?.name);
  }
}

function drained(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => stream.write('', () => resolve()));
}

/** Entry point of bin/detourage. */
export function runCli(argv: readonly string[] = process.argv.slice(2)): void {
  // A reader that goes away (`| head`) fails the write in progress, which reports it; the
  // stream's 'error' event on top of that would crash the process.
  process.stdout.on('error', () => undefined);
  main(argv)
    .catch((error: unknown) => report(error, undefined))
    .then(async (code) => {
      await drained(process.stdout);
      await drained(process.stderr);
      process.exit(code);
    })
    .catch(() => process.exit(EXIT.failed));
}

if (require.main === module) runCli();
