/**
 * Structured logs in the fields Cloud Logging reads from a Cloud Run
 * container's output: one JSON object per line. Image bytes and secrets never
 * reach a log line: callers pass only names, sizes and timings.
 */
export type Severity = 'DEBUG' | 'INFO' | 'WARNING' | 'ERROR';
export type LogLevel = 'debug' | 'info' | 'warning' | 'error';

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warning', 'error'];
const RANK: Record<Severity, number> = { DEBUG: 0, INFO: 1, WARNING: 2, ERROR: 3 };

export type LogFields = Record<string, unknown>;

export interface LoggerOptions {
  level: LogLevel;
  /** Human-readable lines instead of JSON, for a terminal. */
  pretty: boolean;
  /** stderr by default: stdout may carry an image (the CLI's `remove -`). */
  write?: (line: string) => void;
}

export class Logger {
  private readonly minimum: number;
  private readonly write: (line: string) => void;

  constructor(private readonly options: LoggerOptions) {
    this.minimum = RANK[options.level.toUpperCase() as Severity];
    this.write = options.write ?? ((line) => process.stderr.write(`${line}\n`));
  }

  log(severity: Severity, message: string, fields: LogFields = {}): void {
    if (RANK[severity] < this.minimum) return;
    if (this.options.pretty) {
      const details = Object.entries(fields)
        .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
        .join(' ');
      this.write(`${new Date().toISOString()} ${severity.padEnd(7)} ${message}${details ? `  ${details}` : ''}`);
      return;
    }
    this.write(JSON.stringify({ severity, message, ...fields, time: new Date().toISOString() }));
  }

  info(message: string, fields?: LogFields): void {
    this.log('INFO', message, fields);
  }

  warning(message: string, fields?: LogFields): void {
    this.log('WARNING', message, fields);
  }

  error(message: string, fields?: LogFields): void {
    this.log('ERROR', message, fields);
  }
}

/** `projects/P/traces/T` from X-Cloud-Trace-Context or W3C traceparent, when the project is known. */
export function traceField(
  headers: Readonly<Record<string, string | string[] | undefined>>,
  project: string | undefined,
): LogFields {
  if (!project) return {};
  const cloud = headers['x-cloud-trace-context'];
  const parent = headers.traceparent;
  let traceId: string | undefined;
  if (typeof cloud === 'string') traceId = /^([0-9a-f]{32})/i.exec(cloud)?.[1];
  if (!traceId && typeof parent === 'string') traceId = /^[0-9a-f]{2}-([0-9a-f]{32})-/i.exec(parent)?.[1];
  return traceId ? { 'logging.googleapis.com/trace': `projects/${project}/traces/${traceId.toLowerCase()}` } : {};
}
