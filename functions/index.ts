/**
 * The functions framework's entry (package.json `main`). Every deployed
 * function loads this module, so it imports nothing heavy: onnxruntime and
 * sharp are loaded on first use by the removal path only, and
 * @google-cloud/storage by the storage function's first event.
 */
import { cloudEvent, http } from '@google-cloud/functions-framework';
import { createServices } from './app';
import { loadConfig, STORAGE_FUNCTION } from './config';

/** The lazy model holder inside is the only module-level state. */
export const detourage = createServices(loadConfig());

http('health', detourage.handlers.health);
http('warmup', detourage.handlers.warmup);
http('removeBackground', detourage.handlers.removeBackground);
cloudEvent(STORAGE_FUNCTION, detourage.events.removeBackgroundFromStorage);
