import { parseArgs, type ParseArgsConfig } from 'node:util';
import { type Config, ConfigError, loadConfig } from '../config';

/**
 * Exit codes; 78 is EX_CONFIG from sysexits.h, the same code the local server
 * exits with, and 130 the shell's code for a process that SIGINT ended.
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, config: 78, interrupted: 130 } as const;

/** A mistake on the command line: exit 2 and point at --help. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The run was stopped by SIGINT or SIGTERM after what was in flight had been settled. */
export class Interrupted extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Interrupted';
  }
}

function isParseArgsError(error: unknown): error is Error & { code: string } {
  const code = (error as { code?: unknown }).code;
  return error instanceof Error && typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

/** `util.parseArgs` in strict mode, with its errors turned into usage errors. */
export function parseCommandLine<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    // Node's own messages go on to explain `--`, which only confuses here.
    if (isParseArgsError(error)) throw new UsageError(error.message.split('\n')[0]!.replace(/\. To specify a positional.*$/, '.'));
    throw error;
  }
}

/**
 * `--crop` alone means `--crop=true`; a value can still be given as `--crop=false`.
 * parseArgs in Node 20 has boolean options that take no value, or string options
 * that always take the next argument, and neither is right for these.
 */
export function expandBareFlags(argv: readonly string[], flags: readonly string[]): string[] {
  const bare = new Set(flags.map((flag) => `--${flag}`));
  const endOfOptions = argv.indexOf('--');
  return argv.map((argument, index) =>
    bare.has(argument) && (endOfOptions === -1 || index < endOfOptions) ? `${argument}=true` : argument,
  );
}

/**
 * The environment's configuration with settings given on the command line laid
 * over it, checked by the same rules. The environment is checked first, on its
 * own, so that a bad environment is a configuration error (78) and a bad flag a
 * usage error (2).
 */
export function loadConfigWith(overrides: Readonly<Record<string, string | undefined>>): Config {
  const fromEnvironment = loadConfig(process.env);
  const given = Object.entries(overrides).filter((entry): entry is [string, string] => entry[1] !== undefined);
  if (given.length === 0) return fromEnvironment;
  try {
    return loadConfig({ ...process.env, ...Object.fromEntries(given) });
  } catch (error) {
    if (error instanceof ConfigError) throw new UsageError(error.message.replace(/^Invalid configuration:/, 'Invalid option value:'));
    throw error;
  }
}
