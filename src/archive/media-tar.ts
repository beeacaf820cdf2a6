import {createHash, Hash} from 'node:crypto'
import {closeSync, openSync, readSync} from 'node:fs'
import {open} from 'node:fs/promises'
import {Readable} from 'node:stream'
import {Header, Pax} from 'tar'

/**
 * The media archive: a POSIX (pax) tar whose members are `media/<path>` for every file, folder and
 * symlink, followed by one last member, `MANIFEST.json`, that lists each of them with its size, mtime,
 * mode and SHA-256. Any `tar` reads it; `tar -xf media.tar media/` restores the files by hand.
 *
 * The archive is produced here, entry by entry, so that each file's SHA-256 is taken from the very
 * bytes that go into the archive (one read, no race between hashing and archiving); node-tar encodes
 * the headers.
 */

export const MEDIA_PREFIX = 'media/'
export const LISTING_MEMBER = 'MANIFEST.json'
const BLOCK = 512
const READ_CHUNK = 64 * 1024

export type MediaEntryType = 'directory' | 'file' | 'symlink'

/** One thing to archive, as a media provider yields it. */
export interface MediaEntry {
  /** S3 media: the object's ETag, recorded in the listing. */
  etag?: string
  /** S3 media: the object's full key, recorded in the listing. */
  key?: string
  /** Target of a symlink, stored as it is (never followed). */
  linkTarget?: string
  mode: number
  /** For S3 media, the object's Last-Modified. */
  mtime: Date
  /**
   * Opens the file's contents; only called for files. The stream must yield `size` bytes.
   * Resolves to undefined when the file has disappeared since it was listed: it is then left out.
   * It may update `size`, `mtime` and `etag` to those of what it opened (an S3 object replaced since
   * the listing); the archive records what was read.
   */
  open?: () => Promise<Readable | undefined>
  /** `/`-separated and relative to the media root; folders have no trailing slash. */
  path: string
  size: number
  type: MediaEntryType
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
  add(row: ListingRow): Promise<void>
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
 */
export function createMediaTar(
  entries: AsyncIterable<MediaEntry>,
  sink: ListingSink,
): {stream: Readable; summary: Promise<MediaTarSummary>} {
  let resolveSummary!: (summary: MediaTarSummary) => void
  let rejectSummary!: (error: Error) => void
  const summary = new Promise<MediaTarSummary>((resolve, reject) => {
    resolveSummary = resolve
    rejectSummary = reject
  })
  summary.catch(() => {})

  async function* generate(): AsyncGenerator<Buffer> {
    let files = 0
    let totalFileBytes = 0
    for await (const entry of entries) {
      if (entry.type === 'file') {
        const source = await entry.open!()
        if (source === undefined) continue
        const hash = createHash('sha256')
        yield header(`${MEDIA_PREFIX}${entry.path}`, entry)
        yield* copyExactly(source, entry.size, hash, entry.path)
        yield padding(entry.size)
        files++
        totalFileBytes += entry.size
        await sink.add(row(entry, hash.digest('hex')))
      } else {
        yield header(`${MEDIA_PREFIX}${entry.path}${entry.type === 'directory' ? '/' : ''}`, entry)
        await sink.add(row(entry))
      }
    }

    const listing = await sink.finish()
    yield header(LISTING_MEMBER, {mode: 0o644, mtime: new Date(), size: listing.bytes, type: 'file'})
    const handle = await open(listing.path)
    try {
      let copied = 0
      for await (const chunk of handle.createReadStream({highWaterMark: READ_CHUNK}) as AsyncIterable<Buffer>) {
        copied += chunk.length
        yield chunk
      }

      if (copied !== listing.bytes) throw new Error('the media listing changed while it was being archived')
    } finally {
      await handle.close().catch(() => {})
    }

    yield padding(listing.bytes)
    // Two zero blocks end a tar archive.
    yield Buffer.alloc(2 * BLOCK)
    resolveSummary({files, totalFileBytes})
  }

  const stream = Readable.from(generate(), {highWaterMark: 4, objectMode: false})
  stream.on('error', (error) => rejectSummary(error))
  return {stream, summary}
}

function header(path: string, entry: Pick<MediaEntry, 'linkTarget' | 'mode' | 'mtime' | 'size' | 'type'>): Buffer {
  const type = entry.type === 'directory' ? 'Directory' : entry.type === 'symlink' ? 'SymbolicLink' : 'File'
  const fields = {
    linkpath: entry.linkTarget,
    mode: entry.mode % 0o1_0000,
    mtime: entry.mtime,
    path,
    size: entry.type === 'file' ? entry.size : 0,
    type,
  } as const
  const encoded = new Header(fields)
  // encode() returns true when a field does not fit the ustar header (long or non-ASCII names, big sizes).
  if (encoded.encode()) {
    const pax = new Pax({linkpath: fields.linkpath, mtime: fields.mtime, path: fields.path, size: fields.size})
    return Buffer.concat([pax.encode(), encoded.block!])
  }

  return encoded.block!
}

// Yields exactly `size` bytes of `source`, hashing them; a file that grew is cut at its listed size.
async function* copyExactly(source: Readable, size: number, hash: Hash, path: string): AsyncGenerator<Buffer> {
  let remaining = size
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      const part = chunk.length > remaining ? chunk.subarray(0, remaining) : chunk
      remaining -= part.length
      hash.update(part)
      if (part.length > 0) yield part
      // Stop early only for a file that grew; otherwise let the stream end by itself, because an
      // iterator left early destroys it with an AbortError, whose stack trace costs more than a read.
      if (remaining === 0 && part.length < chunk.length) break
    }
  } finally {
    source.destroy()
  }

  if (remaining > 0) throw new Error(`media file ${path} shrank while it was being read; run the backup again`)
}

function padding(size: number): Buffer {
  const remainder = size % BLOCK
  return Buffer.alloc(remainder === 0 ? 0 : BLOCK - remainder)
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

/** Files up to this size are read in one synchronous call. */
const SMALL_FILE = 256 * 1024

/**
 * Convenience for providers: a file entry whose contents come from the local file system.
 *
 * Media is mostly small files, and each asynchronous read costs several round trips through libuv's
 * thread pool (open, read, read to EOF, close), which dominated the backup of many small files. A
 * small file is therefore read whole with one blocking call, which takes microseconds from the page
 * cache; larger ones stream. Only the expected `size` is read; the archive checks the byte count.
 */
export function openLocalFile(path: string, size: number): () => Promise<Readable | undefined> {
  return async () => {
    try {
      if (size <= SMALL_FILE) {
        // One byte more than expected, so that a file that grew is still cut at its listed size.
        const buffer = Buffer.allocUnsafe(size + 1)
        const descriptor = openSync(path, 'r')
        let read = 0
        try {
          for (let bytes = -1; bytes !== 0 && read < buffer.length; read += bytes) {
            bytes = readSync(descriptor, buffer, read, buffer.length - read, null)
          }
        } finally {
          closeSync(descriptor)
        }

        return Readable.from([buffer.subarray(0, read)], {objectMode: false})
      }

      const handle = await open(path)
      return handle.createReadStream({highWaterMark: READ_CHUNK})
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return
      throw error
    }
  }
}
