import {createHash, Hash} from 'node:crypto'
import {chmod, lstat, mkdir, utimes} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'
import {Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {BackupError, targetFailure} from '../errors.js'
import {freeNow, giveBack} from '../lib/buffer-loan.js'
import {fsPathBelow, printableName} from '../lib/byte-names.js'
import {readUmask} from '../lib/file-io.js'
import {createFileSink} from '../lib/file-sink.js'
import {removeTree} from '../lib/remove-tree.js'
import {createLinks, PendingLink, plannedLink, SkippedMember} from './extract-links.js'
import {expectWrites, FileWriteError, SmallFileWriter} from './file-writer.js'
import {ListingCheck} from './listing.js'
import {LISTING_MEMBER, MEDIA_PREFIX} from './media-tar.js'
import {readTar, TarMember} from './tar-reader.js'
import {describeType, safePath, unsafe} from './unsafe-members.js'

export type {SkippedMember} from './extract-links.js'

export interface ExtractSummary {
  bytes: number
  files: number
  /** Members left out, each with the reason (symlinks that lead outside the media folder). */
  skipped: SkippedMember[]
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
  await mkdir(root, {mode: 0o700}).catch((error: Error) => {
    throw targetFailure(error, `the media into ${dirname(root)}`) ?? error
  })
  const abort = () => source.stop(options.signal?.reason as Error)
  options.signal?.addEventListener('abort', abort, {once: true})
  try {
    options.signal?.throwIfAborted()
    return await extractInto(source, root, options.written)
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
  /**
   * Told of every file once it is written, with the SHA-256 of the bytes written (which the source or
   * the listing checked), for a caller that reads the files back (a drill). A promise it returns (its
   * record of them is behind) is waited for before the next member.
   */
  written?: WrittenFile
}

export type WrittenFile = (path: string, sha256: string) => Promise<void> | void

interface FolderTimes {
  destination: Buffer
  mode: number
  mtime: Date
}

async function extractInto(
  {checkedBy, members}: MediaMembers,
  root: string,
  written: undefined | WrittenFile,
): Promise<ExtractSummary> {
  const check = checkedBy === 'listing' ? new ListingCheck() : undefined
  // What `written` asked to be waited for: a batch of small files is reported at once. It is told on
  // the writer's reply, where a throw would be nobody's: a failure, thrown or a promise's, fails the
  // extraction at the next member instead, as it is (the caller describes its own failures).
  const behind: Promise<void>[] = []
  const observerFailures = new Set<unknown>()
  const record = (path: string, sha256: string) => {
    check?.add(path, sha256)
    if (written === undefined) return
    let waiting: Promise<void> | void
    try {
      waiting = written(path, sha256)
    } catch (error) {
      waiting = Promise.reject(error)
    }

    if (waiting === undefined) return
    // Awaited with the next member: a rejection meanwhile is not an unhandled one.
    waiting.catch((error: unknown) => observerFailures.add(error))
    behind.push(waiting)
  }

  const writer = new SmallFileWriter(await readUmask(), record)
  const parents = new Set<string>()
  const links: PendingLink[] = []
  const folders: FolderTimes[] = []
  const skipped: SkippedMember[] = []
  let files = 0
  let bytes = 0
  let listed = false
  try {
    for await (const member of members) {
      if (behind.length > 0) await Promise.all(behind.splice(0))
      if (listed) throw unsafe(member, `it follows ${LISTING_MEMBER}, which is the last member`)
      if (member.path === LISTING_MEMBER && check) {
        await writer.drain()
        await check.verify(member.body)
        listed = true
        continue
      }

      const path = safePath(member)
      if (path === '') continue
      const destination = fsPathBelow(root, path)
      await ensureParents(root, path, parents)
      switch (member.type) {
        case 'directory': {
          await mkdirNoFollow(destination, member)
          folders.push({destination, mode: member.mode % 0o1_0000, mtime: member.mtime})
          break
        }

        case 'file': {
          await extractFile(member, {destination, hashed: check || written ? record : undefined, path, writer})
          files++
          bytes += member.size
          break
        }

        case 'symlink': {
          const link = plannedLink(root, path, destination, member)
          if ('why' in link) skipped.push(link)
          else links.push(link)
          break
        }

        default: {
          throw unsafe(member, `it is a ${describeType(member.rawType)}, which media never contains`)
        }
      }
    }

    await writer.drain()
    await Promise.all(behind)
  } catch (error) {
    await writer.settle()
    await Promise.allSettled(behind)
    if (observerFailures.has(error)) throw error
    throw extractionError(error as Error, root)
  }

  // The listing is the last member: an archive without one is incomplete.
  if (!listed) await check?.verify()
  skipped.push(...(await createLinks(root, links)))
  // Deepest first, so that setting a folder's time is the last change inside its parent.
  for (const {destination, mode, mtime} of folders.reverse()) {
    await chmod(destination, mode)
    await utimes(destination, mtime, mtime)
  }

  return {bytes, files, skipped}
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
    const current = fsPathBelow(root, relativeFolder)
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
 * Writes a file member: a small one on the writer thread, which hashes every file, a large one
 * streamed, and hashed only when `hashed` is to be told (the listing's check, or `written`). Either
 * way `hashed` hears of the files in archive order.
 */
async function extractFile(
  member: TarMember,
  {
    destination,
    hashed,
    path,
    writer,
  }: {
    destination: Buffer
    hashed: ((path: string, sha256: string) => void) | undefined
    path: string
    writer: SmallFileWriter
  },
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

  if (hashed === undefined) {
    await writeLargeFile(member, destination)
    return
  }

  // The small files before this one are told of first.
  await writer.drain()
  const hash = createHash('sha256')
  await writeLargeFile(member, destination, hash)
  hashed(path, hash.digest('hex'))
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

/**
 * What a failure while extracting means for the user: the archive is damaged or unsafe, unless it was
 * stopped, or the file system it is written to failed (a full disk is not a damaged backup).
 */
function extractionError(error: Error, root: string): Error {
  // A source stopped by SIGINT/SIGTERM ends with an AbortError: the archive is not damaged.
  if (error instanceof BackupError || error.name === 'AbortError') return error
  if (error instanceof FileWriteError && (error.code === 'EEXIST' || error.code === 'EISDIR')) {
    return unsafe(`${MEDIA_PREFIX}${error.label}`, 'a file, folder or link of that name was already extracted')
  }

  const target = targetFailure(error, `the media into ${dirname(root)}`)
  if (target) return target
  if ((error as NodeJS.ErrnoException).code === 'ENAMETOOLONG') {
    // The path is not named: it is some 4 KB long.
    return new BackupError(
      'OUTPUT_UNAVAILABLE',
      `A file of the backup cannot be extracted into ${dirname(root)}: its path there is longer than this system names a file by (ENAMETOOLONG, 4,096 bytes on Linux). The backup is not damaged.`,
      {
        cause: error,
        suggestion:
          "The restore extracts into a work folder first, whose path is longer than the media folder's own. Extract by hand, which names each file from its folder: `divio app backup download ID --media-only`, then `tar -xf media.tar --strip-components=1 -C <media folder>`, with the app stopped.",
      },
    )
  }

  return new BackupError('INTEGRITY', `The media archive is damaged: ${error.message}.`, {
    cause: error,
    suggestion: 'Restore from another backup; `divio app backup verify` checks them all.',
  })
}
