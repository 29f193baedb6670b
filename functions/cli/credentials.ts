/**
 * What the CLI shows an endpoint to be let in: an API key in X-Api-Key (a
 * deployment with AUTH=api-key), or a Google identity token in
 * `Authorization: Bearer` for a function deployed without
 * --allow-unauthenticated, which Cloud Run's IAM checks before the function
 * runs (AUTH=iam). The token comes from gcloud, which the user has logged in.
 */
import { execFile } from 'node:child_process';
import { decodeJwt } from 'jose';
import { API_KEY_HEADER } from '../access/apiKey';

/** The headers that carry the credential; asked before each request, so that a token is refreshed in time. */
export type Credentials = () => Promise<Record<string, string>>;

export const NO_CREDENTIALS: Credentials = () => Promise.resolve({});

export function apiKeyCredentials(key: string): Credentials {
  const headers = { [API_KEY_HEADER]: key };
  return () => Promise.resolve(headers);
}

/** Runs gcloud: resolves with its standard output, or rejects with what it said on standard error. */
export type RunGcloud = (args: readonly string[]) => Promise<string>;

/** gcloud may ask a token server, and a login prompt would never come back. */
const GCLOUD_TIMEOUT_MS = 60_000;

export const runGcloud: RunGcloud = (args) =>
  new Promise((resolve, reject) => {
    execFile('gcloud', [...args], { timeout: GCLOUD_TIMEOUT_MS }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout);
      else if ((error as NodeJS.ErrnoException).code === 'ENOENT') reject(new Error('--id-token runs gcloud, which is not installed or not on PATH'));
      else reject(new Error(`gcloud ${args.join(' ')} failed: ${stderr.trim() || error.message}`));
    });
  });

/**
 * A token is replaced this long before its `exp`, so that no request arrives
 * with one that expired on the way (an upload, a clock a little off). Google's
 * identity tokens live an hour.
 */
export const TOKEN_REFRESH_MARGIN_MS = 2 * 60_000;
/**
 * gcloud may hand back the token it has cached, already inside the margin:
 * it is used, and gcloud is not run again sooner than this, rather than
 * before every request.
 */
export const MIN_REFRESH_INTERVAL_MS = 10_000;

/** gcloud refuses --audiences for a user account: only a service account's token names its audience. */
const AUDIENCES_REFUSED = /--audiences/;

interface HeldToken {
  token: string;
  refreshAt: number;
}

/**
 * `gcloud auth print-identity-token`, with `--audiences=AUDIENCE` (the
 * function's URL, which Cloud Run expects of a service account's token) as
 * long as gcloud accepts it; a user account's token has gcloud's own audience,
 * which Cloud Run accepts too, so for one the flag is dropped for the rest of
 * the run. Requests side by side share one gcloud run.
 */
export function identityTokenCredentials(audience: string, run: RunGcloud = runGcloud, now: () => number = Date.now): Credentials {
  const command = ['auth', 'print-identity-token'];
  let withAudience = true;
  let held: HeldToken | undefined;
  let fetching: Promise<HeldToken> | undefined;

  async function print(): Promise<string> {
    if (withAudience) {
      try {
        return await run([...command, `--audiences=${audience}`]);
      } catch (error) {
        if (!AUDIENCES_REFUSED.test((error as Error).message)) throw error;
        withAudience = false;
      }
    }
    return run(command);
  }

  async function fetchToken(): Promise<HeldToken> {
    const token = (await print()).trim();
    let expires: unknown;
    try {
      expires = decodeJwt(token).exp;
    } catch {
      expires = undefined;
    }
    if (typeof expires !== 'number') throw new Error('gcloud auth print-identity-token printed no identity token (a JWT with an exp claim)');
    return { token, refreshAt: Math.max(expires * 1000 - TOKEN_REFRESH_MARGIN_MS, now() + MIN_REFRESH_INTERVAL_MS) };
  }

  return async () => {
    if (held === undefined || now() >= held.refreshAt) {
      fetching ??= fetchToken().finally(() => {
        fetching = undefined;
      });
      held = await fetching;
    }
    return { Authorization: `Bearer ${held.token}` };
  };
}
