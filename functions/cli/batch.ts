/**
 * The run over the planned jobs: each input read, handed to a remover (the
 * local pipeline, or a deployed endpoint: local.ts, remote.ts), its result
 * written atomically, and reported as it ends. A failed input does not stop
 * the others; an error after which no other input can succeed either (a
 * model that cannot load, credentials the endpoint refuses) stops them all.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { Interrupted } from './args';
import { writeFileAtomically, writeToStdout } from './atomicWrite';
import type { InputProblem } from './inputs';
import { alreadyExists, type Job, OutputClaims, STDIO } from './outputs';
import { type BatchOutcome, BatchReporter } from './progress';
import { NO_REPORT, openReport, type ReportedError, reportedError, type ReportStatus } from './report';

export interface Batch {
  jobs: Job[];
  /** Inputs that named nothing, reported as failures. */
  problems: InputProblem[];
  force: boolean;
  quiet: boolean;
  /** An existing output is finished work to pass over (a re-run resumes), not a conflict that fails its input. */
  resume: boolean;
  /** --report FILE, or undefined. */
  report: string | undefined;
}

/** What a remover is given besides the image while it works on one input. */
export interface JobContext {
  /** The input's file name (`stdin` for standard input), which an upload carries. */
  name: string;
  /** Says that the input will be sent again, and why and when. */
  retrying: (reason: string) => void;
  /** Aborts when the run is interrupted. */
  signal: AbortSignal;
}

/** How an input's bytes become its result. */
export interface Remover {
  /** Inputs worked on at once. */
  parallel: number;
  remove(image: Buffer, context: JobContext): Promise<Buffer>;
  /** The message the run stops with when `error` means that no other input can succeed either; otherwise undefined. */
  stopsRun(error: unknown): string | undefined;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function readInput(job: Job): Promise<Buffer> {
  const bytes = job.input === STDIO ? await readStdin() : await fs.readFile(job.input.path);
  if (bytes.length === 0) throw new Error(`${job.input === STDIO ? 'standard input' : 'the file'} is empty`);
  return bytes;
}

/** Node's `ENOENT: no such file or directory, open 'x'` repeats the path the report line already shows. */
function describe(error: unknown): string {
  const { code, message } = error as { code?: unknown; message?: unknown };
  const known: Record<string, string> = {
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EISDIR: 'is a folder',
    ENOSPC: 'no space left on the device',
  };
  if (typeof code === 'string' && known[code]) return known[code];
  return typeof message === 'string' ? message : String(error);
}

/**
 * `remover.parallel` inputs at a time, each taken in order as the one before
 * it ends. `signal` interrupts the run: no input starts after it, those in
 * flight are abandoned unwritten (a write already started finishes, so no
 * output is ever partial), and the run throws Interrupted.
 */
export async function runBatch(batch: Batch, remover: Remover, signal: AbortSignal = new AbortController().signal): Promise<BatchOutcome> {
  const { jobs, problems } = batch;
  // Opened first: a report that cannot be written stops the run before anything is shown or sent.
  const report = batch.report === undefined ? NO_REPORT : await openReport(batch.report);
  const reporter = new BatchReporter(process.stderr, jobs.length + problems.length, { quiet: batch.quiet });
  for (const problem of problems) {
    reporter.failed(problem.input, problem.message);
    report.write({ input: problem.input, status: 'failed', ms: 0, error: { message: problem.message } });
  }
  const claims = new OutputClaims(batch.force);
  let stop: Error | undefined;
  let unfinished = jobs.length;

  async function runJob(job: Job): Promise<void> {
    reporter.started(job.label);
    const started = performance.now();
    let attempts = 0;
    const end = (status: ReportStatus, error?: ReportedError): void => {
      unfinished -= 1;
      report.write({
        input: job.label,
        output: job.output,
        status,
        ms: Math.round(performance.now() - started),
        ...(attempts > 0 ? { attempts } : {}),
        ...(error === undefined ? {} : { error }),
      });
    };
    const claim = await claims.claim(job);
    if (claim.result === 'exists' && batch.resume) {
      reporter.skipped(job.label, job.output);
      end('skipped');
      return;
    }
    if (claim.result !== 'free') {
      const message = claim.result === 'exists' ? alreadyExists(job.output) : claim.message;
      reporter.failed(job.label, message);
      end('failed', { message });
      return;
    }
    try {
      const image = await readInput(job);
      attempts = 1;
      const retrying = (reason: string): void => {
        attempts += 1;
        reporter.retried(job.label, reason);
      };
      const name = job.input === STDIO ? 'stdin' : path.basename(job.input.path);
      const result = await remover.remove(image, { name, retrying, signal });
      if (job.output === STDIO) await writeToStdout(result);
      else await writeFileAtomically(job.output, result, batch.force);
      reporter.succeeded(job.label, job.output === STDIO ? 'stdout' : job.output, performance.now() - started);
      end('ok');
    } catch (error) {
      // Interrupted: neither done nor failed, and left for the next run.
      if (signal.aborted) return;
      const fatal = remover.stopsRun(error);
      if (fatal !== undefined) {
        // Printed once, as the run's own error, rather than as this input's line.
        stop ??= new Error(fatal, { cause: error });
        end('failed', reportedError(error, describe(error)));
        return;
      }
      const message = (error as { code?: unknown }).code === 'EEXIST' ? alreadyExists(job.output) : describe(error);
      reporter.failed(job.label, message);
      end('failed', reportedError(error, message));
    }
  }

  let next = 0;
  const worker = async (): Promise<void> => {
    while (stop === undefined && !signal.aborted && next < jobs.length) await runJob(jobs[next++]!);
  };
  try {
    await Promise.all(Array.from({ length: Math.min(remover.parallel, jobs.length) }, worker));
    await report.close();
  } catch (error) {
    reporter.finish({ summary: false });
    throw error;
  }
  if (stop !== undefined || signal.aborted) {
    reporter.finish({ summary: false });
    const resumable = batch.resume ? '; the same command again does only those' : '';
    throw stop ?? new Interrupted(`interrupted with ${unfinished} of ${jobs.length} inputs not done${resumable}`);
  }
  return reporter.finish();
}
