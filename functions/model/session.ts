import fs from 'node:fs/promises';
import type { InferenceSession } from 'onnxruntime-node';
import { modelUnavailable } from '../errors';
import { type ModelEntry, modelFilePath } from './registry';

export interface LoadedModel {
  entry: ModelEntry;
  session: InferenceSession;
  inputName: string;
  outputName: string;
}

export interface SessionSettings {
  modelsDir: string;
  inferThreads: number;
}

/**
 * Measured here on IS-Net 1024²: the default CPU arena and memory pattern
 * roughly double peak RSS (2.2–2.5 GB) for no speed gain.
 */
export function sessionOptions(settings: SessionSettings): InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    enableCpuMemArena: false,
    enableMemPattern: false,
    executionMode: 'sequential',
    intraOpNumThreads: settings.inferThreads,
    interOpNumThreads: 1,
  };
}

/** onnxruntime-node is imported here, on first load, so health never pays for it. */
export async function loadModel(entry: ModelEntry, settings: SessionSettings): Promise<LoadedModel> {
  const file = modelFilePath(settings.modelsDir, entry);
  try {
    await fs.access(file);
  } catch (error) {
    throw modelUnavailable(
      `The weights of model ${entry.name} are missing (${entry.name}.onnx in the models directory); fetch them with "npm run models:fetch -- ${entry.name}".`,
      error,
    );
  }
  const ort = await import('onnxruntime-node');
  let session: InferenceSession;
  try {
    session = await ort.InferenceSession.create(file, sessionOptions(settings));
  } catch (error) {
    throw modelUnavailable(
      `The weights of model ${entry.name} could not be loaded: the file is corrupt or incomplete; fetch them again with "npm run models:fetch -- ${entry.name}".`,
      error,
    );
  }
  const inputName = entry.input ?? session.inputNames[0];
  const outputName = entry.output ?? session.outputNames[0];
  if (!inputName || !outputName || !session.inputNames.includes(inputName) || !session.outputNames.includes(outputName)) {
    await session.release();
    throw modelUnavailable(`The weights of model ${entry.name} do not have the inputs and outputs the registry describes.`);
  }
  return { entry, session, inputName, outputName };
}
