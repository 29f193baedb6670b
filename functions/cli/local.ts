/**
 * The service's pipeline in this process: one image at a time on the user's
 * own machine, the model loaded on the first image that decodes, once for the
 * whole run.
 */
import type { Config } from '../config';
import { ApiError } from '../errors';
import { Logger } from '../log';
import { ModelHolder } from '../model/holder';
import { resolveModel } from '../model/selection';
import type { RemovalOptions } from '../pipeline/options';
import type { Remover } from './batch';

/**
 * The holder alone, not the HTTP container around it. The service's log lines
 * would interleave with the batch report; they appear only when LOG_LEVEL asks.
 */
function modelHolder(config: Config): ModelHolder {
  const logger = new Logger({
    level: config.logLevel,
    pretty: true,
    write: process.env.LOG_LEVEL ? (line) => process.stderr.write(`${line}\n`) : () => undefined,
  });
  return new ModelHolder(config, undefined, logger);
}

export function localRemover(options: RemovalOptions, config: Config): Remover {
  const holder = modelHolder(config);
  return {
    // onnxruntime already spreads one inference over every core.
    parallel: 1,
    async remove(image) {
      // Here rather than at the top, so that --help and a usage error never load the pipeline and sharp.
      const { planRemoval, removeBackground } = await import('../pipeline/removal');
      // The limits apply; the server's memory admission does not, with one image at a time.
      const plan = await planRemoval({ image, backgroundImage: null, options }, resolveModel(config, options.model), config);
      return (await removeBackground(plan, { holder })).image.body;
    },
    // Without the model no other input can succeed either.
    stopsRun: (error) => (error instanceof ApiError && error.code === 'model_unavailable' ? error.message : undefined),
  };
}
