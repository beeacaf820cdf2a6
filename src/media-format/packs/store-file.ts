import {createHash} from 'node:crypto'

import {listedIdentity, MediaEntry, PrefetchedFile} from '../../archive/media-tar.js'
import {BufferLender, giveBack} from '../../lib/buffer-loan.js'
import {closeFile, readInto} from '../../lib/file-io.js'
import {FileIdentity, openListed} from '../../lib/listed-files.js'
import {ActivityWatchdog} from '../../lib/stall.js'
import {Progress} from '../../services/context.js'
import {BLOB_BYTES, blobKey} from './media-index.js'
import {PackWriter} from './writer.js'

/**
 * A file's content as blobs (docs/storage.md): read, cut into BLOB_BYTES, and each blob stored in a pack
 * unless this backup or the one before already holds it.
 */

/**
 * Blobs at least this large, of the previous backup and of this run, are looked up by content, so that
 * a renamed or copied file is stored once. (Smaller ones are matched by path only: a lookup table of
 * every tiny file would cost more memory than storing them again costs space.)
 */
export const DEDUPE_MIN_BYTES = 16 * 1024
/**
 * At most this many (a few MiB of memory): past 64 GiB of content, further renames and copies are
 * stored again rather than memory growing with the data.
 */
export const DEDUPE_MAX_BLOBS = 65_536

/**
 * Each item of `source` as the watchdog allows: a read that hangs fails as a stall.
 *
 * @yields each item, once it has come within the watchdog's time
 */
async function* watched<T>(source: AsyncIterable<T> | Iterable<T>, watchdog: ActivityWatchdog): AsyncGenerator<T> {
  const iterator =
    Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : (source as Iterable<T>)[Symbol.iterator]()
  try {
    for (;;) {
      const next = await watchdog.race(Promise.resolve(iterator.next()))
      if (next.done) return
      yield next.value
    }
  } finally {
    // Not awaited: a read that hangs must not hold the caller; the iterator cleans up when it can.
    Promise.resolve(iterator.return?.()).catch(() => {})
  }
}

/** The SHA-256 of no bytes: an empty file's, which needs no blob. */
const EMPTY_SHA256 = createHash('sha256').digest('hex')

/**
 * Reads one file into blobs. Resolves undefined when the file is gone. A file that changes while it is
 * read is stored as read (its SHA-256 is of what was stored), like tar does. Every blob read into a
 * buffer of `blobs.buffers` goes back to it: through the pack writer when it is stored, here when it
 * was stored already (`known`, or `stored` by this run).
 */
export async function storeFile(
  entry: MediaEntry,
  packs: PackWriter,
  blobs: {buffers: BufferLender; known: ReadonlyMap<string, string>; stored: Map<string, string>},
  {progress, watchdog}: {progress: Progress; watchdog: ActivityWatchdog},
): Promise<undefined | {blobs: [string, string][]; newBytes: number; sha256?: string; size: number}> {
  let source: AsyncIterable<Buffer> | Iterable<Buffer> | undefined
  if (entry.prefetched) {
    // Read and hashed ahead by the provider: small enough for one blob, whose id is its SHA-256.
    const read = await watchdog.race(entry.prefetched)
    if (read === undefined) return undefined
    watchdog.touch()
    return storePrefetched(read, packs, blobs, progress)
  }

  if (entry.localPath === undefined) {
    const stream = await entry.open!()
    source = stream && cutIntoBlobs(stream)
  } else {
    source = await watchdog.race(readLocal(entry.localPath, listedIdentity(entry), entry.size, blobs.buffers))
  }

  if (source === undefined) return undefined
  const content: [string, string][] = []
  let size = 0
  let newBytes = 0
  for await (const blob of watched(source, watchdog)) {
    watchdog.touch()
    // Taken now: the pack writer may give the blob back to its reader.
    const bytes = blob.length
    size += bytes
    progress.advance(bytes)
    const id = createHash('sha256').update(blob).digest('hex')
    let pack = blobs.known.get(id) ?? (bytes >= DEDUPE_MIN_BYTES ? blobs.stored.get(blobKey(id)) : undefined)
    if (pack === undefined) {
      pack = await packs.add(id, blob)
      newBytes += bytes
      if (bytes >= DEDUPE_MIN_BYTES && blobs.stored.size < DEDUPE_MAX_BLOBS) blobs.stored.set(blobKey(id), pack)
    } else {
      // Stored already, so this is its last reader: the file's next blob is read into it. Dropped, the
      // 1 MiB buffers of a large file's unchanged blobs waited for a collection, and a backup that read
      // one changed 128 MiB file again peaked about 30 MiB above an unchanged one.
      giveBack(blob)
    }

    content.push([id, pack])
  }

  // A file of one blob (most media files) has the blob's id for its SHA-256, and an empty file, which
  // needs no blob, has the SHA-256 of nothing. A larger file's is not taken here: reading it back
  // (download, restore, verify) computes it from the authenticated blobs, so a backup hashes each byte once.
  const sha256 = content.length === 1 ? content[0][0] : content.length === 0 ? EMPTY_SHA256 : undefined
  return {blobs: content, newBytes, ...(sha256 === undefined ? {} : {sha256}), size}
}

/** Stores a file read whole by the provider (PrefetchedFile): one blob, or none when it is empty. */
async function storePrefetched(
  {content, release, sha256}: PrefetchedFile,
  packs: PackWriter,
  blobs: {known: ReadonlyMap<string, string>; stored: Map<string, string>},
  progress: Progress,
): Promise<{blobs: [string, string][]; newBytes: number; sha256: string; size: number}> {
  // Taken now: content that is not borrowed may go back to its lender once the pack writer has it.
  const size = content.length
  try {
    if (size === 0) return {blobs: [], newBytes: 0, sha256: EMPTY_SHA256, size: 0}
    progress.advance(size)
    let pack = blobs.known.get(sha256) ?? (size >= DEDUPE_MIN_BYTES ? blobs.stored.get(blobKey(sha256)) : undefined)
    let newBytes = 0
    if (pack === undefined) {
      // Borrowed: the reader reuses the content's buffer once it is released below.
      pack = await packs.add(sha256, content, {borrowed: release !== undefined})
      newBytes = size
      if (size >= DEDUPE_MIN_BYTES && blobs.stored.size < DEDUPE_MAX_BLOBS) blobs.stored.set(blobKey(sha256), pack)
    }

    return {blobs: [[sha256, pack]], newBytes, sha256, size}
  } finally {
    release?.()
  }
}

/**
 * A local file's blobs, up to its listed size (a file that grew is cut there, like the tar format
 * does; one that shrank is stored as read): BLOB_BYTES each, the last one shorter; an empty file has
 * none. Each is read straight into a buffer of its own until the upload has taken it, which then reads
 * later blobs (`blobBuffers` lends them: buffer-loan.ts). Reads go through the thread pool, so a hung mount never blocks the main thread, where the
 * stall watchdog and the signal handlers run. Undefined when the file is gone, or is no longer the one
 * its listing named (`expected`: listed-files.ts).
 */
async function readLocal(
  path: Buffer | string,
  expected: FileIdentity | undefined,
  listedSize: number,
  blobBuffers: BufferLender,
): Promise<AsyncIterable<Buffer> | undefined> {
  const descriptor = await openListed(path, 'file', expected)
  if (descriptor === undefined) return undefined

  return (async function* () {
    try {
      let remaining = listedSize
      while (remaining > 0) {
        const spare = blobBuffers.borrowBack()
        const buffer = spare === undefined ? Buffer.allocUnsafeSlow(BLOB_BYTES) : Buffer.from(spare)
        const wanted = Math.min(BLOB_BYTES, remaining)
        let filled = 0
        while (filled < wanted) {
          const bytesRead = await readInto(descriptor, buffer, filled, wanted - filled)
          if (bytesRead === 0) break
          filled += bytesRead
        }

        if (filled > 0) yield blobBuffers.lend(buffer.subarray(0, filled))
        if (filled < wanted) return
        remaining -= filled
      }
    } finally {
      await closeFile(descriptor)
    }
  })()
}

/**
 * A stream cut into blobs the same way as a local file (see openLocal).
 *
 * @yields each blob, in a buffer of its own
 */
export async function* cutIntoBlobs(stream: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let buffer = Buffer.allocUnsafe(BLOB_BYTES)
  let filled = 0
  let size = 0
  for await (const chunk of stream) {
    let offset = 0
    while (offset < chunk.length) {
      const copied = chunk.copy(buffer, filled, offset)
      filled += copied
      offset += copied
      if (filled === BLOB_BYTES) {
        size += filled
        yield buffer
        buffer = Buffer.allocUnsafe(BLOB_BYTES)
        filled = 0
      }
    }
  }

  if (filled > 0 || size === 0) yield buffer.subarray(0, filled)
}
