/**
 * The deploy, schedule-warmup and teardown scripts against a fake gcloud that
 * records every call (test/fake-gcloud/gcloud): exact commands and flags,
 * configuration from env and flags, --dry-run, and bad input.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { PROJECT_ROOT } from '../functions/paths';

const FAKE_GCLOUD_DIR = path.join(PROJECT_ROOT, 'test', 'fake-gcloud');
const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'detourage-deploy-test-'));
let runs = 0;
after(() => fs.rmSync(logDir, { recursive: true, force: true }));

type Script = 'deploy.sh' | 'deploy-storage.sh' | 'schedule-warmup.sh' | 'teardown.sh';
type Env = Record<string, string>;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  /** Each gcloud call's arguments, in order. */
  calls: string[][];
}

function readCalls(log: string): string[][] {
  if (!fs.existsSync(log)) return [];
  return fs
    .readFileSync(log, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as string[]);
}

/** Only the fake gcloud's settings and what a shell needs: no PROJECT or MEMORY leaks in from the caller. */
function cleanEnv(env: Env, log: string): Env {
  return {
    PATH: `${FAKE_GCLOUD_DIR}${path.delimiter}${process.env.PATH ?? ''}`,
    HOME: process.env.HOME ?? os.tmpdir(),
    FAKE_GCLOUD_LOG: log,
    ...env,
  };
}

function runScript(script: Script, args: string[], env: Env = {}): Run {
  const log = path.join(logDir, `gcloud-${++runs}.log`);
  const result = spawnSync(path.join(PROJECT_ROOT, 'scripts', script), args, { env: cleanEnv(env, log), encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, calls: readCalls(log) };
}

/** Runs what --dry-run printed, as a person pasting it into bash would. */
function runPrinted(commands: string, env: Env = {}): Run {
  const log = path.join(logDir, `gcloud-${++runs}.log`);
  const result = spawnSync('bash', ['-euo', 'pipefail', '-c', commands], { env: cleanEnv(env, log), encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, calls: readCalls(log) };
}

function assertSucceeded(run: Run): void {
  assert.equal(run.status, 0, `exit ${run.status}\n${run.stderr}`);
}

/** `--name=value` arguments as a map; bare `--name` flags map to true. */
function flagsOf(call: string[]): Map<string, string | true> {
  const flags = new Map<string, string | true>();
  for (const arg of call.filter((word) => word.startsWith('--'))) {
    const equals = arg.indexOf('=');
    if (equals === -1) flags.set(arg, true);
    else flags.set(arg.slice(0, equals), arg.slice(equals + 1));
  }
  return flags;
}

function envVarsOf(call: string[], flag: '--set-env-vars' | '--set-build-env-vars'): Record<string, string> {
  const value = flagsOf(call).get(flag);
  assert.equal(typeof value, 'string', `${flag} in ${call.join(' ')}`);
  // gcloud's escaping: `^;^A=1,2;B=3` lists its entries with ; instead of the comma.
  const [, delimiter = ',', list = value as string] = /^\^(.)\^(.*)$/s.exec(value as string) ?? [];
  return Object.fromEntries(list.split(delimiter).map((pair) => pair.split('=', 2) as [string, string]));
}

const PROJECT = 'detourage-test';
const SERVICE_ACCOUNT = `warmer@${PROJECT}.iam.gserviceaccount.com`;
/** The account README's prerequisites create: schedule-warmup.sh's default, and the one a public deployment trusts by default. */
const DEFAULT_WARMER = `detourage-warmer@${PROJECT}.iam.gserviceaccount.com`;
const FAKE_URL = 'https://removebackground-abc123-uc.a.run.app';

/** What deploy.sh runs after the three deploys: removeBackground's Cloud Run service, by its lower-case name. */
function sessionAffinity(region = 'us-central1', project = PROJECT): string[] {
  return ['run', 'services', 'update', 'removebackground', `--project=${project}`, `--region=${region}`, '--session-affinity'];
}

/** The three `functions deploy` calls, without the secret grant before them or the session affinity after. */
function deploysOf(run: Run): string[][] {
  return run.calls.filter((call) => call[0] === 'functions' && call[1] === 'deploy');
}

describe('deploy.sh', () => {
  test('deploys the three functions, private, each on its tier, then turns on removeBackground\'s session affinity', () => {
    const run = runScript('deploy.sh', [`--project=${PROJECT}`]);
    assertSucceeded(run);
    assert.deepEqual(
      run.calls.map((call) => call.slice(0, 3)),
      [
        ['functions', 'deploy', 'removeBackground'],
        ['functions', 'deploy', 'warmup'],
        ['functions', 'deploy', 'health'],
        ['run', 'services', 'update'],
      ],
    );
    const common = (name: string): string[] => [
      `--project=${PROJECT}`,
      '--gen2',
      '--region=us-central1',
      '--runtime=nodejs22',
      `--source=${PROJECT_ROOT}`,
      `--entry-point=${name}`,
      '--trigger-http',
      '--no-allow-unauthenticated',
    ];
    const env = [
      '--timeout=60s',
      '--set-env-vars=AUTH=iam,MODEL=isnet-fp32,INFER_THREADS=2,REQUEST_TIMEOUT_MS=55000,MALLOC_ARENA_MAX=2,MEMORY_LIMIT_MB=2048',
      '--set-build-env-vars=MODEL=isnet-fp32,ONNXRUNTIME_NODE_INSTALL=skip',
      // A redeploy from AUTH=api-key drops the API_KEY_HASHES secret, which AUTH=iam refuses.
      '--clear-secrets',
    ];
    assert.deepEqual(run.calls, [
      [
        'functions', 'deploy', 'removeBackground', ...common('removeBackground'),
        '--memory=2Gi', '--cpu=2', '--min-instances=1', '--max-instances=10', '--concurrency=4', ...env,
      ],
      [
        'functions', 'deploy', 'warmup', ...common('warmup'),
        '--memory=2Gi', '--cpu=2', '--min-instances=0', '--max-instances=1', '--concurrency=4', ...env,
      ],
      [
        'functions', 'deploy', 'health', ...common('health'),
        '--memory=256Mi', '--cpu=0.167', '--min-instances=0', '--max-instances=3', '--concurrency=1', ...env,
      ],
      sessionAffinity(),
    ]);
    assert.match(run.stderr, /schedule-warmup\.sh/);
  });

  test('reads its settings from the environment', () => {
    const run = runScript('deploy.sh', [], {
      PROJECT,
      REGION: 'europe-west1',
      MODEL: 'isnet-uint8',
      MEMORY: '4Gi',
      CPU: '4',
      MIN_INSTANCES: '0',
      MAX_INSTANCES: '3',
      CONCURRENCY: '2',
      TIMEOUT: '120',
      MAX_UPLOAD_BYTES: '10485760',
      MAX_INPUT_PIXELS: '25000000',
      AUTH: 'api-key,firebase',
      API_KEY_SECRET: 'hashes-from-env',
      FIREBASE_PROJECT_ID: 'web-from-env',
      WARMUP_SERVICE_ACCOUNTS: SERVICE_ACCOUNT,
      SERVICE_ACCOUNT: 'runner@detourage-test.iam.gserviceaccount.com',
      ALLOW_UNAUTHENTICATED: 'true',
    });
    assertSucceeded(run);
    assert.deepEqual(run.calls[0]!.slice(0, 3), ['secrets', 'add-iam-policy-binding', 'hashes-from-env']);
    assert.deepEqual(run.calls.at(-1), sessionAffinity('europe-west1'));
    const deploys = deploysOf(run);
    const [removal, warmup, health] = deploys.map(flagsOf);
    assert.deepEqual(
      [removal, warmup].map((flags) => ['--memory', '--cpu', '--concurrency', '--timeout'].map((name) => flags?.get(name))),
      [
        ['4Gi', '4', '2', '120s'],
        ['4Gi', '4', '2', '120s'],
      ],
    );
    assert.equal(removal?.get('--min-instances'), '0');
    assert.equal(removal?.get('--max-instances'), '3');
    assert.equal(health?.get('--memory'), '256Mi');
    for (const call of deploys) {
      const flags = flagsOf(call);
      assert.equal(flags.get('--region'), 'europe-west1');
      assert.equal(flags.get('--allow-unauthenticated'), true);
      assert.equal(flags.has('--no-allow-unauthenticated'), false);
      assert.equal(flags.get('--set-secrets'), 'API_KEY_HASHES=hashes-from-env:latest');
      assert.equal(flags.get('--service-account'), 'runner@detourage-test.iam.gserviceaccount.com');
      assert.deepEqual(envVarsOf(call, '--set-env-vars'), {
        AUTH: 'api-key,firebase',
        MODEL: 'isnet-uint8',
        INFER_THREADS: '4',
        REQUEST_TIMEOUT_MS: '115000',
        MALLOC_ARENA_MAX: '2',
        MEMORY_LIMIT_MB: '4096',
        MAX_UPLOAD_BYTES: '10485760',
        MAX_INPUT_PIXELS: '25000000',
        FIREBASE_PROJECT_ID: 'web-from-env',
        WARMUP_SERVICE_ACCOUNTS: SERVICE_ACCOUNT,
      });
      assert.deepEqual(envVarsOf(call, '--set-build-env-vars'), { MODEL: 'isnet-uint8', ONNXRUNTIME_NODE_INSTALL: 'skip' });
    }
  });

  test('flags override the environment, in both --name=value and --name value forms', () => {
    const run = runScript(
      'deploy.sh',
      ['--project', 'other-project', '--region=asia-northeast1', '--memory', '3Gi', '--cpu=1', '--infer-threads=3',
        '--min-instances=2', '--no-allow-unauthenticated'],
      { PROJECT, REGION: 'europe-west1', MEMORY: '4Gi', CPU: '2', MIN_INSTANCES: '0', ALLOW_UNAUTHENTICATED: 'yes' },
    );
    assertSucceeded(run);
    const removal = flagsOf(run.calls[0]!);
    assert.equal(removal.get('--project'), 'other-project');
    assert.equal(removal.get('--region'), 'asia-northeast1');
    assert.equal(removal.get('--memory'), '3Gi');
    assert.equal(removal.get('--cpu'), '1');
    assert.equal(removal.get('--min-instances'), '2');
    assert.equal(removal.get('--no-allow-unauthenticated'), true);
    assert.equal(envVarsOf(run.calls[0]!, '--set-env-vars').INFER_THREADS, '3');
  });

  test('numbers with leading zeros are read as decimal', () => {
    const run = runScript('deploy.sh', [`--project=${PROJECT}`, '--timeout=090', '--min-instances=02']);
    assertSucceeded(run);
    const removal = run.calls[0]!;
    assert.equal(flagsOf(removal).get('--timeout'), '90s');
    assert.equal(flagsOf(removal).get('--min-instances'), '2');
    assert.equal(envVarsOf(removal, '--set-env-vars').REQUEST_TIMEOUT_MS, '85000');
  });

  test('--allow-unauthenticated with --auth=api-key makes all three public', () => {
    const run = runScript('deploy.sh', [`--project=${PROJECT}`, '--auth=api-key', '--allow-unauthenticated']);
    assertSucceeded(run);
    const deploys = run.calls.filter((call) => call[1] === 'deploy');
    assert.equal(deploys.length, 3);
    for (const call of deploys) {
      assert.ok(call.includes('--allow-unauthenticated'));
      assert.ok(!call.includes('--no-allow-unauthenticated'));
    }
  });

  describe('--auth', () => {
    const binding = (member: string, secret = 'detourage-api-key-hashes'): string[] => [
      'secrets', 'add-iam-policy-binding', secret, `--project=${PROJECT}`, `--member=serviceAccount:${member}`,
      '--role=roles/secretmanager.secretAccessor',
    ];
    const publicFlags = (run: Run): Record<string, boolean> =>
      Object.fromEntries(
        run.calls.filter((call) => call[1] === 'deploy').map((call): [string, boolean] => [call[2]!, call.includes('--allow-unauthenticated')]),
      );

    test('api-key: grants the default compute account the secret, then deploys the two it protects public', () => {
      const run = runScript('deploy.sh', [`--project=${PROJECT}`, '--auth=api-key'], { FAKE_GCLOUD_PROJECT_NUMBER: '424242' });
      assertSucceeded(run);
      assert.deepEqual(run.calls.slice(0, 2), [
        ['projects', 'describe', PROJECT, '--format=value(projectNumber)'],
        binding('424242-compute@developer.gserviceaccount.com'),
      ]);
      // health stays as it was: private unless --allow-unauthenticated.
      assert.deepEqual(publicFlags(run), { removeBackground: true, warmup: true, health: false });
      for (const call of deploysOf(run)) {
        const env = envVarsOf(call, '--set-env-vars');
        assert.equal(env.AUTH, 'api-key');
        // The scheduler's OIDC token reaches the service now: its account is trusted for warmups.
        assert.equal(env.WARMUP_SERVICE_ACCOUNTS, DEFAULT_WARMER);
        assert.equal(env.FIREBASE_PROJECT_ID, undefined);
        assert.equal(flagsOf(call).get('--set-secrets'), 'API_KEY_HASHES=detourage-api-key-hashes:latest');
        assert.ok(!call.includes('--clear-secrets'));
        // The hashes come only from the secret.
        assert.ok(!call.some((word) => word.includes('API_KEY_HASHES=') && !word.startsWith('--set-secrets=')));
      }
      assert.ok(run.stderr.includes(`scheduled warmups are accepted from ${DEFAULT_WARMER} (schedule-warmup.sh's default account)`), run.stderr);
      assert.ok(run.stderr.includes(`schedule-warmup.sh --project=${PROJECT} --region=us-central1 --service-account=${DEFAULT_WARMER}`), run.stderr);
    });

    test('api-key with --service-account and --api-key-secret: that account, that secret, no project lookup', () => {
      const account = `runner@${PROJECT}.iam.gserviceaccount.com`;
      const run = runScript('deploy.sh', [`--project=${PROJECT}`, '--auth', 'api-key', `--service-account=${account}`, '--api-key-secret=my-hashes']);
      assertSucceeded(run);
      assert.deepEqual(run.calls[0], binding(account, 'my-hashes'));
      for (const call of deploysOf(run)) {
        assert.equal(flagsOf(call).get('--service-account'), account);
        assert.equal(flagsOf(call).get('--set-secrets'), 'API_KEY_HASHES=my-hashes:latest');
      }
    });

    test('iam,api-key keeps all three behind IAM, with the key check inside', () => {
      const run = runScript('deploy.sh', [`--project=${PROJECT}`, '--auth=iam,api-key']);
      assertSucceeded(run);
      assert.deepEqual(run.calls[1]!.slice(0, 2), ['secrets', 'add-iam-policy-binding']);
      assert.deepEqual(publicFlags(run), { removeBackground: false, warmup: false, health: false });
      const env = envVarsOf(run.calls[2]!, '--set-env-vars');
      assert.equal(env.AUTH, 'iam,api-key');
      // Behind IAM the invoker role lets the scheduler in; the service refuses the setting beside iam.
      assert.equal(env.WARMUP_SERVICE_ACCOUNTS, undefined);
    });

    test('firebase: the two public, FIREBASE_PROJECT_ID the deploy\'s project, no secret', () => {
      const run = runScript('deploy.sh', [`--project=${PROJECT}`, '--auth=firebase']);
      assertSucceeded(run);
      assert.deepEqual(run.calls.map((call) => call.slice(0, 2)), [['functions', 'deploy'], ['functions', 'deploy'], ['functions', 'deploy'], ['run', 'services']]);
      assert.deepEqual(publicFlags(run), { removeBackground: true, warmup: true, health: false });
      for (const call of deploysOf(run)) {
        const env = envVarsOf(call, '--set-env-vars');
        assert.equal(env.AUTH, 'firebase');
        assert.equal(env.FIREBASE_PROJECT_ID, PROJECT);
        assert.equal(env.WARMUP_SERVICE_ACCOUNTS, DEFAULT_WARMER);
        assert.ok(call.includes('--clear-secrets'));
      }
    });

    test('app-check with --firebase-project, a rate limit and two warmup accounts', () => {
      const accounts = `${SERVICE_ACCOUNT},backup-warmer@${PROJECT}.iam.gserviceaccount.com`;
      const run = runScript('deploy.sh', [
        `--project=${PROJECT}`, '--auth=app-check', '--firebase-project=shop-web', '--rate-limit-per-minute=30',
        '--warmup-service-account', accounts,
      ]);
      assertSucceeded(run);
      assert.deepEqual(publicFlags(run), { removeBackground: true, warmup: true, health: false });
      for (const call of deploysOf(run)) {
        // A list with commas needs gcloud's other delimiter.
        assert.match(String(flagsOf(call).get('--set-env-vars')), /^\^;\^AUTH=app-check;/);
        const env = envVarsOf(call, '--set-env-vars');
        assert.equal(env.FIREBASE_PROJECT_ID, 'shop-web');
        assert.equal(env.RATE_LIMIT_PER_MINUTE, '30');
        assert.equal(env.WARMUP_SERVICE_ACCOUNTS, accounts);
      }
      assert.doesNotMatch(run.stderr, /scheduled warmups are accepted from/);
    });

    test('iam,firebase stays behind IAM, with the Firebase project and no warmup accounts', () => {
      const run = runScript('deploy.sh', [`--project=${PROJECT}`, '--auth=iam,firebase']);
      assertSucceeded(run);
      assert.deepEqual(publicFlags(run), { removeBackground: false, warmup: false, health: false });
      const env = envVarsOf(run.calls[0]!, '--set-env-vars');
      assert.equal(env.AUTH, 'iam,firebase');
      assert.equal(env.FIREBASE_PROJECT_ID, PROJECT);
      assert.equal(env.WARMUP_SERVICE_ACCOUNTS, undefined);
    });

    test('--no-warmup-service-account: a public deployment that trusts no warmup token, with a warning', () => {
      const run = runScript('deploy.sh', [`--project=${PROJECT}`, '--auth=firebase', '--no-warmup-service-account']);
      assertSucceeded(run);
      for (const call of deploysOf(run)) assert.equal(envVarsOf(call, '--set-env-vars').WARMUP_SERVICE_ACCOUNTS, undefined);
      assert.match(run.stderr, /warning: no warmup account: the service will answer a scheduled warmup 401/);
      assert.doesNotMatch(run.stderr, /schedule-warmup\.sh/);
    });

    test('iam (the default) touches no secret', () => {
      const run = runScript('deploy.sh', [`--project=${PROJECT}`], { AUTH: 'iam' });
      assertSucceeded(run);
      assert.deepEqual(run.calls.map((call) => call[1]), ['deploy', 'deploy', 'deploy', 'services']);
      assert.deepEqual(publicFlags(run), { removeBackground: false, warmup: false, health: false });
    });

    test('--cors-origins and --rate-limit-per-minute reach the service, commas and all', () => {
      const origins = 'https://app.example.com,http://localhost:5173';
      const run = runScript('deploy.sh', [`--project=${PROJECT}`, '--auth=api-key', `--cors-origins=${origins}`], { RATE_LIMIT_PER_MINUTE: '60' });
      assertSucceeded(run);
      for (const call of run.calls.filter((words) => words[1] === 'deploy')) {
        const env = envVarsOf(call, '--set-env-vars');
        assert.equal(env.CORS_ORIGINS, origins);
        assert.equal(env.RATE_LIMIT_PER_MINUTE, '60');
        assert.equal(env.AUTH, 'api-key');
      }
    });

    for (const auth of ['api-key', 'iam,api-key']) {
      test(`--dry-run with --auth=${auth} prints what a paste runs`, () => {
        const args = [`--project=${PROJECT}`, `--auth=${auth}`];
        const dry = runScript('deploy.sh', [...args, '--dry-run']);
        assertSucceeded(dry);
        assert.deepEqual(dry.calls, []);
        const lines = dry.stdout.trimEnd().split('\n');
        assert.deepEqual(lines.slice(0, 2), [
          `project_number=$(gcloud projects describe ${PROJECT} --format='value(projectNumber)')`,
          `gcloud secrets add-iam-policy-binding detourage-api-key-hashes --project=${PROJECT} ` +
            '--member=serviceAccount:"$project_number"-compute@developer.gserviceaccount.com --role=roles/secretmanager.secretAccessor',
        ]);
        assert.equal(lines.length, 6);
        const env = { FAKE_GCLOUD_PROJECT_NUMBER: '777' };
        const pasted = runPrinted(dry.stdout, env);
        assertSucceeded(pasted);
        assert.deepEqual(pasted.calls, runScript('deploy.sh', args, env).calls);
      });
    }

    test('--dry-run with --auth=firebase prints the three public-or-not deploys with the Firebase settings', () => {
      const dry = runScript('deploy.sh', [`--project=${PROJECT}`, '--auth=firebase', '--dry-run']);
      assertSucceeded(dry);
      assert.deepEqual(dry.calls, []);
      const lines = dry.stdout.trimEnd().split('\n');
      assert.equal(lines.length, 4);
      assert.equal(
        lines[0],
        `gcloud functions deploy removeBackground --project=${PROJECT} --gen2 --region=us-central1 --runtime=nodejs22 ` +
          `--source=${PROJECT_ROOT} --entry-point=removeBackground --trigger-http --allow-unauthenticated --memory=2Gi --cpu=2 ` +
          '--min-instances=1 --max-instances=10 --concurrency=4 --timeout=60s ' +
          '--set-env-vars=AUTH=firebase,MODEL=isnet-fp32,INFER_THREADS=2,REQUEST_TIMEOUT_MS=55000,MALLOC_ARENA_MAX=2,MEMORY_LIMIT_MB=2048,' +
          `FIREBASE_PROJECT_ID=${PROJECT},WARMUP_SERVICE_ACCOUNTS=${DEFAULT_WARMER} ` +
          '--set-build-env-vars=MODEL=isnet-fp32,ONNXRUNTIME_NODE_INSTALL=skip --clear-secrets',
      );
      assert.ok(lines[2]!.startsWith('gcloud functions deploy health ') && lines[2]!.includes(' --no-allow-unauthenticated '), lines[2]);
    });

    for (const args of [
      ['--auth=app-check', '--firebase-project=shop-web'],
      ['--auth=api-key,firebase', `--warmup-service-account=${SERVICE_ACCOUNT},other@${PROJECT}.iam.gserviceaccount.com`],
    ]) {
      test(`--dry-run with ${args.join(' ')} prints what a paste runs`, () => {
        const all = [`--project=${PROJECT}`, ...args];
        const dry = runScript('deploy.sh', [...all, '--dry-run']);
        assertSucceeded(dry);
        assert.deepEqual(dry.calls, []);
        const env = { FAKE_GCLOUD_PROJECT_NUMBER: '777' };
        const pasted = runPrinted(dry.stdout, env);
        assertSucceeded(pasted);
        assert.deepEqual(pasted.calls, runScript('deploy.sh', all, env).calls);
        assert.deepEqual(publicFlags(pasted), { removeBackground: true, warmup: true, health: false });
      });
    }
  });

  test('a model without a measured memory deploys with an explicit --memory', () => {
    const run = runScript('deploy.sh', [`--project=${PROJECT}`, '--model=u2netp', '--memory=4Gi']);
    assertSucceeded(run);
    assert.equal(flagsOf(run.calls[0]!).get('--memory'), '4Gi');
    assert.equal(envVarsOf(run.calls[0]!, '--set-build-env-vars').MODEL, 'u2netp');
  });

  test('memory below the measured need deploys, with a warning', () => {
    const run = runScript('deploy.sh', [`--project=${PROJECT}`, '--memory=1Gi']);
    assertSucceeded(run);
    assert.match(run.stderr, /warning: 1Gi is below the 2Gi measured to hold isnet-fp32/);
  });

  test('a failed deploy stops there', () => {
    const run = runScript('deploy.sh', [`--project=${PROJECT}`], { FAKE_GCLOUD_FAIL: 'functions deploy warmup' });
    assert.notEqual(run.status, 0);
    assert.deepEqual(
      run.calls.map((call) => call[2]),
      ['removeBackground', 'warmup'],
    );
    assert.match(run.stderr, /fake failure/);
  });

  test('a failed session-affinity update fails the run, after all three functions are deployed', () => {
    const run = runScript('deploy.sh', [`--project=${PROJECT}`], { FAKE_GCLOUD_FAIL: 'run services update' });
    assert.notEqual(run.status, 0);
    assert.equal(deploysOf(run).length, 3);
    assert.deepEqual(run.calls.at(-1), sessionAffinity());
    assert.match(run.stderr, /fake failure/);
  });

  test('re-running deploys the same commands again (gcloud updates in place)', () => {
    const first = runScript('deploy.sh', [`--project=${PROJECT}`]);
    const second = runScript('deploy.sh', [`--project=${PROJECT}`]);
    assertSucceeded(second);
    assert.deepEqual(second.calls, first.calls);
  });

  test('--dry-run prints one copy-pasteable command per function, and the session affinity, and runs nothing', () => {
    const args = [`--project=${PROJECT}`, '--region=europe-west1', '--memory=3Gi', '--max-upload-bytes=1000000'];
    const dry = runScript('deploy.sh', [...args, '--dry-run']);
    assertSucceeded(dry);
    assert.deepEqual(dry.calls, []);
    const lines = dry.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 4);
    for (const [index, name] of ['removeBackground', 'warmup', 'health'].entries()) {
      assert.ok(lines[index]!.startsWith(`gcloud functions deploy ${name} --project=${PROJECT} --gen2 --region=europe-west1 `), lines[index]);
    }
    assert.equal(lines[3], `gcloud ${sessionAffinity('europe-west1').join(' ')}`);
    const live = runScript('deploy.sh', args);
    const pasted = runPrinted(dry.stdout);
    assertSucceeded(pasted);
    assert.deepEqual(pasted.calls, live.calls);
  });

  test('--dry-run quotes a source path with spaces and quotes', () => {
    const copy = fs.mkdtempSync(path.join(logDir, "a dir with 'quotes' "));
    fs.cpSync(path.join(PROJECT_ROOT, 'scripts'), path.join(copy, 'scripts'), { recursive: true });
    fs.mkdirSync(path.join(copy, 'models'));
    fs.copyFileSync(path.join(PROJECT_ROOT, 'models', 'registry.json'), path.join(copy, 'models', 'registry.json'));
    const log = path.join(logDir, `gcloud-${++runs}.log`);
    const dry = spawnSync(path.join(copy, 'scripts', 'deploy.sh'), [`--project=${PROJECT}`, '--dry-run'], {
      env: cleanEnv({}, log),
      encoding: 'utf8',
    });
    assert.equal(dry.status, 0, dry.stderr);
    const pasted = runPrinted(dry.stdout);
    assertSucceeded(pasted);
    assert.deepEqual(
      deploysOf(pasted).map((call) => flagsOf(call).get('--source')),
      [copy, copy, copy],
    );
  });

  const badInput: { name: string; args: string[]; env?: Env; message: RegExp }[] = [
    { name: 'an unknown flag', args: ['--memroy=2Gi'], message: /unknown option: --memroy=2Gi/ },
    { name: 'no project', args: [], env: { PROJECT: '' }, message: /no project: pass --project=ID or set PROJECT/ },
    { name: 'an invalid project', args: ['--project=My Project'], env: { PROJECT: '' }, message: /invalid project ID/ },
    { name: 'an invalid region', args: ['--region=mars'], message: /invalid region: 'mars'/ },
    { name: 'memory "lots"', args: ['--memory=lots'], message: /memory must be a size like 512Mi, 2Gi or 2048M, got 'lots'/ },
    { name: 'memory from the env', args: [], env: { MEMORY: '2 GB' }, message: /memory must be a size/ },
    { name: 'memory over 32Gi', args: ['--memory=64Gi', '--cpu=8'], message: /between 128Mi and 32Gi/ },
    { name: 'a flag without its value', args: ['--memory'], message: /--memory needs a value/ },
    { name: 'min instances "two"', args: ['--min-instances=two'], message: /min instances must be a whole number, got 'two'/ },
    { name: 'negative min instances', args: ['--min-instances', '-1'], message: /min instances must be a whole number, got '-1'/ },
    { name: 'min instances from the env', args: [], env: { MIN_INSTANCES: '1.5' }, message: /min instances must be a whole number/ },
    { name: 'min over max', args: ['--min-instances=5', '--max-instances=2'], message: /must not exceed max instances/ },
    { name: 'zero max instances', args: ['--max-instances=0'], message: /max instances must be between 1 and 1000/ },
    { name: 'zero concurrency', args: ['--concurrency=0'], message: /concurrency must be between 1 and 1000/ },
    { name: 'CPU 3', args: ['--cpu=3'], message: /CPU must be between 0.08 and 1, or 2, 4, 6 or 8, got '3'/ },
    { name: 'CPU "fast"', args: ['--cpu=fast'], message: /CPU must be a number of CPUs/ },
    { name: 'fractional CPU with concurrency', args: ['--cpu=0.5'], message: /below 1 CPU \(0.5\) Cloud Run allows concurrency 1 only/ },
    { name: 'more memory than 1 CPU allows', args: ['--cpu=1', '--memory=8Gi'], message: /more memory than 1 CPU allows \(at most 4Gi\)/ },
    { name: 'too little memory for 4 CPUs', args: ['--cpu=4', '--memory=1Gi'], message: /4 CPUs need at least 2Gi/ },
    { name: 'a timeout under 10 s', args: ['--timeout=5'], message: /timeout \(seconds\) must be between 10 and 3600/ },
    { name: 'an unknown model', args: ['--model=nope'], message: /unknown model 'nope' \(models\/registry.json has: isnet-fp32 isnet-fp16 isnet-uint8/ },
    { name: 'an unmeasured model without --memory', args: ['--model=u2net'], message: /no measured memory for model u2net: pass --memory/ },
    { name: '--allow-unauthenticated with AUTH=iam', args: ['--allow-unauthenticated'], message: /would make the functions public while the service checks nobody itself/ },
    { name: 'ALLOW_UNAUTHENTICATED with iam,api-key', args: ['--auth=iam,api-key'], env: { ALLOW_UNAUTHENTICATED: 'true' }, message: /AUTH=iam,api-key would make the functions public/ },
    { name: 'an unknown auth mode', args: ['--auth=password'], message: /unknown auth mode 'password' \(known: iam api-key firebase app-check\)/ },
    { name: 'an empty auth', args: ['--auth=,'], message: /--auth needs a comma-separated list of modes \(iam api-key firebase app-check\), got ','/ },
    { name: '--allow-unauthenticated with iam,firebase', args: ['--auth=iam,firebase', '--allow-unauthenticated'], message: /AUTH=iam,firebase would make the functions public while the service checks nobody itself/ },
    { name: 'a Firebase project without firebase or app-check', args: ['--firebase-project=shop-web'], message: /--firebase-project \(FIREBASE_PROJECT_ID\) names the project whose Firebase tokens are accepted: it needs --auth with firebase or app-check, got AUTH=iam/ },
    { name: 'FIREBASE_PROJECT_ID with api-key alone', args: ['--auth=api-key'], env: { FIREBASE_PROJECT_ID: 'shop-web' }, message: /it needs --auth with firebase or app-check, got AUTH=api-key/ },
    { name: 'an invalid Firebase project', args: ['--auth=firebase', '--firebase-project=Shop Web'], message: /invalid Firebase project ID: 'Shop Web'/ },
    { name: 'a warmup account with iam', args: [`--warmup-service-account=${SERVICE_ACCOUNT}`], message: /--warmup-service-account \(WARMUP_SERVICE_ACCOUNTS\) is for public deployments: with AUTH=iam Cloud Run's IAM checks the scheduler's token/ },
    { name: 'WARMUP_SERVICE_ACCOUNTS with iam,app-check', args: ['--auth=iam,app-check'], env: { WARMUP_SERVICE_ACCOUNTS: SERVICE_ACCOUNT }, message: /is for public deployments: with AUTH=iam,app-check/ },
    { name: 'a warmup account that is no email', args: ['--auth=firebase', '--warmup-service-account=warmer'], message: /invalid warmup service account email: 'warmer'/ },
    { name: 'an empty entry among the warmup accounts', args: ['--auth=app-check', `--warmup-service-account=${SERVICE_ACCOUNT},,${DEFAULT_WARMER}`], message: /invalid warmup service account email: ''/ },
    { name: 'a semicolon in a warmup account', args: ['--auth=api-key', `--warmup-service-account=a;b@${PROJECT}.iam.gserviceaccount.com`], message: /invalid warmup service account email/ },
    { name: 'a public deployment of a domain-scoped project with no warmup account', args: ['--project=example.com:shop', '--auth=app-check'], message: /a public deployment of a domain-scoped project needs --warmup-service-account=EMAIL/ },
    { name: 'a CORS wildcard', args: ['--cors-origins=*'], message: /CORS origins must be a comma-separated list of origins/ },
    { name: 'a CORS origin with a path', args: ['--cors-origins=https://app.example.com/'], message: /no \* and no path/ },
    { name: 'a rate limit with iam alone', args: ['--rate-limit-per-minute=10'], message: /a rate limit counts requests per caller \(API key, Firebase user or App Check app\): it needs --auth with api-key, firebase or app-check/ },
    { name: 'a rate limit of zero', args: ['--auth=api-key', '--rate-limit-per-minute=0'], message: /rate limit per minute must be between 1 and 1000000/ },
    { name: 'a bad secret name', args: ['--auth=api-key', '--api-key-secret=a/b'], message: /invalid secret name: 'a\/b'/ },
    { name: 'a bad runtime service account', args: ['--service-account=runner'], message: /invalid service account email: 'runner'/ },
    { name: 'ALLOW_UNAUTHENTICATED=maybe', args: [], env: { ALLOW_UNAUTHENTICATED: 'maybe' }, message: /ALLOW_UNAUTHENTICATED must be true or false/ },
    { name: 'MAX_UPLOAD_BYTES=20MB', args: [], env: { MAX_UPLOAD_BYTES: '20MB' }, message: /MAX_UPLOAD_BYTES must be a whole number/ },
    { name: 'zero infer threads', args: ['--infer-threads=0'], message: /INFER_THREADS must be between 1 and 64/ },
  ];
  for (const { name, args, env, message } of badInput) {
    test(`refuses ${name} before running any gcloud command`, () => {
      const run = runScript('deploy.sh', args, { PROJECT, ...env });
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, message);
      assert.match(run.stderr, /Run deploy\.sh --help for usage/);
      assert.deepEqual(run.calls, []);
      assert.equal(run.stdout, '');
    });
  }
});

describe('deploy-storage.sh', () => {
  const buckets = ['--input-bucket=shop-photos', '--output-bucket=shop-cutouts'];
  const compute = '123456789012-compute@developer.gserviceaccount.com';

  test('grants what the trigger and the function need, then deploys the function on the bucket\'s finalized events with --retry', () => {
    const run = runScript('deploy-storage.sh', [`--project=${PROJECT}`, ...buckets, '--output-prefix=cutouts/', '--storage-options=format=webp&crop=true']);
    assertSucceeded(run);
    assert.deepEqual(run.calls, [
      ['projects', 'describe', PROJECT, '--format=value(projectNumber)'],
      ['storage', 'buckets', 'describe', 'gs://shop-photos', `--project=${PROJECT}`, '--format=value(location)'],
      ['storage', 'service-agent', `--project=${PROJECT}`],
      ['projects', 'add-iam-policy-binding', PROJECT, '--member=serviceAccount:service-123456789012@gs-project-accounts.iam.gserviceaccount.com', '--role=roles/pubsub.publisher'],
      ['projects', 'add-iam-policy-binding', PROJECT, `--member=serviceAccount:${compute}`, '--role=roles/eventarc.eventReceiver'],
      ['storage', 'buckets', 'add-iam-policy-binding', 'gs://shop-photos', `--member=serviceAccount:${compute}`, '--role=roles/storage.objectViewer'],
      ['storage', 'buckets', 'add-iam-policy-binding', 'gs://shop-cutouts', `--member=serviceAccount:${compute}`, '--role=roles/storage.objectUser'],
      [
        'functions', 'deploy', 'removeBackgroundFromStorage', `--project=${PROJECT}`, '--gen2', '--region=us-central1', '--runtime=nodejs22',
        `--source=${PROJECT_ROOT}`, '--entry-point=removeBackgroundFromStorage',
        '--trigger-event-filters=type=google.cloud.storage.object.v1.finalized', '--trigger-event-filters=bucket=shop-photos',
        // The bucket's location, in the lower case Eventarc names locations in.
        '--trigger-location=europe-west1', `--trigger-service-account=${compute}`, '--retry',
        '--memory=2Gi', '--cpu=2', '--min-instances=0', '--max-instances=10', '--concurrency=2', '--timeout=120s',
        '--set-env-vars=MODEL=isnet-fp32,INFER_THREADS=2,REQUEST_TIMEOUT_MS=115000,MALLOC_ARENA_MAX=2,MEMORY_LIMIT_MB=2048,' +
          'INPUT_BUCKET=shop-photos,OUTPUT_BUCKET=shop-cutouts,OUTPUT_PREFIX=cutouts/,STORAGE_OPTIONS=format=webp&crop=true',
        '--set-build-env-vars=MODEL=isnet-fp32,ONNXRUNTIME_NODE_INSTALL=skip',
      ],
      ['functions', 'add-invoker-policy-binding', 'removeBackgroundFromStorage', `--project=${PROJECT}`, '--region=us-central1', `--member=serviceAccount:${compute}`],
    ]);
    assert.ok(run.stderr.includes('start a batch with: gcloud storage cp -r ./photos gs://shop-photos/'), run.stderr);
  });

  test('reads its settings from the environment, and flags win over them', () => {
    const runner = `runner@${PROJECT}.iam.gserviceaccount.com`;
    const trigger = `trigger@${PROJECT}.iam.gserviceaccount.com`;
    const run = runScript('deploy-storage.sh', ['--region', 'europe-west4', '--cpu=4', '--trigger-location=eu', `--trigger-service-account=${trigger}`], {
      PROJECT,
      REGION: 'us-east1',
      INPUT_BUCKET: 'shop-photos',
      INPUT_PREFIX: 'uploads/',
      OUTPUT_BUCKET: 'shop-photos',
      OUTPUT_PREFIX: 'cutouts/',
      STORAGE_OPTIONS: 'roi=0% 0% 50% 50%,format=png',
      MAX_EVENT_AGE: '30m',
      SERVICE_ACCOUNT: runner,
      MEMORY: '4Gi',
      CPU: '2',
      MAX_INSTANCES: '50',
      CONCURRENCY: '1',
      TIMEOUT: '300',
      MAX_UPLOAD_BYTES: '30000000',
    });
    assertSucceeded(run);
    // The accounts are given and the location too: nothing to look up; one bucket gets one grant.
    assert.deepEqual(run.calls.map((call) => call.slice(0, 3).join(' ')), [
      'storage service-agent --project=detourage-test',
      'projects add-iam-policy-binding detourage-test',
      'projects add-iam-policy-binding detourage-test',
      'storage buckets add-iam-policy-binding',
      'functions deploy removeBackgroundFromStorage',
      'functions add-invoker-policy-binding removeBackgroundFromStorage',
    ]);
    assert.equal(flagsOf(run.calls[2]!).get('--member'), `serviceAccount:${trigger}`);
    assert.deepEqual(run.calls[3], ['storage', 'buckets', 'add-iam-policy-binding', 'gs://shop-photos', `--member=serviceAccount:${runner}`, '--role=roles/storage.objectUser']);
    const deploy = run.calls[4]!;
    const flags = flagsOf(deploy);
    assert.deepEqual(
      ['--region', '--trigger-location', '--trigger-service-account', '--service-account', '--memory', '--cpu', '--max-instances', '--concurrency', '--timeout'].map((name) => flags.get(name)),
      ['europe-west4', 'eu', trigger, runner, '4Gi', '4', '50', '1', '300s'],
    );
    // A comma in STORAGE_OPTIONS needs gcloud's other delimiter.
    assert.match(String(flags.get('--set-env-vars')), /^\^;\^MODEL=/);
    assert.deepEqual(envVarsOf(deploy, '--set-env-vars'), {
      MODEL: 'isnet-fp32',
      INFER_THREADS: '4',
      REQUEST_TIMEOUT_MS: '295000',
      MALLOC_ARENA_MAX: '2',
      MEMORY_LIMIT_MB: '4096',
      INPUT_BUCKET: 'shop-photos',
      OUTPUT_BUCKET: 'shop-photos',
      INPUT_PREFIX: 'uploads/',
      OUTPUT_PREFIX: 'cutouts/',
      // envVarsOf splits each entry at its first two = signs.
      STORAGE_OPTIONS: 'roi',
      MAX_EVENT_AGE: '30m',
      MAX_UPLOAD_BYTES: '30000000',
    });
    assert.ok(String(flags.get('--set-env-vars')).includes(';STORAGE_OPTIONS=roi=0% 0% 50% 50%,format=png;'));
  });

  test('--dry-run prints the lookups, the grants and the deploy, and a paste runs what the script runs', () => {
    const args = [`--project=${PROJECT}`, ...buckets];
    const dry = runScript('deploy-storage.sh', [...args, '--dry-run']);
    assertSucceeded(dry);
    assert.deepEqual(dry.calls, []);
    const lines = dry.stdout.trimEnd().split('\n');
    assert.deepEqual(lines.slice(0, 4), [
      `project_number=$(gcloud projects describe ${PROJECT} --format='value(projectNumber)')`,
      `trigger_location=$(gcloud storage buckets describe gs://shop-photos --project=${PROJECT} --format='value(location)')`,
      'trigger_location=${trigger_location,,}',
      `storage_agent=$(gcloud storage service-agent --project=${PROJECT})`,
    ]);
    for (const env of [{}, { FAKE_GCLOUD_PROJECT_NUMBER: '777', FAKE_GCLOUD_BUCKET_LOCATION: 'US' }] as Env[]) {
      const pasted = runPrinted(dry.stdout, env);
      assertSucceeded(pasted);
      assert.deepEqual(pasted.calls, runScript('deploy-storage.sh', args, env).calls);
    }
  });

  const badInput: { name: string; args: string[]; env?: Env; message: RegExp }[] = [
    { name: 'no input bucket', args: ['--output-bucket=shop-cutouts'], message: /no input-bucket: pass --input-bucket=NAME/ },
    { name: 'no output bucket', args: ['--input-bucket=shop-photos'], message: /no output-bucket/ },
    { name: 'a gs:// URL for a bucket', args: ['--input-bucket=gs://shop-photos', '--output-bucket=shop-cutouts'], message: /invalid input-bucket: 'gs:\/\/shop-photos'/ },
    { name: 'one bucket without prefixes', args: ['--input-bucket=shop', '--output-bucket=shop'], message: /would let outputs trigger removals of their own/ },
    { name: 'one bucket, the output prefix inside the input prefix', args: ['--input-bucket=shop', '--output-bucket=shop', '--input-prefix=in/', '--output-prefix=in/out/'], message: /would let outputs trigger removals of their own/ },
    { name: 'a semicolon in the options', args: [...buckets, '--storage-options=format=png;crop=true'], message: /--storage-options may hold no semicolon/ },
    { name: 'a bad event age', args: [...buckets, '--max-event-age=1 day'], message: /--max-event-age must be a duration/ },
    { name: 'a timeout over the event limit', args: [...buckets, '--timeout=600'], message: /timeout \(seconds\) must be between 10 and 540/ },
    { name: 'an upper-case trigger location', args: [...buckets, '--trigger-location=EU'], message: /invalid trigger location: 'EU'/ },
    { name: 'a bad trigger account', args: [...buckets, '--trigger-service-account=trigger'], message: /invalid trigger service account email: 'trigger'/ },
    { name: 'an unknown model', args: [...buckets, '--model=u3net'], message: /unknown model 'u3net'/ },
    { name: 'a fractional CPU with concurrency 2', args: [...buckets, '--cpu=0.5', '--memory=512Mi'], message: /below 1 CPU \(0\.5\) Cloud Run allows concurrency 1 only/ },
  ];
  for (const { name, args, env, message } of badInput) {
    test(`refuses ${name} before running any gcloud command`, () => {
      const run = runScript('deploy-storage.sh', args, { PROJECT, ...env });
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, message);
      assert.match(run.stderr, /Run deploy-storage\.sh --help for usage/);
      assert.deepEqual(run.calls, []);
    });
  }
});

describe('schedule-warmup.sh', () => {
  const base = [`--project=${PROJECT}`, `--service-account=${SERVICE_ACCOUNT}`];

  test('creates the job when there is none: GET to removeBackground with an OIDC token', () => {
    const run = runScript('schedule-warmup.sh', base, { FAKE_GCLOUD_URL: FAKE_URL, FAKE_GCLOUD_MISSING: 'detourage-warmup' });
    assertSucceeded(run);
    assert.deepEqual(run.calls, [
      ['functions', 'describe', 'removeBackground', `--project=${PROJECT}`, '--gen2', '--region=us-central1',
        '--format=value(serviceConfig.uri)'],
      ['functions', 'add-invoker-policy-binding', 'removeBackground', `--project=${PROJECT}`, '--region=us-central1',
        `--member=serviceAccount:${SERVICE_ACCOUNT}`],
      ['scheduler', 'jobs', 'describe', 'detourage-warmup', `--project=${PROJECT}`, '--location=us-central1'],
      ['scheduler', 'jobs', 'create', 'http', 'detourage-warmup', `--project=${PROJECT}`, '--location=us-central1',
        '--schedule=*/5 * * * *', `--uri=${FAKE_URL}`, '--http-method=GET',
        `--oidc-service-account-email=${SERVICE_ACCOUNT}`, `--oidc-token-audience=${FAKE_URL}`,
        '--description=detourage: GET removeBackground to keep its model loaded'],
    ]);
  });

  test('updates the job when it exists, with the same flags', () => {
    const created = runScript('schedule-warmup.sh', base, { FAKE_GCLOUD_MISSING: 'detourage-warmup' });
    const updated = runScript('schedule-warmup.sh', base);
    assertSucceeded(updated);
    const last = updated.calls.at(-1)!;
    assert.deepEqual(last.slice(0, 4), ['scheduler', 'jobs', 'update', 'http']);
    assert.deepEqual(last.slice(4), created.calls.at(-1)!.slice(4));
  });

  test('takes settings from the environment, and flags over them', () => {
    const run = runScript('schedule-warmup.sh', ['--schedule', '*/10 * * * *', '--region=europe-west1'], {
      PROJECT,
      REGION: 'us-east1',
      SCHEDULER_SERVICE_ACCOUNT: SERVICE_ACCOUNT,
      WARMUP_SCHEDULE: '0 * * * *',
      WARMUP_JOB: 'keep-warm',
    });
    assertSucceeded(run);
    const job = run.calls.at(-1)!;
    assert.equal(job[4], 'keep-warm');
    assert.equal(flagsOf(job).get('--schedule'), '*/10 * * * *');
    assert.equal(flagsOf(job).get('--location'), 'europe-west1');
    assert.equal(flagsOf(run.calls[0]!).get('--region'), 'europe-west1');
  });

  test('--url skips the lookup', () => {
    const url = 'https://removebackground-given-ew.a.run.app';
    const run = runScript('schedule-warmup.sh', [...base, `--url=${url}`]);
    assertSucceeded(run);
    assert.deepEqual(
      run.calls.map((call) => call.slice(0, 3).join(' ')),
      ['functions add-invoker-policy-binding removeBackground', 'scheduler jobs describe', 'scheduler jobs update'],
    );
    assert.equal(flagsOf(run.calls.at(-1)!).get('--uri'), url);
    assert.equal(flagsOf(run.calls.at(-1)!).get('--oidc-token-audience'), url);
  });

  test('stops when removeBackground is not deployed', () => {
    const run = runScript('schedule-warmup.sh', base, { FAKE_GCLOUD_MISSING: 'removeBackground' });
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /NOT_FOUND: removeBackground/);
    assert.equal(run.calls.length, 1);
  });

  test('stops when removeBackground has no URL', () => {
    const run = runScript('schedule-warmup.sh', base, { FAKE_GCLOUD_URL: '' });
    assert.equal(run.status, 1);
    assert.match(run.stderr, /removeBackground has no URL yet: deploy it first/);
    assert.equal(run.calls.length, 1);
  });

  test('--dry-run prints the lookup, the binding and create-or-update, and runs nothing', () => {
    const dry = runScript('schedule-warmup.sh', [...base, '--dry-run']);
    assertSucceeded(dry);
    assert.deepEqual(dry.calls, []);
    assert.deepEqual(dry.stdout.trimEnd().split('\n'), [
      `url=$(gcloud functions describe removeBackground --project=${PROJECT} --gen2 --region=us-central1 --format='value(serviceConfig.uri)')`,
      `gcloud functions add-invoker-policy-binding removeBackground --project=${PROJECT} --region=us-central1 --member=serviceAccount:${SERVICE_ACCOUNT}`,
      `if gcloud scheduler jobs describe detourage-warmup --project=${PROJECT} --location=us-central1 >/dev/null 2>&1; then verb=update; else verb=create; fi`,
      `gcloud scheduler jobs "$verb" http detourage-warmup --project=${PROJECT} --location=us-central1 --schedule='*/5 * * * *' --uri="$url" --http-method=GET --oidc-service-account-email=${SERVICE_ACCOUNT} --oidc-token-audience="$url" --description='detourage: GET removeBackground to keep its model loaded'`,
    ]);
    for (const missing of ['', 'detourage-warmup']) {
      const env = { FAKE_GCLOUD_URL: FAKE_URL, FAKE_GCLOUD_MISSING: missing };
      const pasted = runPrinted(dry.stdout, env);
      assertSucceeded(pasted);
      assert.deepEqual(pasted.calls, runScript('schedule-warmup.sh', base, env).calls);
    }
  });

  test('signs as detourage-warmer, the account a public deploy.sh trusts by default, unless told otherwise', () => {
    const run = runScript('schedule-warmup.sh', [`--project=${PROJECT}`], { FAKE_GCLOUD_URL: FAKE_URL });
    assertSucceeded(run);
    assert.equal(flagsOf(run.calls[1]!).get('--member'), `serviceAccount:${DEFAULT_WARMER}`);
    assert.equal(flagsOf(run.calls.at(-1)!).get('--oidc-service-account-email'), DEFAULT_WARMER);
    assert.equal(flagsOf(run.calls.at(-1)!).get('--oidc-token-audience'), FAKE_URL);
  });

  const badInput: { name: string; args: string[]; env?: Env; message: RegExp }[] = [
    { name: 'no service account in a domain-scoped project', args: ['--project=example.com:shop'], message: /no service account: pass --service-account=EMAIL .*a domain-scoped project has no default/ },
    { name: 'a service account that is no email', args: [...base, '--service-account=warmer'], message: /invalid service account email/ },
    { name: 'no project', args: [`--service-account=${SERVICE_ACCOUNT}`], message: /no project/ },
    { name: 'a schedule in words', args: [...base, '--schedule=every 5 minutes'], message: /schedule must be a cron expression with 5 fields/ },
    { name: 'a schedule with 6 fields', args: [...base, '--schedule=0 */5 * * * *'], message: /5 fields/ },
    { name: 'a plain-http URL', args: [...base, '--url=http://example.test/'], message: /the URL must start with https:\/\// },
    { name: 'a job name with spaces', args: [...base, '--job=my job'], message: /invalid scheduler job name: 'my job'/ },
    { name: 'an unknown flag', args: [...base, '--cron=5'], message: /unknown option: --cron=5/ },
  ];
  for (const { name, args, env, message } of badInput) {
    test(`refuses ${name} before running any gcloud command`, () => {
      const run = runScript('schedule-warmup.sh', args, env);
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, message);
      assert.deepEqual(run.calls, []);
    });
  }
});

describe('teardown.sh', () => {
  const describeAndDelete = (group: 'functions' | 'scheduler', name: string, extra: string[] = []): string[][] => {
    const prefix = group === 'functions' ? ['functions'] : ['scheduler', 'jobs'];
    const scope =
      group === 'functions'
        ? [`--project=${PROJECT}`, '--gen2', '--region=us-central1']
        : [`--project=${PROJECT}`, '--location=us-central1'];
    return [
      [...prefix, 'describe', name, ...scope],
      [...prefix, 'delete', name, ...scope, ...extra],
    ];
  };

  test('deletes the job, then the four functions', () => {
    const run = runScript('teardown.sh', [`--project=${PROJECT}`]);
    assertSucceeded(run);
    assert.deepEqual(run.calls, [
      ...describeAndDelete('scheduler', 'detourage-warmup'),
      ...describeAndDelete('functions', 'removeBackground'),
      ...describeAndDelete('functions', 'warmup'),
      ...describeAndDelete('functions', 'health'),
      // Deleting the function deletes its Eventarc trigger; the grants deploy-storage.sh made stay.
      ...describeAndDelete('functions', 'removeBackgroundFromStorage'),
    ]);
  });

  test('--quiet passes --quiet to the deletes', () => {
    const run = runScript('teardown.sh', [`--project=${PROJECT}`, '--quiet', '--job=keep-warm']);
    assertSucceeded(run);
    assert.deepEqual(run.calls, [
      ...describeAndDelete('scheduler', 'keep-warm', ['--quiet']),
      ...describeAndDelete('functions', 'removeBackground', ['--quiet']),
      ...describeAndDelete('functions', 'warmup', ['--quiet']),
      ...describeAndDelete('functions', 'health', ['--quiet']),
      ...describeAndDelete('functions', 'removeBackgroundFromStorage', ['--quiet']),
    ]);
  });

  test('skips what is already gone, so a re-run finishes a partial teardown', () => {
    const run = runScript('teardown.sh', [`--project=${PROJECT}`], { FAKE_GCLOUD_MISSING: 'detourage-warmup,warmup' });
    assertSucceeded(run);
    assert.deepEqual(
      run.calls.filter((call) => call.includes('delete')).map((call) => call[call.indexOf('delete') + 1]),
      ['removeBackground', 'health', 'removeBackgroundFromStorage'],
    );
    assert.match(run.stderr, /skipped, describe failed: .*NOT_FOUND: detourage-warmup/);
  });

  test('--dry-run prints each delete behind its existence check and runs nothing', () => {
    const dry = runScript('teardown.sh', [`--project=${PROJECT}`, '--quiet', '--dry-run']);
    assertSucceeded(dry);
    assert.deepEqual(dry.calls, []);
    const lines = dry.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 5);
    assert.equal(
      lines[1],
      `if gcloud functions describe removeBackground --project=${PROJECT} --gen2 --region=us-central1 >/dev/null 2>&1; ` +
        `then gcloud functions delete removeBackground --project=${PROJECT} --gen2 --region=us-central1 --quiet; fi`,
    );
    const env = { FAKE_GCLOUD_MISSING: 'health' };
    const pasted = runPrinted(dry.stdout, env);
    assertSucceeded(pasted);
    assert.deepEqual(pasted.calls, runScript('teardown.sh', [`--project=${PROJECT}`, '--quiet'], env).calls);
  });

  test('refuses an unknown flag or a missing project before running any gcloud command', () => {
    for (const args of [[`--project=${PROJECT}`, '--force'], ['--quiet']]) {
      const run = runScript('teardown.sh', args);
      assert.equal(run.status, 2, run.stderr);
      assert.match(run.stderr, /unknown option: --force|no project/);
      assert.deepEqual(run.calls, []);
    }
  });
});

test('docs/deploy.md shows what the scripts print, and README.md names every deploy option', () => {
  const docs = fs.readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  const documented = new Set(fs.readFileSync(path.join(PROJECT_ROOT, 'docs', 'deploy.md'), 'utf8').split('\n'));
  const example = ['--project=my-project', '--region=europe-west1', '--dry-run'];
  const printed = [
    ...runScript('deploy.sh', example).stdout.replaceAll(PROJECT_ROOT, '/path/to/detourage').trimEnd().split('\n'),
    ...runScript('schedule-warmup.sh', [...example, '--service-account=detourage-warmer@my-project.iam.gserviceaccount.com'])
      .stdout.trimEnd()
      .split('\n'),
    ...runScript('deploy-storage.sh', [...example, '--input-bucket=my-photos', '--output-bucket=my-cutouts', '--storage-options=format=webp&crop=true'])
      .stdout.replaceAll(PROJECT_ROOT, '/path/to/detourage')
      .trimEnd()
      .split('\n'),
  ];
  assert.equal(printed.length, 18);
  for (const line of printed) assert.ok(documented.has(line), `docs/deploy.md shows:\n${line}`);
  for (const script of ['deploy.sh', 'deploy-storage.sh'] as const) {
    const help = runScript(script, ['--help']).stdout;
    for (const [flag] of help.matchAll(/^ {2}--[a-z-]+/gm)) {
      assert.ok(docs.includes(`\`${flag.trim()}\``), `README.md names ${script}'s ${flag.trim()}`);
    }
  }
});

test('--help describes every option and runs nothing', () => {
  const expected: Record<Script, string[]> = {
    'deploy.sh': ['--project', '--region', '--model', '--memory', '--cpu', '--min-instances', '--max-instances',
      '--concurrency', '--timeout', '--allow-unauthenticated', '--dry-run', 'PROJECT', 'MEMORY', 'ALLOW_UNAUTHENTICATED',
      '--auth', 'firebase', 'app-check', '--firebase-project', 'FIREBASE_PROJECT_ID', '--warmup-service-account',
      'WARMUP_SERVICE_ACCOUNTS', '--no-warmup-service-account'],
    'deploy-storage.sh': ['--project', '--region', '--input-bucket', '--input-prefix', '--output-bucket', '--output-prefix', '--storage-options',
      '--max-event-age', '--trigger-location', '--trigger-service-account', '--service-account', '--model', '--memory', '--cpu',
      '--concurrency', '--timeout', '--dry-run', 'INPUT_BUCKET', 'OUTPUT_BUCKET', 'STORAGE_OPTIONS', 'MAX_EVENT_AGE', 'TRIGGER_LOCATION'],
    'schedule-warmup.sh': ['--project', '--region', '--service-account', '--schedule', '--job', '--url', '--dry-run', 'WARMUP_SERVICE_ACCOUNTS'],
    'teardown.sh': ['--project', '--region', '--job', '--quiet', '--dry-run'],
  };
  for (const [script, words] of Object.entries(expected) as [Script, string[]][]) {
    for (const flag of ['--help', '-h']) {
      const run = runScript(script, [flag]);
      assertSucceeded(run);
      assert.match(run.stdout, /^Usage: /);
      for (const word of words) assert.ok(run.stdout.includes(word), `${script} --help mentions ${word}`);
      assert.deepEqual(run.calls, []);
    }
  }
});
