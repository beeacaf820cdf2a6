import {lstat, lutimes, readlink, symlink, unlink} from 'node:fs/promises'
import {dirname, isAbsolute, join, resolve} from 'node:path'

import {decodeName, encodeName, fsPathBelow, printableName} from '../lib/byte-names.js'
import {isInside} from '../lib/paths.js'
import {TarMember} from './tar-reader.js'
import {symlinkTarget, unsafe} from './unsafe-members.js'

/**
 * The symlinks of an extraction. A link whose target leads outside the media folder is left out and
 * reported, never made: at once when its text says so, and after every link is made when it leads out
 * through other links. Links come last, so that nothing is written through one.
 */

/** A member left out of an extraction, and why. */
export interface SkippedMember {
  path: string
  why: string
}

/** The link a symlink member becomes once the rest is written, or why it is left out. */
export function plannedLink(
  root: string,
  path: string,
  destination: Buffer,
  member: TarMember,
): PendingLink | SkippedMember {
  const linkTarget = symlinkTarget(member)
  const resolved = resolve(dirname(join(root, path)), linkTarget)
  if (isAbsolute(linkTarget) || !isInside(resolved, root)) return {path, why: leadsOutside(linkTarget)}
  return {destination, member, path, target: linkTarget}
}

/** A symlink to make once every file and folder is written. */
export interface PendingLink {
  destination: Buffer
  member: TarMember
  path: string
  target: string
}

/**
 * Creates the links, then removes, and reports, each one that leads outside the root through other
 * links. Removing one can change where another leads, so the check repeats until nothing changes.
 */
export async function createLinks(root: string, links: PendingLink[]): Promise<SkippedMember[]> {
  const skipped: SkippedMember[] = []
  for (const {destination, member, target} of links) {
    await symlink(encodeName(target), destination).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'EEXIST') throw unsafe(member, 'a file, folder or link of that name was already extracted')
      throw error
    })
  }

  let remaining = links
  for (let changed = true; changed;) {
    changed = false
    const kept: PendingLink[] = []
    for (const link of remaining) {
      if (await staysInside(root, dirname(link.path), link.target)) {
        kept.push(link)
      } else {
        await unlink(link.destination)
        skipped.push({path: link.path, why: `${leadsOutside(link.target)}, through other links`})
        changed = true
      }
    }

    remaining = kept
  }

  for (const {destination, member} of remaining) {
    await lutimes(destination, member.mtime, member.mtime)
  }

  return skipped
}

function leadsOutside(target: string): string {
  return `it is a symlink to ${JSON.stringify(printableName(target))}, which leads outside the media folder`
}

/** How many links one resolution may follow; the kernel gives up at 40 (ELOOP), and so do we. */
const MAX_LINK_HOPS = 40

/**
 * Whether `target`, read as a symlink in the folder `from` (relative to `root`; `.` for the top),
 * resolves inside `root` when the kernel follows it: segment by segment, each link replaced by its own
 * target, `..` applied to where a link led rather than to the text. Past a name that does not exist the
 * rest is read as text, since whatever is created there later must not lead outside either. A loop
 * resolves nowhere, which is safe.
 */
async function staysInside(root: string, from: string, target: string): Promise<boolean> {
  let hops = 0
  const walk = async (start: string[], text: string): Promise<string[] | undefined> => {
    const parts = [...start]
    let missing = false
    for (const segment of text.split('/')) {
      if (segment === '' || segment === '.') continue
      if (segment === '..') {
        if (parts.length === 0) return undefined
        parts.pop()
        continue
      }

      if (missing) {
        parts.push(segment)
        continue
      }

      const path = fsPathBelow(root, [...parts, segment].join('/'))
      const info = await lstat(path).catch(() => {})
      if (info === undefined) {
        missing = true
        parts.push(segment)
      } else if (info.isSymbolicLink()) {
        if (++hops > MAX_LINK_HOPS) return parts
        const next = decodeName(await readlink(path, {encoding: 'buffer'}))
        if (isAbsolute(next)) return undefined
        const resolved = await walk(parts, next)
        if (resolved === undefined) return undefined
        parts.splice(0, parts.length, ...resolved)
      } else {
        parts.push(segment)
      }
    }

    return parts
  }

  return (await walk(from === '.' ? [] : from.split('/'), target)) !== undefined
}
