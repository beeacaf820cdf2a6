import {realpathSync} from 'node:fs'
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
export function resolvesInside(path: string, folder: string): boolean {
  return isInside(realPathSoFar(path), realPathSoFar(folder))
}

function realPathSoFar(path: string): string {
  try {
    return realpathSync(path)
  } catch {
    const parent = dirname(path)
    return parent === path ? path : join(realPathSoFar(parent), basename(path))
  }
}
