import {createHash, Hash} from 'node:crypto'
import {chmod, lstat, lutimes, mkdir, readlink, symlink, unlink, utimes} from 'node:fs/promises'
import {dirname, isAbsolute, join, resolve} from 'node:path'
import {Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {BackupError} from '../errors.js'
import {freeNow, giveBack} from '../lib/buffer-loan.js'
import {decodeName, encodeName, printableName} from '../lib/byte-names.js'
import {readUmask} from '../lib/file-io.js'
import {createFileSink} from '../lib/file-sink.js'
import {isInside} from '../lib/paths.js'
import {removeTree} from '../lib/remove-tree.js'
import {expectWrites, FileWriteError, SmallFileWriter} from './file-writer.js'
import {ListingCheck} from './listing.js'
import {LISTING_MEMBER, MEDIA_PREFIX} from './media-tar.js'
import {readTar, TarMember} from './tar-reader.js'

export interface ExtractSummary {
  bytes: number
  files: number
  /** Members left out, each with the reason (symlinks that lead outside the media folder). */
  skipped: SkippedMember[]
}

export interface SkippedMember {
  path: string
  why: string
}

/**
 * Extracts the `media/` members of a media archive into `target`, a folder that must not exist yet,
 * and checks every file against the archive's MANIFEST.json. The archive is read to its very end, so
 * that a source which authenticates at its end (age) has been authenticated before this resolves.
 *
 * Nothing is ever written outside `target`. Refused, with an INTEGRITY error naming the member:
 * absolute paths, `..` and other odd path segments, any path that would pass through a symlink, hard
 * links, device nodes, FIFOs, members outside `media/`, and members after the listing. Our own archives
 * contain none of these, so meeting one means the archive was crafted or damaged.
 *
 * Symlinks are created last, once every file and folder is in place, so nothing is ever written
 * through one. A symlink whose target leads outside the media folder (an absolute target, `..` past
 * the top, or through other links, resolved the way the kernel resolves it) is not created: it is
 * reported in `skipped`, and everything else is restored. A media folder can hold such links (to a
 * shared folder of the machine), and a backup of it must restore; a link to the media folder itself
 * stays inside and is created.
 *
 * Names are bytes (see byte-names.ts), and each file, folder and link gets the archive's mode and mtime
 * (folders last, once nothing more is written into them). The target is created with mode 0700 and
 * removed on any failure, so no plaintext copy is left behind.
 */
export async function extractMediaArchive(
  tar: Readable,
  target: string,
  options: ExtractOptions = {},
): Promise<ExtractSummary> {
  return extractMedia(
    {checkedBy: 'listing', members: readTar(tar, {keepsNoBody: true}), stop: (reason) => tar.destroy(reason)},
    target,
    options,
  )
}

/**
 * Members to extract, as a media archive holds them (`media/` paths, the listing last when there is
 * one), from a tar or from elsewhere (a packed backup's index and blobs).
 */
export interface MediaMembers {
  /**
   * What checks the files' contents: `listing`, the archive's MANIFEST.json, against which every file
   * is hashed as it is written; `source`, the source itself, as it reads each member (a packed
   * backup's blobs against their ids), so that hashing them again here would check nothing more.
   */
  checkedBy: 'listing' | 'source'
  /** A consumer that keeps no view of a body past its member reads these (`keepsNoBody`). */
  members: AsyncIterable<TarMember>
  /** Stops the source, so that a member being read, or awaited, fails at once: on SIGINT or SIGTERM. */
  stop(reason: Error): void
}

/**
 * Extracts media members into `target`, as {@link extractMediaArchive} extracts an archive's, with the
 * same refusals; a source that checks what it reads (`checkedBy: 'source'`) needs no listing.
 */
export async function extractMedia(
  source: MediaMembers,
  target: string,
  options: ExtractOptions = {},
): Promise<ExtractSummary> {
  if (options.expectedFiles !== undefined) expectWrites(options.expectedFiles)
  const root = resolve(target)
  await mkdir(root, {mode: 0o700})
  const abort = () => source.stop(options.signal?.reason as Error)
  options.signal?.addEventListener('abort', abort, {once: true})
  try {
    options.signal?.throwIfAborted()
    return await extractInto(source, root)
  } catch (error) {
    await removeTree(root)
    if (options.signal?.aborted && !(error instanceof BackupError && error.code === 'INTEGRITY')) {
      throw options.signal.reason
    }

    throw error
  } finally {
    options.signal?.removeEventListener('abort', abort)
  }
}

export interface ExtractOptions {
  /**
   * How many files the source holds, where it is known (a backup's count): a large extraction starts
   * its writer thread at once (see expectWrites).
   */
  expectedFiles?: number
  signal?: AbortSignal
}

interface FolderTimes {
  destination: Buffer
  mode: number
  mtime: Date
}

async function extractInto({checkedBy, members}: MediaMembers, root: string): Promise<ExtractSummary> {
  const check = checkedBy === 'listing' ? new ListingCheck() : undefined
  const writer = new SmallFileWriter(await readUmask(), (path, sha256) => check?.add(path, sha256))
  const parents = new Set<string>()
  const links: PendingLink[] = []
  const folders: FolderTimes[] = []
  const skipped: SkippedMember[] = []
  let files = 0
  let bytes = 0
  let listed = false
  try {
    for await (const member of members) {
      if (listed) throw unsafe(member, `it follows ${LISTING_MEMBER}, which is the last member`)
      if (member.path === LISTING_MEMBER && check) {
        await writer.drain()
        await check.verify(member.body)
        listed = true
        continue
      }

      const path = safePath(member)
      if (path === '') continue
      const destination = fsPath(root, path)
      await ensureParents(root, path, parents)
      switch (member.type) {
        case 'directory': {
          await mkdirNoFollow(destination, member)
          folders.push({destination, mode: member.mode % 0o1_0000, mtime: member.mtime})
          break
        }

        case 'file': {
          await extractFile(member, {check, destination, path, writer})
          files++
          bytes += member.size
          break
        }

        case 'symlink': {
          const linkTarget = symlinkTarget(member)
          const resolved = resolve(dirname(join(root, path)), linkTarget)
          if (isAbsolute(linkTarget) || !isInside(resolved, root)) {
            skipped.push({path, why: leadsOutside(linkTarget)})
          } else {
            links.push({destination, member, path, target: linkTarget})
          }

          break
        }

        default: {
          throw unsafe(member, `it is a ${describeType(member.rawType)}, which media never contains`)
        }
      }
    }

    await writer.drain()
  } catch (error) {
    await writer.settle()
    throw extractionError(error as Error)
  }

  // The listing is the last member: an archive without one is incomplete.
  if (!listed) await check?.verify()
  await createLinks(root, links, skipped)
  // Deepest first, so that setting a folder's time is the last change inside its parent.
  for (const {destination, mode, mtime} of folders.reverse()) {
    await chmod(destination, mode)
    await utimes(destination, mtime, mtime)
  }

  return {bytes, files, skipped}
}

interface PendingLink {
  destination: Buffer
  member: TarMember
  path: string
  target: string
}

/**
 * Creates the links, then removes, and reports, each one that leads outside the root through other
 * links. Removing one can change where another leads, so the check repeats until nothing changes.
 */
async function createLinks(root: string, links: PendingLink[], skipped: SkippedMember[]): Promise<void> {
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

      const path = fsPath(root, [...parts, segment].join('/'))
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

/** The file system path of `relative` (in the string form of byte-names.ts) below `root`, as bytes. */
function fsPath(root: string, relative: string): Buffer {
  return relative === '' ? Buffer.from(root) : Buffer.concat([Buffer.from(`${root}/`), encodeName(relative)])
}

/** Creates the member's parent folders, refusing any existing component that is not a real folder. */
async function ensureParents(root: string, path: string, known: Set<string>): Promise<void> {
  const segments = path.split('/').slice(0, -1)
  // Folders already checked or made: nothing but this extraction writes here, and symlinks come last,
  // so a folder stays a folder. Archive order keeps a file's siblings together: one check per folder.
  if (known.has(segments.join('/'))) return
  for (let index = 1; index <= segments.length; index++) {
    const relativeFolder = segments.slice(0, index).join('/')
    if (known.has(relativeFolder)) continue
    const current = fsPath(root, relativeFolder)
    const info = await lstat(current).catch(() => {})
    if (info === undefined) {
      await mkdir(current, {mode: 0o700})
    } else if (!info.isDirectory()) {
      throw new BackupError(
        'INTEGRITY',
        `The media archive is unsafe: ${printableName(path)} would be written through ${info.isSymbolicLink() ? 'a symlink' : 'a file'} (${printableName(relativeFolder)}).`,
        {suggestion: 'Nothing was written outside the target. Restore from another backup.'},
      )
    }

    known.add(relativeFolder)
  }
}

/** Folders are made 0700 while they fill (a read-only one must still take its files); modes come last. */
async function mkdirNoFollow(destination: Buffer, member: TarMember): Promise<void> {
  const info = await lstat(destination).catch(() => {})
  if (info === undefined) await mkdir(destination, {mode: 0o700})
  else if (!info.isDirectory()) throw unsafe(member, 'a file or link of that name was already extracted')
}

/** Files up to this size are read whole and written on the writer thread; larger ones stream. */
export const SMALL_FILE_BYTES = 256 * 1024

/**
 * Writes a file member: a small one on the writer thread, a large one streamed, both checked in archive
 * order against the listing, when there is one.
 */
async function extractFile(
  member: TarMember,
  {
    check,
    destination,
    path,
    writer,
  }: {check: ListingCheck | undefined; destination: Buffer; path: string; writer: SmallFileWriter},
): Promise<void> {
  if (member.size <= SMALL_FILE_BYTES) {
    // Views of what the archive reader holds until the next member is asked for: a file in one piece
    // (most small files) is copied once, into the writer's batch, and never into a buffer of its own.
    const pieces: Buffer[] = []
    const reading = member.eachChunk((piece) => pieces.push(piece))
    if (reading) await reading
    const contents = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, member.size)
    await writer.add(path, destination, contents, {mode: member.mode % 0o1_0000, mtime: member.mtime})
    if (pieces.length !== 1) freeNow(contents)
    for (const piece of pieces) giveBack(piece)
    return
  }

  if (check === undefined) {
    await writeLargeFile(member, destination)
    return
  }

  // The small files before this one are checked first.
  await writer.drain()
  const hash = createHash('sha256')
  await writeLargeFile(member, destination, hash)
  check.add(path, hash.digest('hex'))
}

/** Streams a large file that must not exist yet (never through a link), through `hash` when given. */
async function writeLargeFile(member: TarMember, destination: Buffer, hash?: Hash): Promise<void> {
  const sink = createFileSink(destination, {flags: 'wx', mode: 0o600, syncs: true})
  const hashing = hash
    ? new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          hash.update(chunk)
          callback(null, chunk)
        },
      })
    : undefined
  // "wx" fails on any existing name, a symlink included, so nothing is written through one.
  await (hashing ? pipeline(member.body, hashing, sink) : pipeline(member.body, sink)).catch(
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'EEXIST' || error.code === 'EISDIR') {
        throw unsafe(member, 'a file, folder or link of that name was already extracted')
      }

      throw error
    },
  )
  // The exact mode, whatever the umask; then the time, which the writes above would otherwise change.
  await chmod(destination, member.mode % 0o1_0000)
  await utimes(destination, member.mtime, member.mtime)
}

/** What a failure while extracting means for the user: the archive is damaged or unsafe, unless it was stopped. */
function extractionError(error: Error): Error {
  // A source stopped by SIGINT/SIGTERM ends with an AbortError: the archive is not damaged.
  if (error instanceof BackupError || error.name === 'AbortError') return error
  if (error instanceof FileWriteError && (error.code === 'EEXIST' || error.code === 'EISDIR')) {
    return unsafe(`${MEDIA_PREFIX}${error.label}`, 'a file, folder or link of that name was already extracted')
  }

  return new BackupError('INTEGRITY', `The media archive is damaged: ${error.message}.`, {
    cause: error,
    suggestion: 'Restore from another backup; `divio app backup verify` checks them all.',
  })
}

/** A symlink member's target, or throws when it has none a link could hold. */
export function symlinkTarget(member: TarMember): string {
  const target = member.linkTarget ?? ''
  if (target === '' || target.includes('\0')) throw unsafe(member, 'it is a symlink with no target')
  return target
}

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

export function describeType(rawType: string): string {
  const names: Record<string, string> = {
    BlockDevice: 'block device',
    CharacterDevice: 'character device',
    FIFO: 'FIFO',
    Link: 'hard link',
  }
  return names[rawType] ?? `"${rawType}" member`
}
