import { type Backdrop, solidBackdrop } from './composite';
import { sharp } from './sharp';
import type { DecodedImage, Rgba } from './types';

export function colourBackdrop([red, green, blue, alpha]: Rgba): Backdrop {
  return solidBackdrop(red, green, blue, alpha);
}

/** Scales the background image to cover the output, cropping the overflow evenly, as CSS `cover` does. */
export async function imageBackdrop(background: DecodedImage, width: number, height: number): Promise<Backdrop> {
  const source = { width: background.width, height: background.height };
  const cover = { fit: 'cover', position: 'centre', kernel: 'lanczos3' } as const;
  const rgb = await sharp(background.rgb, { raw: { ...source, channels: 3 } })
    .resize(width, height, cover)
    .raw()
    .toBuffer();
  const alpha = background.alpha
    ? await sharp(background.alpha, { raw: { ...source, channels: 1 } })
        .resize(width, height, cover)
        // A resized 1-channel raw image comes back with 3 channels unless told otherwise.
        .extractChannel(0)
        .raw()
        .toBuffer()
    : null;
  return { rgb, alpha, stride: 1 };
}
