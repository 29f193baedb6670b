/**
 * Turns the command line's inputs (files, folders, `*`/`?` patterns) into a
 * list of files. Node 20 has no fs.glob, and a quoted `'photos/*.jpg'` reaches
 * us unexpanded, so patterns in the file name are matched here.
 */
import type { Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

export interface InputFile {
  /** As given on the command line, or joined onto the folder that was given. */
  path: string;
  /** Below the folder that was given, for --recursive; outputs mirror it. */
  subdirectory: string;
}

export interface InputProblem {
  input: string;
  message: string;
}

export interface ExpandedInputs {
  files: InputFile[];
  problems: InputProblem[];
}

/** Extensions a folder is scanned for; given files are read whatever their name, the decoder goes by the bytes. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(['.jpg', '.jpeg', '.jpe', '.png', '.webp', '.avif', '.gif', '.tif', '.tiff']);

/** Our own earlier outputs, which a second run over the same folder must not cut out again. */
const EARLIER_OUTPUT = /\.(cutout|mask)\.(png|webp|jpg)$/i;

export function hasWildcards(text: string): boolean {
  return /[*?]/.test(text);
}

/** `*` is any run of characters, `?` one character; the whole name must match. */
export function wildcardPattern(pattern: string): RegExp {
  const source = [...pattern]
    .map((character) => {
      if (character === '*') return '.*';
      if (character === '?') return '.';
      return character.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
    })
    .join('');
  return new RegExp(`^${source}$`, 's');
}

async function statOrNull(filePath: string): Promise<import('node:fs').Stats | null> {
  try {
    return await fs.stat(filePath);
  } catch {
    return null;
  }
}

/** Sorted so that a batch runs, and reports, in a predictable order. */
async function listFolder(
  folder: string,
  accept: (name: string) => boolean,
  recursive: boolean,
  subdirectory = '',
): Promise<InputFile[]> {
  const entries: Dirent[] = await fs.readdir(path.join(folder, subdirectory), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const files: InputFile[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const relative = path.join(subdirectory, entry.name);
    const full = path.join(folder, relative);
    // Symbolic links are followed, as a shell glob would.
    const stat = entry.isSymbolicLink() ? await statOrNull(full) : entry;
    if (stat?.isDirectory()) {
      if (recursive) files.push(...(await listFolder(folder, accept, recursive, relative)));
    } else if (stat?.isFile() && accept(entry.name)) {
      files.push({ path: full, subdirectory });
    }
  }
  return files;
}

function isImageName(name: string): boolean {
  return IMAGE_EXTENSIONS.has(path.extname(name).toLowerCase()) && !EARLIER_OUTPUT.test(name);
}

async function expandOne(input: string, recursive: boolean): Promise<InputFile[] | InputProblem> {
  const stat = await statOrNull(input);
  if (stat?.isFile()) return [{ path: input, subdirectory: '' }];
  if (stat?.isDirectory()) {
    const files = await listFolder(input, isImageName, recursive);
    return files.length > 0 ? files : { input, message: 'the folder holds no images (.jpg, .png, .webp, .avif, .gif, .tif)' };
  }
  if (stat) return { input, message: 'not a file or a folder' };
  const folder = path.dirname(input);
  const namePattern = path.basename(input);
  if (hasWildcards(folder)) return { input, message: 'wildcards are supported in the file name only, not in folder names' };
  if (!hasWildcards(namePattern)) return { input, message: 'no such file or folder' };
  const pattern = wildcardPattern(namePattern);
  let files: InputFile[];
  try {
    files = await listFolder(folder, (name) => pattern.test(name) && !EARLIER_OUTPUT.test(name), recursive);
  } catch {
    return { input, message: `no such folder ${folder}` };
  }
  return files.length > 0 ? files : { input, message: 'no file matches' };
}

/** Every input in order, each file once; inputs that name nothing become problems, not errors. */
export async function expandInputs(inputs: readonly string[], options: { recursive: boolean }): Promise<ExpandedInputs> {
  const files: InputFile[] = [];
  const problems: InputProblem[] = [];
  const seen = new Set<string>();
  for (const input of inputs) {
    const expanded = await expandOne(input, options.recursive);
    if (!Array.isArray(expanded)) {
      problems.push(expanded);
      continue;
    }
    for (const file of expanded) {
      const key = path.resolve(file.path);
      if (seen.has(key)) continue;
      seen.add(key);
      files.push(file);
    }
  }
  return { files, problems };
}

/** True for an existing folder, or a path written as one (`out/`). */
export async function isFolderTarget(target: string): Promise<boolean> {
  if (target.endsWith('/') || target.endsWith(path.sep)) return true;
  return (await statOrNull(target))?.isDirectory() ?? false;
}

/** Whether the input names exactly one file by itself (not via a folder or a pattern). */
export async function isSingleFile(inputs: readonly string[]): Promise<boolean> {
  return inputs.length === 1 && ((await statOrNull(inputs[0]!))?.isFile() ?? false);
}
