import os from 'node:os';
import sharp from 'sharp';

// Each request decodes a different image, so libvips' operation cache only holds memory.
sharp.cache(false);
// sharp picks 1 thread on glibc; 2 halve the 12 MP mask upscale without slowing an overlapping inference.
sharp.concurrency(os.availableParallelism());

export { sharp };
