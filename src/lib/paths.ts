import {lstat, readlink, realpath} from 'node:fs/promises'
import {basename, dirname, isAbsolute, join, relative, resolve, sep} from 'node:path'

import {BackupError} from '../errors.js'

/** True for `folder` itself and anything below it, by the names alone. */
export function isInside(path: string, folder: string): boolean {
  const from = relative(folder, path)
  return from === '' || (from !== '..' && !from.startsWith(`..${sep}`) && !isAbsolute(from))
}

/**
 * {@link isInside}, after following links: `./backups` that is a link into the media folder is inside
 * it. Parts of a path that do not exist yet are taken as named, below their nearest existing folder.
 */
export async function resolvesInside(path: string, folder: string): Promise<boolean> {
  return isInside(await realPathSoFar(path), await realPathSoFar(folder))
}

async function realPathSoFar(path: string): Promise<string> {
  try {
    return await realpath(path)
  } catch {
    const parent = dirname(path)
    return parent === path ? path : join(await realPathSoFar(parent), basename(path))
  }
}

/** Links followed at most, as Linux's path resolution does (ELOOP beyond). */
const MAX_LINKS = 40

/**
 * Where `path` leads once every symbolic link is followed, also when the last link leads to nothing
 * yet: a database file or media folder kept on a volume and linked from the app folder, on a new
 * machine whose volume is still empty. A restore writes there, beside the real file, and the links
 * stay: replacing the link instead left the real database as it was, and the restored one in the
 * app folder, which the next deploy replaces. The folder it ends in is resolved too, as far as it
 * exists. Throws ELOOP for a chain of links that does not end.
 */
export async function followLinks(path: string): Promise<string> {
  let current = resolve(path)
  for (let followed = 0; ; followed++) {
    const info = await lstat(current).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return
      throw error
    })
    if (!info?.isSymbolicLink()) break
    if (followed === MAX_LINKS) {
      throw Object.assign(new Error(`too many levels of symbolic links: ${path}`), {code: 'ELOOP', path})
    }

    current = resolve(dirname(current), await readlink(current))
  }

  return join(await realPathSoFar(dirname(current)), basename(current))
}

/**
 * {@link followLinks} for a restore's target (`what`: "the database file", "the media folder"): a
 * chain of links that does not end is refused, naming the path, before anything is written.
 */
export async function restoreTarget(path: string, what: string): Promise<string> {
  try {
    return await followLinks(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ELOOP') throw error
    throw new BackupError('OUTPUT_UNAVAILABLE', `${what} ${path} is a chain of symbolic links that does not end.`, {
      cause: error,
      suggestion: `Point the config at the ${what.replace(/^the /i, '')} itself, or mend the links (\`ls -l ${path}\`); nothing was changed.`,
    })
  }
}
