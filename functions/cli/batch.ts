/**
 * The run over the planned jobs: one image at a time through the service's
 * pipeline, each reported as it ends. A failed input does not stop the others;
 * a model that cannot load stops them all.
 */
import fs from 'node:fs/promises';
import type { Config } from '../config';
import { ApiError } from '../errors';
import type { ModelHolder } from '../model/holder';
import { resolveModel } from '../model/selection';
import type { RemovalOptions } from '../pipeline/options';
import { writeFileAtomically, writeToStdout } from './atomicWrite';
import type { InputProblem } from './inputs';
import { alreadyExists, type Job, OutputClaims, STDIO } from './outputs';
import { type BatchOutcome, BatchReporter } from './progress';

export interface Batch {
  jobs: Job[];
  /** Inputs that named nothing, reported as failures. */
  problems: InputProblem[];
  options: RemovalOptions;
  config: Config;
  force: boolean;
  quiet: boolean;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
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

/** The model loads on the first image that decodes, once for the whole run. */
export async function runBatch({ jobs, problems, options, config, force, quiet }: Batch, holder: ModelHolder): Promise<BatchOutcome> {
  const reporter = new BatchReporter(process.stderr, jobs.length + problems.length, { quiet });
  for (const problem of problems) reporter.failed(problem.input, problem.message);
  // Here rather than at the top, so that --help and a usage error never load the pipeline and sharp.
  const { planRemoval, removeBackground } = await import('../pipeline/removal');
  const claims = new OutputClaims(force);
  try {
    for (const job of jobs) {
      reporter.started(job.label);
      const started = performance.now();
      const refusal = await claims.refusal(job);
      if (refusal !== undefined) {
        reporter.failed(job.label, refusal);
        continue;
      }
      try {
        const bytes = job.input === STDIO ? await readStdin() : await fs.readFile(job.input.path);
        if (bytes.length === 0) throw new Error(`${job.input === STDIO ? 'standard input' : 'the file'} is empty`);
        // One image at a time on the user's own machine: the limits apply, the server's memory admission does not.
        const plan = await planRemoval({ image: bytes, backgroundImage: null, options }, resolveModel(config, options.model), config);
        const result = await removeBackground(plan, { holder });
        if (job.output === STDIO) await writeToStdout(result.image.body);
        else await writeFileAtomically(job.output, result.image.body, force);
        reporter.succeeded(job.label, job.output === STDIO ? 'stdout' : job.output, performance.now() - started);
      } catch (error) {
        // Without the model no other input can succeed either.
        if (error instanceof ApiError && error.code === 'model_unavailable') {
          throw new Error(error.message, { cause: error });
        }
        const code = (error as { code?: unknown }).code;
        reporter.failed(job.label, code === 'EEXIST' ? alreadyExists(job.output) : describe(error));
      }
    }
  } catch (error) {
    reporter.finish({ summary: false });
    throw error;
  }
  return reporter.finish();
}
