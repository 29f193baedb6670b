import type { RemovalOptions } from '../pipeline/options';
import type { ShadowOptions } from '../pipeline/shadow';
import { type ParameterValues, parseParameterValues, type RequestParameters } from './parameters';

/** A scaled subject is centred unless told otherwise; an unscaled one stays where it was. */
const CENTRE = { x: 0.5, y: 0.5 };

/**
 * `shadow_type` when given, else `add_shadow`, the boolean remove.bg had
 * before it (deprecated there, still sent by older clients). All three are
 * parsed either way, so a bad `add_shadow` beside a `shadow_type` is still
 * refused. An opacity of 0 is no shadow at all: nothing to draw, and no room
 * for crop to keep.
 */
function shadowOf(values: ParameterValues): ShadowOptions | null {
  const drawn = values.shadow_type ?? values.add_shadow;
  return drawn && values.shadow_opacity > 0 ? { opacity: values.shadow_opacity / 100 } : null;
}

/**
 * The removal's options from the request's parameters. Every value is parsed
 * first (parameters.ts), so a bad one is refused before any image is decoded
 * or fetched; what is left here is how parameters combine.
 */
export function parseRemovalOptions(parameters: RequestParameters): RemovalOptions {
  const values = parseParameterValues(parameters);
  const shadow = shadowOf(values);
  return {
    model: values.model,
    maxPixels: values.size,
    postProcess: values.post_process,
    refine: values.refine,
    quality: values.quality,
    layout: {
      roi: values.roi,
      crop: values.crop,
      cropMargin: values.crop_margin,
      scale: values.scale,
      position: values.position === undefined ? (values.scale === null ? null : CENTRE) : values.position,
      shadow: shadow !== null,
    },
    encode: {
      format: values.format,
      // `channels` wins over the legacy `type=cutout|mask`.
      channels: values.channels ?? values.type ?? 'rgba',
    },
    backgroundColour: values.bg_color,
    semitransparency: values.semitransparency,
    shadow,
  };
}
