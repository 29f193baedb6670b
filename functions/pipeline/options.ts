import type { EncodeOptions } from './encode';
import type { LayoutOptions } from './layout';
import type { ShadowOptions } from './shadow';
import type { Rgba } from './types';

/** `quality=high` also runs the model over the mirror image and averages the two maps (infer.ts). */
export type Quality = 'fast' | 'high';

/**
 * Everything a removal request asks for except where its images come from.
 * Defined here, where removal.ts and cost.ts read it; request/options.ts builds it
 * from the HTTP parameters (the CLI through it, from its flags), so the
 * pipeline never imports the layer that parses requests.
 */
export interface RemovalOptions {
  /** A registry name, checked against the deployment's allowed models later; undefined means the default. */
  model: string | undefined;
  /** `size`: the most pixels the image is processed and returned at; null keeps its own resolution. */
  maxPixels: number | null;
  postProcess: boolean;
  refine: boolean;
  quality: Quality;
  layout: LayoutOptions;
  encode: EncodeOptions;
  backgroundColour: Rgba | null;
  /** `semitransparency`: false makes the matte opaque or clear everywhere but a band along the subject's edge. */
  semitransparency: boolean;
  /** `shadow_type` (or `add_shadow`) with `shadow_opacity`; null for none, or an invisible one. */
  shadow: ShadowOptions | null;
}
