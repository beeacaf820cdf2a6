import {BackupError} from '../errors.js'
import {printableName} from '../lib/byte-names.js'
import {MEDIA_PREFIX} from './media-tar.js'
import {TarMember} from './tar-reader.js'

/**
 * What extraction and the archive's check refuse in a member, by the same rules: a path that could
 * reach outside media/, a symlink with no target, a type that media never holds; and the error that
 * says so, which promises the user that nothing was written outside the target.
 */

/** The member's path below `media/`, or throws when it could reach outside the target. */
export function safePath(member: TarMember): string {
  const raw = member.path
  if (!raw.startsWith(MEDIA_PREFIX) && `${raw}/` !== MEDIA_PREFIX) {
    throw unsafe(member, 'it is outside media/')
  }

  const path = raw.slice(MEDIA_PREFIX.length).replace(/\/$/, '')
  if (path === '') return ''
  if (path.includes('\0')) throw unsafe(member, 'its name holds a NUL')
  if (path.split('/').some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw unsafe(member, 'its path has an empty, "." or ".." segment')
  }

  return path
}

/** A symlink member's target, or throws when it has none a link could hold. */
export function symlinkTarget(member: TarMember): string {
  const target = member.linkTarget ?? ''
  if (target === '' || target.includes('\0')) throw unsafe(member, 'it is a symlink with no target')
  return target
}

/** The error for a member that is refused, and why. */
export function unsafe(member: string | TarMember, why: string): BackupError {
  const name = typeof member === 'string' ? member : member.path
  return new BackupError(
    'INTEGRITY',
    `The media archive is unsafe: member ${JSON.stringify(printableName(name))} is refused: ${why}.`,
    {
      suggestion:
        'Nothing was written outside the target. The archive was crafted or damaged; restore from another backup.',
    },
  )
}

/** A member type in words, for the error that refuses it. */
export function describeType(rawType: string): string {
  const names: Record<string, string> = {
    BlockDevice: 'block device',
    CharacterDevice: 'character device',
    FIFO: 'FIFO',
    Link: 'hard link',
  }
  return names[rawType] ?? `"${rawType}" member`
}
