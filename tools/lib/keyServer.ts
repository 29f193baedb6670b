/**
 * A local stand-in for Google's key endpoints (DETOURAGE_TEST_KEY_SERVER
 * replaces their origin, paths kept), with RSA keys generated here, and the
 * tokens Firebase, App Check and Cloud Scheduler would sign with them. No test
 * reaches Google.
 */
import { createServer } from 'node:http';
import { exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';
import { TOKEN_KINDS, type TokenKind } from '../../functions/access/tokens';
import { listen, type RunningServer } from './http';

export const TEST_PROJECT = 'detourage-test';
export const TEST_PROJECT_NUMBER = '123456789012';
export const SCHEDULER_ACCOUNT = 'warmup-scheduler@detourage-test.iam.gserviceaccount.com';

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

export interface SigningKey {
  kid: string;
  privateKey: PrivateKey;
  jwk: JWK;
  /** The public key as PEM: what a forger would use as an HS256 secret. */
  spki: string;
}

export async function signingKey(kid: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }, spki: await exportSPKI(publicKey) };
}

export interface KeyServer extends RunningServer {
  /** Keys each path publishes; change it to rotate. */
  published: Record<TokenKind, SigningKey[]>;
  /** Requests per kind of key set. */
  fetches: Record<TokenKind, number>;
  /** While true every key request gets a 503, as in an outage. */
  down: boolean;
}

export async function startKeyServer(keys: SigningKey[]): Promise<KeyServer> {
  const paths = new Map<string, TokenKind>(
    (Object.keys(TOKEN_KINDS) as TokenKind[]).map((kind) => [new URL(TOKEN_KINDS[kind].jwksUrl).pathname, kind]),
  );
  const state = {
    published: { firebase: [...keys], 'app-check': [...keys], 'google-oidc': [...keys] } as Record<TokenKind, SigningKey[]>,
    fetches: { firebase: 0, 'app-check': 0, 'google-oidc': 0 } as Record<TokenKind, number>,
    down: false,
  };
  const server = createServer((request, response) => {
    const kind = paths.get(decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname));
    if (kind === undefined) {
      response.writeHead(404).end();
      return;
    }
    state.fetches[kind] += 1;
    if (state.down) {
      response.writeHead(503).end('down');
      return;
    }
    response
      .writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=21600, must-revalidate' })
      .end(JSON.stringify({ keys: state.published[kind].map((key) => key.jwk) }));
  });
  const running = await listen(server);
  return Object.assign(state, running);
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** Claims a real token of each kind carries; `overrides` with undefined values drop a claim. */
export function claimsOf(kind: TokenKind, overrides: Record<string, unknown> = {}): JWTPayload {
  const iat = nowSeconds() - 60;
  const base: Record<TokenKind, JWTPayload> = {
    firebase: {
      iss: `https://securetoken.google.com/${TEST_PROJECT}`,
      aud: TEST_PROJECT,
      sub: 'user-1',
      user_id: 'user-1',
      auth_time: iat - 600,
      iat,
      exp: iat + 3600,
    },
    'app-check': {
      iss: `https://firebaseappcheck.googleapis.com/${TEST_PROJECT_NUMBER}`,
      aud: [`projects/${TEST_PROJECT_NUMBER}`, `projects/${TEST_PROJECT}`],
      sub: '1:123456789012:web:abcdef',
      iat,
      exp: iat + 3600,
    },
    'google-oidc': {
      iss: 'https://accounts.google.com',
      aud: 'https://127.0.0.1/',
      sub: '10000000000000000001',
      email: SCHEDULER_ACCOUNT,
      email_verified: true,
      iat,
      exp: iat + 3600,
    },
  };
  const claims: Record<string, unknown> = { ...base[kind], ...overrides };
  for (const [name, value] of Object.entries(claims)) if (value === undefined) delete claims[name];
  return claims;
}

export function signToken(claims: JWTPayload, key: SigningKey, header: { kid?: string } = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: key.kid, ...header }).sign(key.privateKey);
}

/** What the algorithm-confusion attack sends: HS256 with the server's public key as the shared secret. */
export function forgedHs256(claims: JWTPayload, key: SigningKey): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: key.kid }).sign(new TextEncoder().encode(key.spki));
}

/** An unsecured token: `alg: none` and no signature. */
export function unsignedToken(claims: JWTPayload, kid: string): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT', kid })}.${part(claims)}.`;
}
