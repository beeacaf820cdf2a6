import {lstat, realpath} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'

/** Why a folder is not safe to write plaintext into: the folder on its way that another user can change. */
export interface SharedFolder {
  /** The folder that another user can change: `folder` itself or one above it. */
  path: string
  why: string
}

/**
 * Whether another user could change `folder` under a command that writes plaintext into it, and how:
 * a folder on its way (itself included) that belongs to another user, or that every user may write
 * without the sticky bit (which keeps them from renaming what is not theirs, as in /tmp). Such a user
 * could swap a folder the command made for a link to one of theirs, or plant a link where it writes
 * a file, and so read what it writes, or, where it runs as root, make it overwrite any file. OpenSSH
 * checks ~/.ssh the same way. Root's folders are trusted; so is group write, since most users have a
 * group of their own (a umask of 002).
 *
 * `folder` need not exist: the folders it would be made in are checked, and what the command makes
 * there is its own. Both ways to it are checked: the path as given (whose links someone could swap)
 * and the real one (where the writes land). Undefined where nothing is shared, or where there are no
 * Unix users to tell apart.
 */
export async function sharedFolderOn(folder: string): Promise<SharedFolder | undefined> {
  const uid = process.getuid?.()
  if (uid === undefined) return undefined
  const given = resolve(folder)
  let existing = given
  while ((await lstat(existing).catch(() => {})) === undefined && dirname(existing) !== existing) {
    existing = dirname(existing)
  }

  const real = await realpath(existing).catch(() => existing)
  for (const start of real === existing ? [existing] : [existing, real]) {
    for (let current = start; ; current = dirname(current)) {
      const info = await lstat(current).catch(() => {})
      if (info !== undefined && !info.isSymbolicLink()) {
        if (info.uid !== uid && info.uid !== 0) return {path: current, why: `belongs to another user (uid ${info.uid})`}
        if (hasBit(info.mode, 0o002) && !hasBit(info.mode, 0o1000))
          return {path: current, why: 'may be written by every user'}
      }

      if (dirname(current) === current) break
    }
  }

  return undefined
}

function hasBit(mode: number, bit: number): boolean {
  return Math.floor(mode / bit) % 2 === 1
}
