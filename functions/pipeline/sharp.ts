import sharp from 'sharp';

// Each request decodes a different image, so libvips' operation cache only holds memory.
sharp.cache(false);

export { sharp };
