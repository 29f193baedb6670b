/**
 * `--report FILE`: one JSON line per input as it ends, so that a run cut
 * short still leaves the lines of what it finished, and a script can pick out
 * the failures (`jq 'select(.status == "failed")'`) to look at or send again.
 */
import fs from 'node:fs/promises';

export type ReportStatus = 'ok' | 'skipped' | 'failed';

/** The API's error entry where there was one (`code`, `parameter`), and the HTTP status of an endpoint's answer. */
export interface ReportedError {
  message: string;
  code?: string;
  status?: number;
  parameter?: string;
}

export interface ReportLine {
  input: string;
  /** A path, or `-` for standard output; absent for an input that named nothing. */
  output?: string;
  status: ReportStatus;
  /** From the input's start to its end, retries and their waits included. */
  ms: number;
  /** Requests sent (or runs of the local pipeline) for this input. */
  attempts?: number;
  error?: ReportedError;
}

export interface Report {
  write(line: ReportLine): void;
  /** Resolves once every line is on disk; rejects with the first failed write. */
  close(): Promise<void>;
}

/** No report was asked for: lines go nowhere. */
export const NO_REPORT: Report = { write: () => undefined, close: () => Promise.resolve() };

/** Truncates FILE: a re-run's report covers every input again, the skipped ones as `skipped`. */
export async function openReport(file: string): Promise<Report> {
  const handle = await fs.open(file, 'w');
  // One write after another, in the order the inputs ended; the first failure is kept for close().
  let writes: Promise<void> = Promise.resolve();
  let failure: Error | undefined;
  return {
    write(line) {
      writes = writes.then(() => handle.write(`${JSON.stringify(line)}\n`)).then(
        () => undefined,
        (error: unknown) => {
          failure ??= error as Error;
        },
      );
    },
    async close() {
      await writes;
      await handle.close();
      if (failure !== undefined) throw failure;
    },
  };
}

/** The report's fields of an error: its message as printed, and the code, status and parameter it carries when it has them. */
export function reportedError(error: unknown, message: string): ReportedError {
  const { code, status, parameter } = (error ?? {}) as { code?: unknown; status?: unknown; parameter?: unknown };
  return {
    message,
    ...(typeof code === 'string' ? { code } : {}),
    ...(typeof status === 'number' ? { status } : {}),
    ...(typeof parameter === 'string' ? { parameter } : {}),
  };
}
