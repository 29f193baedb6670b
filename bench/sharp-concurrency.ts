/**
 * Preloaded into the server (`node -r dist/bench/sharp-concurrency.js …`) to
 * try another libvips thread count without touching the service: sharp is a
 * singleton, so the server's own import sees this setting.
 */
import sharp from 'sharp';

const threads = Number(process.env.BENCH_SHARP_CONCURRENCY);
if (Number.isInteger(threads) && threads >= 0) sharp.concurrency(threads);
