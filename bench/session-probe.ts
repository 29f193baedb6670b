/**
 * One session configuration in a process of its own, so its peak RSS is its
 * own. Run by levers.ts:
 *
 *   node dist/bench/session-probe.js '{"model":"isnet-fp16","overrides":{"enableCpuMemArena":true},"iterations":5}'
 *
 * Prints one JSON line: creation time, first and later run times, and RSS.
 */
import type { InferenceSession } from 'onnxruntime-node';
import { loadConfig } from '../functions/config';
import { findModel } from '../functions/model/registry';
import { createSession, inputTensor, modelInput, timeRuns } from './floor';
import { median, peakRssMiB, round, rssMiB } from './stats';

export interface ProbeRequest {
  model: string;
  /** Another weights file for the same registry entry (e.g. the fp32 rewrite); default the model's own. */
  file?: string;
  overrides?: InferenceSession.SessionOptions;
  iterations: number;
}

export interface ProbeResult {
  createMs: number;
  firstRunMs: number;
  samplesMs: number[];
  medianMs: number;
  /** After creating the session, before any run: weights and graph. */
  rssAfterCreateMiB: number;
  peakAfterCreateMiB: number;
  peakRssMiB: number;
  rssAfterRunsMiB: number;
}

async function main(): Promise<void> {
  const request = JSON.parse(process.argv[2] ?? '{}') as ProbeRequest;
  const entry = findModel(request.model);
  if (!entry) throw new Error(`unknown model ${request.model}`);
  const settings = loadConfig({ ...process.env, MODEL: request.model });
  const tensor = inputTensor(await modelInput(entry));
  const model = await createSession(entry, settings, request.overrides, request.file);
  const rssAfterCreateMiB = await rssMiB('self');
  const peakAfterCreateMiB = await peakRssMiB('self');
  const { firstRunMs, samplesMs } = await timeRuns(model, tensor, request.iterations);
  const result: ProbeResult = {
    createMs: round(model.createMs),
    firstRunMs: round(firstRunMs),
    samplesMs: samplesMs.map((ms) => round(ms)),
    medianMs: round(median(samplesMs)),
    rssAfterCreateMiB: round(rssAfterCreateMiB),
    peakAfterCreateMiB: round(peakAfterCreateMiB),
    peakRssMiB: round(await peakRssMiB('self')),
    rssAfterRunsMiB: round(await rssMiB('self')),
  };
  console.log(JSON.stringify(result));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
