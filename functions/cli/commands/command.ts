export interface Command {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** The full --help text. */
  usage: string;
  /** Resolves to the exit code when the work is over; throws UsageError (2), ConfigError (78), anything else (1). */
  run(argv: string[]): Promise<number>;
}
