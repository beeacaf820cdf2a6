import {createHash, Hash} from 'node:crypto'
import {open} from 'node:fs/promises'
import {Readable} from 'node:stream'

import {BackupError, describeReadError, isSystemError, pathTooLong} from '../errors.js'
import {BufferLender, giveBack} from '../lib/buffer-loan.js'
import {decodeName, printableName} from '../lib/byte-names.js'
import {deferred} from '../lib/deferred.js'
import {closeFile, readInto} from '../lib/file-io.js'
import {streamOf} from '../lib/generator-stream.js'
import {FileIdentity, openListed} from '../lib/listed-files.js'
import {encodeTarHeader, loadTarEncoder} from './tar-header.js'

/**
 * The media archive: a POSIX (pax) tar whose members are `media/<path>` for every file, folder and
 * symlink, followed by one last member, `MANIFEST.json`, that lists each of them with its size, mtime,
 * mode and SHA-256. Any `tar` reads it; `tar -xf media.tar media/` restores the files by hand.
 *
 * The archive is produced here, entry by entry, so that each file's SHA-256 is taken from the very
 * bytes that go into the archive (one read, no race between hashing and archiving). Headers are
 * node-tar's encoding (see tar-header.ts).
 */

export const MEDIA_PREFIX = 'media/'
export const LISTING_MEMBER = 'MANIFEST.json'
const BLOCK = 512
const READ_CHUNK = 64 * 1024
/** Two blocks of zeros: what ends a tar, and more than any member's padding. */
const ZEROS = Buffer.alloc(2 * BLOCK)
/** The archive stream's chunk size: few, large chunks keep the per-chunk cost of every later stage small. */
const BATCH = 128 * 1024

export type MediaEntryType = 'directory' | 'file' | 'symlink'

/** One thing to archive, as a media provider yields it. */
export interface MediaEntry {
  ctimeMs?: number
  /** A media folder: the device, with `ino` what a file read from `localPath` must still be (listed-files.ts). */
  dev?: number
  /** S3 media: the object's ETag, recorded in the listing. */
  etag?: string
  /** A media folder: the inode and change time, by which an incremental backup knows an unchanged file. */
  ino?: number
  /** S3 media: the object's full key, recorded in the listing. */
  key?: string
  /** Target of a symlink, stored as it is (never followed). */
  linkTarget?: string
  /**
   * A file on this machine: the archive opens and reads it itself, straight into its output. A file
   * that has disappeared or been replaced since it was listed is left out; one that grew is cut at `size`.
   */
  localPath?: Buffer | string
  mode: number
  /** For S3 media, the object's Last-Modified. */
  mtime: Date
  /**
   * Opens the file's contents; only called for files without `localPath`. The stream must yield `size` bytes.
   * Resolves to undefined when the file is left out (deleted since it was listed, or archived), which
   * the provider has reported with `onSkip`, saying why. It may update `size`, `mtime` and `etag` to
   * those of what it opened (an S3 object replaced since the listing); the archive records what was read.
   */
  open?: () => Promise<Readable | undefined>
  /** `/`-separated and relative to the media root; folders have no trailing slash. */
  path: string
  /**
   * A small local file's contents and their SHA-256, already being read and hashed by the provider's
   * read-ahead (on the reader thread, a batch of files at a time). Resolves to undefined when the
   * file has disappeared; to fewer than `size` bytes when it shrank. Takes precedence over `localPath`.
   */
  prefetched?: Promise<PrefetchedFile | undefined>
  /**
   * The file's SHA-256, when `open` checks the bytes it yields against it (an incremental backup's
   * authenticated blobs): the listing records it, and the archive does not hash the bytes again.
   */
  sha256?: string
  size: number
  type: MediaEntryType
}

/** Why a file that was listed is not in the backup: it was gone, or was no longer that file, when it was read. */
export const CHANGED_WHILE_RUNNING = 'deleted or replaced while the backup ran'

/**
 * A media file that the file system would not let the backup read (a failing disk's EIO, a permission),
 * named: the read's own error says "EIO: i/o error, read", with no path. Other failures pass.
 */
export function mediaReadFailure(error: unknown, entry: MediaEntry): unknown {
  if (entry.localPath === undefined || !isSystemError(error)) return error
  const {localPath} = entry
  const path = printableName(typeof localPath === 'string' ? localPath : decodeName(localPath))
  if (error.code === 'ENAMETOOLONG') return pathTooLong(error, 'the media', path)
  return new BackupError('SOURCE_UNAVAILABLE', `Cannot read the media file ${path}: ${describeReadError(error)}.`, {
    cause: error,
    suggestion:
      error.code === 'EIO'
        ? 'Check the disk that holds the media (dmesg, smartctl); put the file back from elsewhere, or remove it, then run the backup again.'
        : 'Check that this user may read every file of the media folder, then run the backup again.',
  })
}

/** What a local file's listing said it was, which a read checks (listed-files.ts); undefined for S3 media. */
export function listedIdentity(entry: MediaEntry): FileIdentity | undefined {
  return entry.dev === undefined || entry.ino === undefined ? undefined : {dev: entry.dev, ino: entry.ino}
}

/** A small file read whole, with the SHA-256 of what was read. */
export interface PrefetchedFile {
  content: Buffer
  /** Called once `content` has been copied, when the reader wants its buffer back to reuse it. */
  release?: () => void
  sha256: string
}

/** One row of MANIFEST.json. */
export interface ListingRow {
  etag?: string
  key?: string
  /** S3 media: the object's Last-Modified, as S3 reported it (also in `mtime`). */
  lastModified?: string
  linkTarget?: string
  mode: string
  mtime: string
  path: string
  sha256?: string
  size: number
  type: MediaEntryType
}

export interface ListingSink {
  /** Returns a promise only when the caller must wait (the spool is behind). */
  add(row: ListingRow): Promise<void> | void
  /** Closes the listing of an archive that will not be finished, its file included. */
  discard(): Promise<void>
  /** Closes the listing and returns its path and size, to be appended to the tar. */
  finish(): Promise<{bytes: number; path: string}>
}

export interface MediaTarSummary {
  files: number
  totalFileBytes: number
}

/**
 * Streams the tar of `entries`. The listing is spooled through `sink` (a temp file), so memory does
 * not grow with the number of files. `summary` resolves when the archive has been fully produced.
 *
 * The archive comes out in batches of {@link BATCH} bytes. Small files come read and hashed by the
 * provider's read-ahead (`prefetched`, on the reader thread); larger local files are read straight
 * into the batch through the thread pool, one read per batch, and hashed here: no stream per file, and
 * nothing blocks the main thread.
 */
export function createMediaTar(
  entries: AsyncIterable<MediaEntry>,
  sink: ListingSink,
  options: {onSkip?: (path: string, why: string) => void} = {},
): {stream: Readable; summary: Promise<MediaTarSummary>} {
  const summary = deferred<MediaTarSummary>()

  async function* generate(): AsyncGenerator<Buffer> {
    const out = new Batches()
    let files = 0
    let totalFileBytes = 0
    let listed = false
    try {
      await loadTarEncoder()
      for await (const entry of entries) {
        if (entry.type === 'file') {
          const hash = entry.sha256 === undefined ? createHash('sha256') : undefined
          // Prefetched files were hashed as they were read; the others are hashed here.
          let included: boolean | string
          try {
            included = entry.prefetched
              ? await copyPrefetched(entry, entry.prefetched, out)
              : entry.localPath === undefined
                ? yield* copyStreamed(entry, hash, out)
                : yield* copyLocal(entry, entry.localPath, hash ?? createHash('sha256'), out)
          } catch (error) {
            throw mediaReadFailure(error, entry)
          }

          if (!included) {
            reportLeftOut(entry, options.onSkip)
            continue
          }

          out.append(padding(entry.size))
          files++
          totalFileBytes += entry.size
          const sha256 = typeof included === 'string' ? included : (entry.sha256 ?? hash!.digest('hex'))
          const spooled = sink.add(row(entry, sha256))
          if (spooled) await spooled
        } else {
          out.append(header(`${MEDIA_PREFIX}${entry.path}${entry.type === 'directory' ? '/' : ''}`, entry))
          const spooled = sink.add(row(entry))
          if (spooled) await spooled
        }

        if (out.ready.length > 0) yield* out.take()
      }

      listed = true
      const listing = await sink.finish()
      out.append(header(LISTING_MEMBER, {mode: 0o644, mtime: new Date(), size: listing.bytes, type: 'file'}))
      const handle = await open(listing.path)
      try {
        let copied = 0
        for await (const chunk of handle.createReadStream({highWaterMark: READ_CHUNK}) as AsyncIterable<Buffer>) {
          copied += chunk.length
          out.append(chunk)
          if (out.ready.length > 0) yield* out.take()
        }

        if (copied !== listing.bytes) throw new Error('the media listing changed while it was being archived')
      } finally {
        await handle.close().catch(() => {})
      }

      out.append(padding(listing.bytes))
      // Two zero blocks end a tar archive.
      out.append(ZEROS)
      yield* out.take()
      yield* out.rest()
      summary.resolve({files, totalFileBytes})
    } finally {
      // Stopped or failed before the listing was finished: its file must not stay open.
      if (!listed) await sink.discard()
    }
  }

  let failure: Error | undefined
  const stream = streamOf(generate(), () => sink.discard())
  stream.on('error', (error) => {
    failure = error
  })
  // Stopped or failed before its end: the listing file is closed by now (streamOf), and its caller may
  // remove the folder.
  stream.once('close', () => summary.reject(failure ?? new Error('the media archive was stopped before its end')))
  return {stream, summary: summary.promise}
}

/** Batches given back by the stages after the archive, kept for reuse: about as many as those stages hold. */
const SPARE_BATCHES = 8

/**
 * The archive's output: bytes appended or read into fixed-size buffers, handed out when full. They
 * are lent (buffer-loan.ts): a batch given back is filled again.
 */
class Batches {
  readonly ready: Buffer[] = []
  private batch = Buffer.allocUnsafeSlow(BATCH)
  private filled = 0
  private readonly lender = new BufferLender(SPARE_BATCHES)

  append(data: Buffer): void {
    let offset = 0
    while (offset < data.length) {
      const copied = data.copy(this.batch, this.filled, offset)
      this.filled += copied
      offset += copied
      if (this.filled === BATCH) this.next()
    }
  }

  /** Reads up to `limit` bytes of an open file into the current batch, hashing them; 0 at end of file. */
  async readFrom(descriptor: number, limit: number, hash: Hash): Promise<number> {
    const wanted = Math.min(limit, BATCH - this.filled)
    const read = await readInto(descriptor, this.batch, this.filled, wanted)
    hash.update(this.batch.subarray(this.filled, this.filled + read))
    this.filled += read
    if (this.filled === BATCH) this.next()
    return read
  }

  *rest(): Generator<Buffer> {
    if (this.filled > 0) yield this.lender.lend(this.batch.subarray(0, this.filled))
    this.filled = 0
  }

  *take(): Generator<Buffer> {
    while (this.ready.length > 0) yield this.ready.shift()!
  }

  private next(): void {
    this.ready.push(this.lender.lend(this.batch))
    const spare = this.lender.borrowBack()
    this.batch = spare === undefined ? Buffer.allocUnsafeSlow(BATCH) : Buffer.from(spare)
    this.filled = 0
  }
}

function header(path: string, entry: Pick<MediaEntry, 'linkTarget' | 'mode' | 'mtime' | 'size' | 'type'>): Buffer {
  return encodeTarHeader({
    linkpath: entry.linkTarget,
    mode: entry.mode % 0o1_0000,
    mtime: entry.mtime,
    path,
    size: entry.type === 'file' ? entry.size : 0,
    type: entry.type === 'directory' ? 'Directory' : entry.type === 'symlink' ? 'SymbolicLink' : 'File',
  })
}

/**
 * Appends the member of a file on this machine, header and contents, reading exactly its listed size
 * straight into the output and hashing it. Returns false, appending nothing, when the file has
 * disappeared since it was listed. Reads go through the thread pool: a hung mount blocks a pool thread,
 * not the main thread, where the stall watchdog and the signal handlers run.
 * @yields The output batches that filled up meanwhile.
 */
async function* copyLocal(
  entry: MediaEntry,
  path: Buffer | string,
  hash: Hash,
  out: Batches,
): AsyncGenerator<Buffer, boolean> {
  const file = await openListed(path, 'file', listedIdentity(entry))
  if (file === undefined) return false
  try {
    out.append(header(`${MEDIA_PREFIX}${entry.path}`, entry))
    for (let remaining = entry.size; remaining > 0;) {
      const read = await out.readFrom(file, remaining, hash)
      if (read === 0) throw shrank(entry.path)
      remaining -= read
      if (out.ready.length > 0) yield* out.take()
    }
  } finally {
    await closeFile(file)
  }

  return true
}

/** Appends the member of a file that the provider read ahead; false when it has disappeared. */
async function copyPrefetched(entry: MediaEntry, prefetched: Promise<PrefetchedFile | undefined>, out: Batches) {
  const read = await prefetched
  if (read === undefined) return false
  // The reader never gives more than the listed size: a file that grew is cut there.
  if (read.content.length < entry.size) throw shrank(entry.path)
  out.append(header(`${MEDIA_PREFIX}${entry.path}`, entry))
  out.append(read.content)
  read.release?.()
  return read.sha256
}

/**
 * Reports a file that was left out as it was read: one read here changed while it was read; what
 * `open` leaves out, its provider has reported, with its reason (deleted, archived).
 */
export function reportLeftOut(entry: MediaEntry, onSkip: ((path: string, why: string) => void) | undefined): void {
  if (entry.localPath !== undefined || entry.prefetched) onSkip?.(entry.path, CHANGED_WHILE_RUNNING)
}

/**
 * Appends the member of a file read through `entry.open()`, taking exactly its listed size (a file that
 * grew is cut there) and hashing it (unless its digest is known: `hash` undefined). Returns false when the file has disappeared since it was listed.
 * @yields The output batches that filled up meanwhile.
 */
async function* copyStreamed(entry: MediaEntry, hash: Hash | undefined, out: Batches): AsyncGenerator<Buffer, boolean> {
  const source = await entry.open!()
  if (source === undefined) return false
  out.append(header(`${MEDIA_PREFIX}${entry.path}`, entry))
  let remaining = entry.size
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      const part = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk
      remaining -= part.length
      hash?.update(part)
      out.append(part)
      // Copied: a chunk lent by the stages before (a decrypted one, from a pack) is done with.
      giveBack(chunk)
      if (out.ready.length > 0) yield* out.take()
      // Stop early only for a file that grew; otherwise let the stream end by itself, because an
      // iterator left early destroys it with an AbortError, whose stack trace costs more than a read.
      if (remaining === 0 && part.length < chunk.length) break
    }
  } finally {
    source.destroy()
  }

  if (remaining > 0) throw shrank(entry.path)
  return true
}

/**
 * A file cut shorter while it was read: its header, with the size it was listed at, is already in the
 * stream, and bytes the file no longer has cannot be made up. The packed format stores a file as it
 * was read instead, and is the way out for a file that an app rewrites all the time.
 */
function shrank(path: string): BackupError {
  return new BackupError(
    'SOURCE_UNAVAILABLE',
    `The media file ${printableName(path)} shrank while it was being read: something rewrote it during the backup.`,
    {
      suggestion:
        'Run the backup again (a scheduled tick does, at its next run). A file that is rewritten all the time, such as a log or a search index, is better kept out of the media folder; the incremental format ("mediaFormat": "packs") stores such a file as it was read.',
    },
  )
}

/** A member's padding to a whole block: a view of constant zeros, copied into the batch like any bytes. */
function padding(size: number): Buffer {
  const remainder = size % BLOCK
  return ZEROS.subarray(0, remainder === 0 ? 0 : BLOCK - remainder)
}

function row(entry: MediaEntry, sha256?: string): ListingRow {
  return {
    ...(entry.etag === undefined ? {} : {etag: entry.etag}),
    ...(entry.key === undefined ? {} : {key: entry.key, lastModified: entry.mtime.toISOString()}),
    ...(entry.linkTarget === undefined ? {} : {linkTarget: entry.linkTarget}),
    mode: (entry.mode % 0o1_0000).toString(8).padStart(4, '0'),
    mtime: entry.mtime.toISOString(),
    path: entry.path,
    ...(sha256 === undefined ? {} : {sha256}),
    size: entry.type === 'file' ? entry.size : 0,
    type: entry.type,
  }
}
