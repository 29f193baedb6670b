import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * Written beside the target and then moved into place, so an interrupted run
 * never leaves a truncated output that a re-run would keep. Without
 * `overwrite` (--force) the move is a hard link, which fails with EEXIST if
 * the output appeared since it was checked.
 */
export async function writeFileAtomically(output: string, body: Buffer, overwrite: boolean): Promise<void> {
  await fs.mkdir(path.dirname(output), { recursive: true });
  const temporary = `${output}.${process.pid}.tmp`;
  try {
    // Inside the try: a write cut short (a full disk) leaves a partial temporary file too.
    await fs.writeFile(temporary, body);
    if (overwrite) await fs.rename(temporary, output);
    else await linkExclusively(temporary, output);
  } finally {
    await fs.rm(temporary, { force: true });
  }
}

/** Some file systems (FAT, some network mounts) have no hard links: an exclusive copy is the next best. */
async function linkExclusively(source: string, target: string): Promise<void> {
  try {
    await fs.link(source, target);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw error;
    await fs.copyFile(source, target, fsConstants.COPYFILE_EXCL);
  }
}

/** Rejects if the write fails (a closed pipe, say), so that the input is reported as failed. */
export function writeToStdout(body: Buffer): Promise<void> {
  return new Promise<void>((resolve, reject) => process.stdout.write(body, (error) => (error ? reject(error) : resolve())));
}
