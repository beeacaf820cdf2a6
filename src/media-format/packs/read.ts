import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {rm} from 'node:fs/promises'
import {join} from 'node:path'
import {Readable, Writable} from 'node:stream'
import {finished, pipeline} from 'node:stream/promises'
import {createGunzip} from 'node:zlib'

import {X25519Identity} from '../../archive/age-keys.js'
import {createListingFile} from '../../archive/listing.js'
import {createMediaTar, MediaEntry, PrefetchedFile} from '../../archive/media-tar.js'
import {Manifest, MediaPacksComponent} from '../../domain/manifest.js'
import {BackupError} from '../../errors.js'
import {freeNow} from '../../lib/buffer-loan.js'
import {createFileSink} from '../../lib/file-sink.js'
import {lineBatches} from '../../lib/line-batches.js'
import {closeOf} from '../../lib/stream-close.js'
import {BackupContext} from '../../services/context.js'
import {ObjectCheckError, readVerified} from '../../services/read.js'
import {readPackTrust} from './check.js'
import {packsPrefix} from './folder.js'
import {checkIndexHeader, IndexEntry, parseIndexLine} from './media-index.js'
import {PackReader, WHOLE_BLOB_BYTES} from './reader.js'

/**
 * Reading incremental media (docs/storage.md): a backup's index, and the standard media.tar built from the
 * index and the packs.
 */

/**
 * Reads a packed backup's index, authenticated and checked, into a file at `path` as JSON lines
 * (gunzipped when it was stored gzipped). Rejects with ObjectCheckError when it does not check.
 */
export async function readIndexFile(
  context: BackupContext,
  manifest: Manifest,
  identities: readonly X25519Identity[],
  path: string,
): Promise<void> {
  const {index} = manifest.components.media as MediaPacksComponent
  const file = createFileSink(path, {flags: 'wx', mode: 0o600})
  // A write that fails is the temp folder's (full, read-only), never a sign that the index is damaged.
  // Its own failures name its path; an error it is destroyed with (the decryption's) does not.
  let unwritten: Error | undefined
  file.on('error', (error: NodeJS.ErrnoException) => {
    if (error.path === path) unwritten ??= error
  })
  const read = (sink: Writable) =>
    readVerified(context, manifest, {
      hashHere: true,
      identities,
      object: index.object,
      plaintext: index.plaintext,
      sink,
    })
  try {
    if (index.encoding === 'gzip') {
      const gunzip = createGunzip()
      const unzipped = pipeline(gunzip, file)
      unzipped.catch(() => {})
      await read(gunzip)
      await unzipped.catch((error: Error) => {
        throw new ObjectCheckError(index.object.name, `not a gzipped index: ${error.message}`)
      })
    } else {
      await read(file)
    }
  } catch (error) {
    // Closed before this settles, whatever failed: the caller removes the folder next, and an open
    // descriptor would keep the part of the index already decrypted on disk.
    await closeOf(file, {destroy: true})
    // The file system's own error, with its path, for the caller to name the folder it is in (the
    // temp folder, or a download's output folder).
    throw unwritten && !(error instanceof BackupError) ? unwritten : error
  }

  await closeOf(file)
}

/**
 * The entries of a decrypted index file, one at a time in archive order, after checking its header;
 * the file is closed when they end, however they end.
 */
export function readIndexLines(path: string): AsyncGenerator<IndexEntry, void> {
  return openIndexLines(path).entries
}

/** An opened index file: its entries, one at a time or as read, and a way to close it early. */
export interface IndexLines {
  /** The entries in the order of the file, as many as each read of it holds (a few hundred). */
  batches: AsyncGenerator<IndexEntry[], void>
  /** Closes the file at once, even while the consumer waits on something else. */
  close(): Promise<void>
  /** The same entries, one at a time. Take one of the two, not both. */
  entries: AsyncGenerator<IndexEntry, void>
}

/**
 * The entries of a decrypted index file, and a way to close it while they are being read. The file is
 * closed when the entries end, however they end: a loop that stops early (a consumer that breaks, a
 * damaged line) must not leave it open, since an open descriptor keeps the decrypted index on disk
 * after its folder is removed.
 *
 * Lines are split a read of the file at a time (lineBatches), and parsed a batch at a time.
 */
export function openIndexLines(path: string): IndexLines {
  const input = createReadStream(path, {highWaterMark: 16 * 1024})
  const close = () => closeOf(input, {destroy: true})
  async function* batches(): AsyncGenerator<IndexEntry[], void> {
    try {
      let first = true
      for await (const lines of lineBatches(input as AsyncIterable<Buffer>)) {
        const parsed: IndexEntry[] = []
        for (const line of lines) {
          if (first) {
            checkIndexHeader(line)
            first = false
          } else if (line !== '') {
            parsed.push(parseIndexLine(line))
          }
        }

        if (parsed.length > 0) yield parsed
      }
    } finally {
      await close()
    }
  }

  const read = batches()
  async function* entries(): AsyncGenerator<IndexEntry, void> {
    try {
      for await (const batch of read) yield* batch
    } finally {
      await read.return()
    }
  }

  return {batches: read, close, entries: entries()}
}

/**
 * media.tar of a packed backup, built from its index and its packs: the same archive a tar backup
 * stores (MANIFEST.json last), streamed. Every blob is authenticated by age and checked against its
 * id, and every file against its SHA-256, before its bytes are passed on; a failure is an
 * ObjectCheckError naming the index or the pack.
 */
export async function packedMediaTar(
  context: BackupContext,
  manifest: Manifest,
  options: {identities: readonly X25519Identity[]; tempDir: string},
): Promise<{stream: Readable; summary: Promise<unknown>}> {
  const media = manifest.components.media as MediaPacksComponent
  const indexPath = join(options.tempDir, `${manifest.id}.index`)
  await readIndexFile(context, manifest, options.identities, indexPath)
  const prefix = packsPrefix(manifest.app, manifest.environment)
  const reader = new PackReader({
    forwards: (await readPackTrust(context, {app: manifest.app, environment: manifest.environment})).targets,
    identities: options.identities,
    prefix,
    store: context.store,
  })

  const index = openIndexLines(indexPath)
  async function* entries(): AsyncGenerator<MediaEntry> {
    try {
      // A batch of the index at a time: a generator of single entries between the two cost a few
      // promises a file.
      for await (const batch of index.batches) {
        for (const entry of batch) yield mediaEntryOf(entry, reader, media.index.object.name)
      }
    } finally {
      await reader.close().catch(() => {})
      await rm(indexPath, {force: true})
    }
  }

  const archive = createMediaTar(entries(), createListingFile(options.tempDir))
  // A consumer that stops reading closes and removes the decrypted index at once, and the summary
  // settles once it is gone: the entries' own clean-up runs only when they next run, which a pack
  // read that a hung mount holds can put off indefinitely. (The archive closes its listing file the
  // same way.)
  const indexClosed = finished(archive.stream)
    .catch(() => {})
    .then(async () => {
      await index.close()
      await rm(indexPath, {force: true})
    })
  const summary = Promise.allSettled([archive.summary, indexClosed]).then(([made]) => {
    if (made.status === 'rejected') throw made.reason
    return made.value
  })
  // Marked handled, as the archive's own: a consumer that fails first may never await it.
  summary.catch(() => {})
  return {stream: archive.stream, summary}
}

/**
 * The archive's entry for an index entry, made as one object. Spreading a shared part into each kind's
 * object cost several allocations a file; made this way, a packed download of the real-size tree took
 * 2.88-3.18 s against 3.05-3.29 s, with about 5% less CPU (six pairs, taken in turn).
 */
function mediaEntryOf(entry: IndexEntry, reader: PackReader, indexName: string): MediaEntry {
  const {mode, path} = entry
  const mtime = new Date(entry.mtimeMs)
  let made: MediaEntry
  if (entry.type === 'directory') made = {mode, mtime, path, size: 0, type: 'directory'}
  else if (entry.type === 'symlink') made = {linkTarget: entry.linkTarget, mode, mtime, path, size: 0, type: 'symlink'}
  else if (isSmallWholeBlob(entry))
    made = {mode, mtime, path, prefetched: smallFileContent(reader, entry, indexName), size: entry.size, type: 'file'}
  else
    made = {
      mode,
      mtime,
      open: async () => Readable.from(fileContent(reader, entry, indexName)),
      path,
      // Checked by fileContent as the bytes go by: the archive need not hash them again.
      sha256: entry.sha256 ?? (entry.blobs!.length === 1 ? entry.blobs![0][0] : undefined),
      size: entry.size,
      type: 'file',
    }
  if (entry.etag !== undefined) made.etag = entry.etag
  if (entry.key !== undefined) made.key = entry.key
  return made
}

/**
 * Most media files are one small blob: read whole, with no stream of their own (a stream and its
 * generators cost more than the bytes of a file of a few KiB).
 */
export function isSmallWholeBlob(entry: IndexEntry): boolean {
  return entry.blobs!.length === 1 && entry.size <= WHOLE_BLOB_BYTES
}

/**
 * A one-blob file's content, checked against its id (which is its SHA-256). Started as the archive
 * takes the entry, which awaits it before it asks for the next: one read at a time, in order, as the
 * reader needs.
 */
export function smallFileContent(reader: PackReader, entry: IndexEntry, indexName: string): Promise<PrefetchedFile> {
  const [[blob, pack]] = entry.blobs!
  const reading = (async () => {
    checkRecordedDigest(entry, indexName)
    let content: Buffer
    try {
      content = await reader.read(pack, blob)
    } catch (error) {
      throw packError(error, pack)
    }

    // The archive takes a read-ahead as it is, behind a header with the size the index records.
    if (content.length !== entry.size) {
      throw new ObjectCheckError(indexName, `${entry.path}: its blob holds ${content.length} bytes, not ${entry.size}`)
    }

    // The archive copies it, then releases it: a buffer of its own, freed then rather than at a collection.
    return {content, release: () => freeNow(content), sha256: blob}
  })()
  // Settled by the archive; this only keeps a read that a stopped archive never awaits from being an
  // unhandled rejection.
  reading.catch(() => {})
  return reading
}

export async function* fileContent(reader: PackReader, entry: IndexEntry, indexName: string): AsyncGenerator<Buffer> {
  const blobs = entry.blobs!
  // Each blob is checked against its id. A recorded SHA-256 of a one-blob file is that id; one of a
  // larger file (older indexes record it) is checked over the whole.
  const whole = entry.sha256 !== undefined && blobs.length > 1 ? createHash('sha256') : undefined
  checkRecordedDigest(entry, indexName)

  // The archive writes the size the index records into the member's header: blobs that hold more or
  // less would leave a member that is not the file, which only an extraction would notice.
  let bytes = 0
  for (const [blob, pack] of blobs) {
    try {
      for await (const chunk of reader.stream(pack, blob)) {
        bytes += chunk.length
        if (bytes > entry.size) {
          throw new ObjectCheckError(indexName, `${entry.path}: its blobs hold more than ${entry.size} bytes`)
        }

        whole?.update(chunk)
        yield chunk
      }
    } catch (error) {
      throw packError(error, pack)
    }
  }

  if (bytes !== entry.size) {
    throw new ObjectCheckError(indexName, `${entry.path}: its blobs hold ${bytes} bytes, not ${entry.size}`)
  }

  if (whole && whole.digest('hex') !== entry.sha256) {
    throw new ObjectCheckError(indexName, `${entry.path}: its blobs do not add up to the file the index records`)
  }
}

/** A one-blob file's recorded SHA-256, where the index records one, must be its blob's id. */
function checkRecordedDigest(entry: IndexEntry, indexName: string): void {
  const {blobs, sha256} = entry
  if (sha256 !== undefined && blobs!.length === 1 && blobs![0][0] !== sha256) {
    throw new ObjectCheckError(indexName, `${entry.path}: its blob is not the file the index records`)
  }
}

/**
 * A failed read of a blob as the error to report. A typed error (a store that is down, no zstd here)
 * says what is wrong with the machine or the network; only the rest is the pack's fault.
 */
function packError(error: unknown, pack: string): Error {
  if (error instanceof ObjectCheckError || error instanceof BackupError) return error
  return new ObjectCheckError(`packs/${pack}`, (error as Error).message)
}
