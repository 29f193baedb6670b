import type { EncodeOptions } from './encode';
import type { LayoutOptions } from './layout';
import type { ShadowOptions } from './shadow';
import type { Rgba } from './types';

/**
 * `fast` is one pass; `auto` adds a zoomed pass on a small subject's box;
 * `high` is the mirror average of two, with the same zoomed pass (passes.ts).
 */
export type Quality = 'fast' | 'auto' | 'high';

/**
 * `auto` and `high` zoom only when the box covers less than this share of
 * the image. Measured by `npm run bench:quality` (docs/performance.md): below
 * it the zoomed pass raised small subjects' IoU by up to 0.57 and lowered none
 * by more than 0.002; 0.35 zoomed the same composites, and 0.5 also zoomed a
 * subject at 40% whose IoU fell by 0.18. Mirrored, the zoomed pass added
 * nothing to `high`, and zooming large subjects made it worse.
 */
export const AUTO_ZOOM_MAX_SHARE = 0.25;

/** What `quality` asks for besides a plain pass: the mirror average of the first pass, and when to zoom. */
export interface PassPlan {
  mirrored: boolean;
  /** The largest share of the image the subject's box may cover for the zoomed pass to run: 0 never, 1 whenever it is smaller than the image. */
  zoomBelowShare: number;
  /** The zoomed pass is a mirror average too. */
  zoomMirrored: boolean;
}

export const PASS_PLANS: Readonly<Record<Quality, PassPlan>> = {
  fast: { mirrored: false, zoomBelowShare: 0, zoomMirrored: false },
  auto: { mirrored: false, zoomBelowShare: AUTO_ZOOM_MAX_SHARE, zoomMirrored: false },
  high: { mirrored: true, zoomBelowShare: AUTO_ZOOM_MAX_SHARE, zoomMirrored: false },
};

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
