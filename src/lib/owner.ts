import {lchown, stat} from 'node:fs/promises'
import {dirname} from 'node:path'

import {run} from './process.js'

export interface Owner {
  gid: number
  uid: number
}

/**
 * Whom restored files should belong to: the owner of what they replace, or, where nothing is there
 * yet, of the folder they are made in. A restore run as root (root's cron, sudo) made them root's,
 * and the app, which runs as its own user, could then neither write its database ("attempt to write a
 * readonly database") nor add uploads to a restored folder. Only root can give files away, and only
 * root needs to: anyone else's restore makes them theirs, as what they replaced was. Undefined where
 * there is nothing to give: not root, or root's already.
 */
export async function restoredOwner(target: string): Promise<Owner | undefined> {
  if (process.getuid?.() !== 0) return undefined
  const info = (await stat(target).catch(() => {})) ?? (await stat(dirname(target)).catch(() => {}))
  if (info === undefined || (info.uid === 0 && info.gid === 0)) return undefined
  return {gid: info.gid, uid: info.uid}
}

/**
 * Gives `path` to `owner`, and everything under it where it is a folder; links themselves, never what
 * they lead to. A file system that keeps no owners (vfat, some network and FUSE mounts) refuses the
 * first change, and then nothing is changed: its files belong to whom it says whatever is done.
 */
export async function giveTo(path: string, owner: Owner, options: {signal?: AbortSignal; tree?: boolean} = {}) {
  try {
    await lchown(path, owner.uid, owner.gid)
  } catch (error) {
    if (['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EPERM'].includes((error as NodeJS.ErrnoException).code ?? '')) return
    throw error
  }

  // One program for a whole tree: a call a name from here would be a round trip through the thread pool.
  if (options.tree) await run('chown', ['-R', '-h', '--', `${owner.uid}:${owner.gid}`, path], {signal: options.signal})
}
