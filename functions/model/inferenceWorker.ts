/**
 * Runs in a worker thread. onnxruntime-node's `session.run` computes on the
 * thread that calls it, so on the main thread it would freeze the event loop
 * for the whole inference: no health answers, no timeouts, no noticing that a
 * client left, and no decoding of other requests meanwhile.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import type { RunRequest, WorkerMessage, WorkerStartup } from './protocol';

const port = parentPort!;
const startup = workerData as WorkerStartup;

function send(message: WorkerMessage, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

async function serve(): Promise<void> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(startup.file, startup.options);
  } catch (error) {
    send({ type: 'load-failed', message: (error as Error).message });
    return;
  }
  const input = startup.input ?? session.inputNames[0];
  const output = startup.output ?? session.outputNames[0];
  if (!input || !output || !session.inputNames.includes(input) || !session.outputNames.includes(output)) {
    await session.release();
    send({ type: 'load-failed', message: `expected input ${input} and output ${output}, the model has ${session.inputNames.join(',')} → ${session.outputNames.join(',')}` });
    return;
  }

  port.on('message', (request: RunRequest) => {
    void (async () => {
      try {
        const tensor = new ort.Tensor('float32', request.data, [1, 3, request.size, request.size]);
        // Fetch only the output we use: the others cost memory for nothing.
        const results = await session.run({ [input]: tensor }, [output]);
        const result = results[output];
        if (!result || result.type !== 'float32') throw new Error(`no float32 ${output} in the results`);
        const data = result.data as Float32Array;
        send({ type: 'result', id: request.id, data }, [data.buffer as ArrayBuffer]);
      } catch (error) {
        send({ type: 'run-failed', id: request.id, message: (error as Error).message });
      }
    })();
  });
  send({ type: 'ready', input, output });
}

void serve();
