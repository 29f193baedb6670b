import type { Admission } from '../../functions/handlers/admission';
import type { Gate } from '../../functions/model/gate';

/**
 * What a test sees of a gate, counted around its `run` by the test itself, so
 * that the gate carries no counters that only tests read.
 */
export interface GateWatch {
  /** Tasks the gate let start that have not finished. */
  readonly active: number;
  /** The weight those tasks hold. */
  readonly inUse: number;
  /** Calls still waiting for their task to start: neither started, refused nor aborted. */
  readonly queued: number;
}

/** Watches `gate` from now on: its `run` is wrapped on this one object, its class is left as it is. */
export function watchGate(gate: Gate): GateWatch {
  const watch = { active: 0, inUse: 0, queued: 0 };
  const run = gate.run.bind(gate);
  gate.run = async <T>(task: () => Promise<T>, signal?: AbortSignal, weight = 1): Promise<T> => {
    let started = false;
    watch.queued += 1;
    try {
      // A task the gate admits at once starts inside this call, so it is never seen as queued.
      return await run(
        async () => {
          started = true;
          watch.queued -= 1;
          watch.active += 1;
          watch.inUse += weight;
          try {
            return await task();
          } finally {
            watch.active -= 1;
            watch.inUse -= weight;
          }
        },
        signal,
        weight,
      );
    } finally {
      if (!started) watch.queued -= 1;
    }
  };
  return watch;
}

export type AdmissionWatch = Record<keyof Admission, GateWatch>;

/** Watches the three gates of a server's admission. */
export function watchAdmission(admission: Admission): AdmissionWatch {
  return { fetches: watchGate(admission.fetches), requests: watchGate(admission.requests), memory: watchGate(admission.memory) };
}
