import os from 'node:os';
import sharp from 'sharp';

// Each request decodes a different image, so libvips' operation cache only holds memory.
sharp.cache(false);
// sharp picks 1 thread on glibc. One per core (2 on the deployed instance) halves the 12 MP mask
// upscale without slowing an overlapping inference (bench/NOTES.md, sharp.concurrency 1 vs 2).
sharp.concurrency(os.availableParallelism());

export { sharp };
