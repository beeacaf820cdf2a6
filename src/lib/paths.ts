import {realpath} from 'node:fs/promises'
import {basename, dirname, isAbsolute, join, relative, sep} from 'node:path'

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
