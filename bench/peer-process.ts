/**
 * The peer (@imgly/background-removal-node, AGPL) in a process of its own:
 * bench/peer-worker.ts forked with the deploy's environment, asked over IPC to
 * run an image N times and, last, for its peak RSS. Shared by `bench:peer`
 * and `bench`'s peer ratio.
 */
import { type ChildProcess, fork } from 'node:child_process';
import path from 'node:path';
import type { PeerReply, PeerRequest, WarmSamples } from './peer-worker';
import { DEPLOYED_ENV } from './server-process';

export interface PeerProcess {
  pid: number;
  run(request: Extract<PeerRequest, { kind: 'run' }>): Promise<WarmSamples>;
  /** Its peak RSS after everything it ran; it exits afterwards. */
  finish(): Promise<number>;
  kill(): void;
}

export function forkPeer(peerDir: string): PeerProcess {
  const child: ChildProcess = fork(path.join(__dirname, 'peer-worker.js'), ['--peer-dir', peerDir], {
    env: { ...process.env, ...DEPLOYED_ENV },
    serialization: 'advanced',
    // Anything it prints goes to stderr, so that the JSON line stays last on stdout.
    stdio: ['ignore', 2, 2, 'ipc'],
  });
  if (child.pid === undefined) throw new Error('the peer worker could not be spawned');
  const ask = (request: PeerRequest): Promise<Exclude<PeerReply, { kind: 'error' }>> =>
    new Promise((resolve, reject) => {
      const onExit = (code: number | null): void => {
        child.off('message', onMessage);
        reject(new Error(`the peer worker exited with ${code}`));
      };
      const onMessage = (reply: PeerReply): void => {
        child.off('exit', onExit);
        if (reply.kind === 'error') reject(new Error(`peer: ${reply.message}`));
        else resolve(reply);
      };
      child.once('exit', onExit);
      child.once('message', onMessage);
      child.send(request);
    });
  return {
    pid: child.pid,
    run: async (request) => {
      const reply = await ask(request);
      if (reply.kind !== 'samples') throw new Error(`peer: expected samples, got ${reply.kind}`);
      return { firstMs: reply.firstMs, samplesMs: reply.samplesMs, bytes: reply.bytes };
    },
    finish: async () => {
      const reply = await ask({ kind: 'finish' });
      if (reply.kind !== 'finished') throw new Error(`peer: expected its peak RSS, got ${reply.kind}`);
      return reply.peakRssMiB;
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

