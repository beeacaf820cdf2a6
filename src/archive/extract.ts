import {createHash} from 'node:crypto'
import {createWriteStream} from 'node:fs'
import {lstat, mkdir, readlink, rm, symlink, utimes} from 'node:fs/promises'
import {dirname, isAbsolute, join, relative, resolve, sep} from 'node:path'
import {Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {BackupError} from '../errors.js'
import {ListingCheck} from './listing.js'
import {LISTING_MEMBER, MEDIA_PREFIX} from './media-tar.js'
import {readTar, TarMember} from './tar-reader.js'

export interface ExtractSummary {
  bytes: number
  files: number
}

/**
 * Extracts the `media/` members of a media archive into `target`, a folder that must not exist yet,
 * and checks every file against the archive's MANIFEST.json.
 *
 * Nothing is ever written outside `target`. Refused, with an INTEGRITY error naming the member:
 * absolute paths, `..` and other odd path segments, symlinks whose target leaves the folder, any path
 * that would pass through a symlink, hard links, device nodes, FIFOs, and members outside `media/`.
 * Our own archives contain none of these, so meeting one means the archive was crafted or damaged.
 *
 * Symlinks are created last, once every file and folder is in place, so nothing is ever written
 * through one; then each is resolved the way the kernel will resolve it, following the links it
 * passes through, and any that leads outside `target` fails the extraction. On failure `target`
 * is removed.
 */
export async function extractMediaArchive(tar: Readable, target: string): Promise<ExtractSummary> {
  const root = resolve(target)
  await mkdir(root, {mode: 0o755})
  try {
    return await extractInto(tar, root)
  } catch (error) {
    await rm(root, {force: true, recursive: true})
    throw error
  }
}

async function extractInto(tar: Readable, root: string): Promise<ExtractSummary> {
  const check = new ListingCheck()
  const links: Array<{destination: string; member: TarMember; target: string}> = []
  let files = 0
  let bytes = 0
  let listed = false
  try {
    for await (const member of readTar(tar)) {
      if (member.path === LISTING_MEMBER) {
        await check.verify(member.body)
        listed = true
        break
      }

      const path = safePath(member)
      if (path === '') continue
      const destination = join(root, ...path.split('/'))
      await ensureParents(root, path)
      switch (member.type) {
        case 'directory': {
          await mkdirNoFollow(destination, member)
          break
        }

        case 'file': {
          check.add(path, await writeFile(member, destination))
          files++
          bytes += member.size
          break
        }

        case 'symlink': {
          const linkTarget = member.linkTarget ?? ''
          const resolved = resolve(dirname(destination), linkTarget)
          if (isAbsolute(linkTarget) || !isInside(root, resolved) || linkTarget.includes('\0')) {
            throw unsafe(member, `it is a symlink to ${JSON.stringify(linkTarget)}, outside the media folder`)
          }

          links.push({destination, member, target: linkTarget})
          break
        }

        default: {
          throw unsafe(member, `it is a ${describeType(member.rawType)}, which media never contains`)
        }
      }
    }
  } catch (error) {
    if (error instanceof BackupError) throw error
    throw new BackupError('INTEGRITY', `The media archive is damaged: ${(error as Error).message}.`, {
      cause: error,
      suggestion: 'Restore from another backup; `divio app backup verify` checks them all.',
    })
  }

  // The listing is the last member: an archive without one is incomplete.
  if (!listed) await check.verify()
  for (const {destination, member, target} of links) {
    await symlink(target, destination).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'EEXIST') throw unsafe(member, 'a file, folder or link of that name was already extracted')
      throw error
    })
  }

  for (const {destination, member, target} of links) {
    if (!(await staysInside(root, dirname(destination), target))) {
      throw unsafe(
        member,
        `it is a symlink to ${JSON.stringify(target)}, which leads outside the media folder through other links`,
      )
    }
  }

  return {bytes, files}
}

/** How many links one resolution may follow; the kernel gives up at 40 (ELOOP), and so do we. */
const MAX_LINK_HOPS = 40

/**
 * Whether `target`, read as a symlink in `folder`, resolves inside `root` when the kernel follows it:
 * segment by segment, each link replaced by its own target, `..` applied to where a link led rather
 * than to the text. Past a name that does not exist the rest is read as text, since whatever is
 * created there later must not lead outside either. A loop resolves nowhere, which is safe.
 */
async function staysInside(root: string, folder: string, target: string): Promise<boolean> {
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

      const path = join(root, ...parts, segment)
      const info = await lstat(path).catch(() => {})
      if (info === undefined) {
        missing = true
        parts.push(segment)
      } else if (info.isSymbolicLink()) {
        if (++hops > MAX_LINK_HOPS) return parts
        const next = await readlink(path)
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

  const start = relative(root, folder)
  return (await walk(start === '' ? [] : start.split(sep), target)) !== undefined
}

/** The member's path below `media/`, or throws when it could reach outside the target. */
function safePath(member: TarMember): string {
  const raw = member.path
  if (!raw.startsWith(MEDIA_PREFIX) && `${raw}/` !== MEDIA_PREFIX) {
    throw unsafe(member, 'it is outside media/')
  }

  const path = raw.slice(MEDIA_PREFIX.length).replace(/\/$/, '')
  if (path === '') return ''
  if (path.includes('\0') || path.includes('\\')) throw unsafe(member, 'its name holds a NUL or backslash')
  if (path.split('/').some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw unsafe(member, 'its path has an empty, "." or ".." segment')
  }

  return path
}

/** Creates the member's parent folders, refusing any existing component that is not a real folder. */
async function ensureParents(root: string, path: string): Promise<void> {
  const segments = path.split('/').slice(0, -1)
  let current = root
  for (const segment of segments) {
    current = join(current, segment)
    const info = await lstat(current).catch(() => {})
    if (info === undefined) {
      await mkdir(current)
    } else if (!info.isDirectory()) {
      throw new BackupError(
        'INTEGRITY',
        `The media archive is unsafe: ${path} would be written through ${info.isSymbolicLink() ? 'a symlink' : 'a file'} (${relative(root, current)}).`,
        {suggestion: 'Nothing was written outside the target. Restore from another backup.'},
      )
    }
  }
}

async function mkdirNoFollow(destination: string, member: TarMember): Promise<void> {
  const info = await lstat(destination).catch(() => {})
  if (info === undefined) await mkdir(destination, {mode: member.mode % 0o1000})
  else if (!info.isDirectory()) throw unsafe(member, 'a file or link of that name was already extracted')
}

/** Writes a file that must not exist yet (never through a link), returning its SHA-256. */
async function writeFile(member: TarMember, destination: string): Promise<string> {
  const hash = createHash('sha256')
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk)
      callback(null, chunk)
    },
  })
  // "wx" fails on any existing name, a symlink included, so nothing is written through one.
  await pipeline(member.body, hashing, createWriteStream(destination, {flags: 'wx', mode: member.mode % 0o1000}))
  await utimes(destination, member.mtime, member.mtime)
  return hash.digest('hex')
}

function isInside(root: string, path: string): boolean {
  const from = relative(root, path)
  return from !== '' && !from.startsWith('..') && !isAbsolute(from)
}

function unsafe(member: TarMember, why: string): BackupError {
  return new BackupError(
    'INTEGRITY',
    `The media archive is unsafe: member ${JSON.stringify(member.path)} is refused: ${why}.`,
    {
      suggestion:
        'Nothing was written outside the target. The archive was crafted or damaged; restore from another backup.',
    },
  )
}

function describeType(rawType: string): string {
  const names: Record<string, string> = {
    BlockDevice: 'block device',
    CharacterDevice: 'character device',
    FIFO: 'FIFO',
    Link: 'hard link',
  }
  return names[rawType] ?? `"${rawType}" member`
}
