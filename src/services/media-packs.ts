import {createHash} from 'node:crypto'
import {once} from 'node:events'
import {createReadStream, createWriteStream} from 'node:fs'
import {rm} from 'node:fs/promises'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {createGunzip, createGzip} from 'node:zlib'

import {X25519Identity} from '../archive/age-keys.js'
import {createListingFile} from '../archive/listing.js'
import {createMediaTar, MediaEntry} from '../archive/media-tar.js'
import {WriterKey} from '../archive/writer-key.js'
import {formatBytes} from '../domain/format.js'
import {isPacked, Manifest, MediaPacksComponent, StoredObject} from '../domain/manifest.js'
import {
  BLOB_BYTES,
  blobKey,
  blobSize,
  checkIndexHeader,
  INDEX_NAME,
  IndexEntry,
  indexHeaderLine,
  indexLine,
  isUnchanged,
  keyOrder,
  parseIndexLine,
  REBUILD_NAME,
  walkOrder,
} from '../domain/media-index.js'
import {rebuildScriptHeader, rebuildScriptLine} from '../domain/rebuild-script.js'
import {BackupError} from '../errors.js'
import {printableName} from '../lib/byte-names.js'
import {closeFile, openForReading, readInto} from '../lib/file-io.js'
import {limitOldGenerationGrowth} from '../lib/memory.js'
import {ActivityWatchdog} from '../lib/stall.js'
import {mediaProviderFor} from '../providers/media/index.js'
import {BackupContext, Progress} from './context.js'
import {failedPacks} from './machine-state.js'
import {packObjectsOf, readPackTrust} from './pack-check.js'
import {packsForCreate, packsPrefix} from './pack-folder.js'
import {PackReader, PackWriter} from './packs.js'
import {ObjectCheckError, readVerified} from './read.js'

/**
 * Blobs at least this large, of the previous backup and of this run, are looked up by content, so that
 * a renamed or copied file is stored once. (Smaller ones are matched by path only: a lookup table of
 * every tiny file would cost more memory than storing them again costs space.)
 */
const DEDUPE_MIN_BYTES = 16 * 1024
/**
 * At most this many (a few MiB of memory): past 64 GiB of content, further renames and copies are
 * stored again rather than memory growing with the data.
 */
const DEDUPE_MAX_BLOBS = 65_536
const SPOOL_BYTES = 64 * 1024

/** Uploads one staged file as a backup object (the caller's put: it records what to undo on failure). */
export type PutFile = (
  name: string,
  source: Readable,
  progress: Progress,
  recipients: readonly Uint8Array[],
) => Promise<{
  object: StoredObject
  plaintext: {bytes: number; sha256: string}
}>

/**
 * Backs up a media folder incrementally. The previous backup of this writer is read through its
 * index, merged with the walk (both are in walk order, so memory stays flat): a file whose size, mtime,
 * inode and ctime are unchanged keeps its blobs and is not opened. Everything else is read, cut into
 * blobs of BLOB_BYTES, and only blobs this run has not stored yet go into new packs. Packs that prune
 * has condemned, or copied elsewhere (superseded), are never reused. The index goes last, encrypted to the owner and to this writer.
 */
export async function backUpMediaPacks(
  context: BackupContext,
  options: {
    previous?: Manifest
    progress: Progress
    put: PutFile
    recipients: readonly Uint8Array[]
    tempDir: string
    writer: WriterKey
  },
): Promise<MediaPacksComponent> {
  const {env, reporter, signal} = context
  // Like the tar format: many small files, each leaving a little behind in the old generation.
  limitOldGenerationGrowth()
  const provider = mediaProviderFor(env.media!)
  // Both the index and the walk are in the provider's order, so that they merge as sorted streams.
  const order = provider.kind === 's3' ? keyOrder : (a: {path: string}, b: {path: string}) => walkOrder(a.path, b.path)
  const prefix = packsPrefix(env.app, env.name)
  const usable = await usablePacks(context, prefix, options.previous)
  const previous = await previousIndex(context, options.previous, options.writer.ageIdentity, options.tempDir)
  const packs = new PackWriter({
    prefix,
    recipients: options.recipients,
    signal,
    stallTimeoutMs: context.stallTimeoutMs,
    store: context.store,
  })
  const watchdog = new ActivityWatchdog({
    signal,
    source: `the media ${provider.location}`,
    timeoutMs: context.stallTimeoutMs,
  })
  const indexPath = join(options.tempDir, 'media.index.gz')
  const gzip = createGzip()
  const indexWritten = pipeline(gzip, createWriteStream(indexPath, {flags: 'wx', mode: 0o600}))
  indexWritten.catch(() => {})
  const index = new LineSpool(gzip)
  const scriptPath = join(options.tempDir, 'media.rebuild.sh')
  const scriptFile = createWriteStream(scriptPath, {flags: 'wx', mode: 0o600})
  const script = new LineSpool(scriptFile)
  const stats = {blobBytes: 0, files: 0, filesRead: 0, totalFileBytes: 0}
  const referenced = new Set<string>()
  const stored = new Map<string, string>()
  const reusable = (before: IndexEntry | undefined, current: MediaEntry): boolean =>
    before !== undefined &&
    isUnchanged(before, describe(current)) &&
    before.blobs!.every(([, pack]) => usable.has(pack))
  /** A file's index line: the previous blobs when it is unchanged, else what reading it stored; undefined when it is gone. */
  const fileLine = async (entry: MediaEntry, before: IndexEntry | undefined): Promise<IndexEntry | undefined> => {
    let line: IndexEntry
    if (before !== undefined && reusable(before, entry)) {
      line = describe(entry)
      line.blobs = before.blobs
      if (before.sha256 !== undefined) line.sha256 = before.sha256
    } else {
      // A changed file keeps the blobs of its previous version that are still in it (an edit in place
      // stores the blobs it touched); blobs of condemned or superseded packs are stored again.
      const known = new Map((before?.type === 'file' ? before.blobs! : []).filter(([, pack]) => usable.has(pack)))
      const read = await storeFile(entry, packs, {known, stored}, options.progress, watchdog)
      if (read === undefined) {
        reporter.notice(
          `warning: media ${JSON.stringify(printableName(entry.path))} skipped: deleted while the backup ran`,
        )
        return undefined
      }

      stats.filesRead++
      stats.blobBytes += read.newBytes
      // describe() after reading: an S3 object replaced since the listing is recorded as read.
      line = describe(entry)
      line.blobs = read.blobs
      line.size = read.size
      if (read.sha256 !== undefined) line.sha256 = read.sha256
    }

    for (const [, pack] of line.blobs!) referenced.add(pack)
    stats.files++
    stats.totalFileBytes += line.size
    return line
  }

  // The previous backup's larger blobs, so that a file renamed or copied since is read but not stored again.
  for await (const entry of previous.entries()) {
    for (const [position, [id, pack]] of (entry.blobs ?? []).entries()) {
      if (stored.size < DEDUPE_MAX_BLOBS && usable.has(pack) && blobSize(entry.size, position) >= DEDUPE_MIN_BYTES)
        stored.set(blobKey(id), pack)
    }
  }

  // A second cursor over the previous index, for the provider's read-ahead: an S3 object that will be
  // reused is not downloaded.
  const ahead = previous.cursor(order)
  const current = previous.cursor(order)
  const needsContent = async (entry: MediaEntry) => !reusable(await ahead.seek(entry), entry)
  try {
    await index.add(indexHeaderLine())
    await script.add(rebuildScriptHeader())
    const entries = provider
      .entries({
        needsContent,
        onSkip: (path, why) => reporter.notice(`warning: media ${JSON.stringify(printableName(path))} skipped: ${why}`),
        onWarning: (path, what) => reporter.notice(`warning: media ${JSON.stringify(printableName(path))} ${what}`),
        signal,
      })
      [Symbol.asyncIterator]()
    for (;;) {
      // Reads of the walk and of file contents are watched: a hung mount fails the backup as stalled.
      const next = await watchdog.race(entries.next())
      if (next.done) break
      watchdog.touch()
      const entry = next.value
      const before = await current.seek(entry)
      let line: IndexEntry | undefined
      if (entry.type === 'file') {
        line = await fileLine(entry, before)
        if (line === undefined) continue
      } else {
        line = describe(entry)
      }

      await index.add(indexLine(line))
      await script.add(rebuildScriptLine(line))
    }

    watchdog.stop()
    const written = await packs.close()
    const packObjects = new Map([...usable, ...written.map((pack) => [pack.name, pack.object] as const)])
    await checkPacksStillThere(
      context,
      prefix,
      [...referenced].map((pack) => packObjects.get(pack)!),
    )
    await Promise.all([index.end(), script.end(), indexWritten])
    const uploaded = await options.put(INDEX_NAME, createReadStream(indexPath), options.progress, [
      ...options.recipients,
      options.writer.ageIdentity.publicKey,
    ])
    const rebuild = await options.put(REBUILD_NAME, createReadStream(scriptPath), options.progress, options.recipients)
    reporter.detail(
      `media: ${stats.files} files, ${stats.filesRead} read, ${stats.files - stats.filesRead} unchanged and not read; ` +
        `${formatBytes(stats.blobBytes)} of new blobs in ${written.length} new pack(s)`,
    )
    return {
      files: stats.files,
      format: 'packs',
      index: {...uploaded, encoding: 'gzip'},
      packObjects: [...referenced].sort().map((pack) => packObjects.get(pack)!),
      packs: [...referenced].sort(),
      rebuild,
      source: provider.kind,
      stored: {blobBytes: stats.blobBytes, filesRead: stats.filesRead},
      totalFileBytes: stats.totalFileBytes,
    }
  } catch (error) {
    watchdog.stop()
    packs.destroy(error as Error)
    gzip.destroy()
    scriptFile.destroy()
    throw error
  } finally {
    await previous.close()
    await rm(indexPath, {force: true})
    await rm(scriptPath, {force: true})
  }
}

/**
 * The packs of the previous backup that this one may build on, with their signed size and SHA-256:
 * those the store lists at that size, that no marker condemns and no forward supersedes, that this
 * machine has not seen fail a check, and whose digest the previous manifest records. The files whose
 * blobs are anywhere else are read again, so that no backup is built on a pack that is missing,
 * damaged or about to go.
 */
async function usablePacks(
  context: BackupContext,
  prefix: string,
  previous: Manifest | undefined,
): Promise<Map<string, StoredObject>> {
  const {present, unusable} = await packsForCreate(context.store, prefix)
  const failed = await failedPacks(context)
  const usable = new Map<string, StoredObject>()
  for (const object of previous ? packObjectsOf(previous) : []) {
    if (present.get(object.name) === object.bytes && !unusable.has(object.name) && !failed.has(object.name))
      usable.set(object.name, object)
  }

  return usable
}

/**
 * The last look before the commit: every pack the backup names is still listed, at its size. A pack
 * deleted while the backup ran (by hand, a lifecycle rule, or a prune misled) fails the backup instead
 * of committing one that cannot be restored.
 */
async function checkPacksStillThere(context: BackupContext, prefix: string, needed: StoredObject[]): Promise<void> {
  const {present} = await packsForCreate(context.store, prefix)
  const gone = needed.find((object) => present.get(object.name) !== object.bytes)
  if (gone === undefined) return
  throw new BackupError(
    'INTEGRITY',
    `Pack ${gone.name}, which this backup uses, is missing from the store or has changed since it was written: nothing was committed.`,
    {
      suggestion:
        'Take the backup again: it does not reuse a pack that is missing, and stores those files anew. If packs keep disappearing, look for a lifecycle rule or another tool deleting from the store.',
    },
  )
}

/**
 * Lines gathered into 64 KiB writes: a write (and, into gzip, a compression call) for each line of a
 * million-file index costs more than the line.
 */
class LineSpool {
  private buffer = Buffer.allocUnsafe(SPOOL_BYTES)
  private failure: Error | undefined
  private filled = 0

  constructor(private readonly stream: Writable) {
    // Reported by the next add or end (a full disk, say), not thrown from an event.
    stream.on('error', (error: Error) => {
      this.failure ??= error
    })
  }

  /** A line of text, or of bytes (a rebuild script line, whose file names need not be UTF-8). */
  async add(line: Buffer | string): Promise<void> {
    if (this.failure) throw this.failure
    const bytes = typeof line === 'string' ? Buffer.byteLength(line) : line.length
    if (SPOOL_BYTES - this.filled < bytes) await this.flush()
    if (bytes > SPOOL_BYTES) await this.write(typeof line === 'string' ? Buffer.from(line) : line)
    else if (typeof line === 'string') this.filled += this.buffer.write(line, this.filled)
    else this.filled += line.copy(this.buffer, this.filled)
  }

  async end(): Promise<void> {
    await this.flush()
    if (this.failure) throw this.failure
    await new Promise<void>((resolve, reject) => {
      this.stream.end((error?: Error | null) => (error ? reject(error) : resolve()))
    })
  }

  private async flush(): Promise<void> {
    if (this.filled === 0) return
    const full = this.buffer.subarray(0, this.filled)
    this.buffer = Buffer.allocUnsafe(SPOOL_BYTES)
    this.filled = 0
    await this.write(full)
  }

  private async write(data: Buffer): Promise<void> {
    if (!this.stream.write(data)) await once(this.stream, 'drain')
  }
}

/** An entry's index line without its content: what an unchanged file is known by. */
function describe(entry: MediaEntry): IndexEntry {
  // Assigned, not spread: this runs for every file of every backup.
  const line: IndexEntry = {
    mode: entry.mode,
    mtimeMs: entry.mtime.getTime(),
    path: entry.path,
    size: entry.type === 'file' ? entry.size : 0,
    type: entry.type,
  }
  if (entry.ctimeMs !== undefined) line.ctimeMs = entry.ctimeMs
  if (entry.etag !== undefined) line.etag = entry.etag
  if (entry.ino !== undefined) line.ino = entry.ino
  if (entry.key !== undefined) line.key = entry.key
  if (entry.linkTarget !== undefined) line.linkTarget = entry.linkTarget
  return line
}

/** Each item of `source` as the watchdog allows: a read that hangs fails as a stall. */
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
 * read is stored as read (its SHA-256 is of what was stored), like tar does.
 */
async function storeFile(
  entry: MediaEntry,
  packs: PackWriter,
  blobs: {known: ReadonlyMap<string, string>; stored: Map<string, string>},
  progress: Progress,
  watchdog: ActivityWatchdog,
): Promise<undefined | {blobs: [string, string][]; newBytes: number; sha256?: string; size: number}> {
  let source: AsyncIterable<Buffer> | Iterable<Buffer> | undefined
  if (entry.prefetched) {
    // Read ahead by the provider: small enough for one blob, or none when empty.
    const content = await watchdog.race(entry.prefetched)
    source = content && (content.length > 0 ? [content.subarray(0, entry.size)] : [])
  } else if (entry.localPath === undefined) {
    const stream = await entry.open!()
    source = stream && cutIntoBlobs(stream)
  } else {
    source = await watchdog.race(readLocal(entry.localPath, entry.size))
  }

  if (source === undefined) return undefined
  const content: [string, string][] = []
  let size = 0
  let newBytes = 0
  for await (const blob of watched(source, watchdog)) {
    watchdog.touch()
    size += blob.length
    progress.advance(blob.length)
    const id = createHash('sha256').update(blob).digest('hex')
    let pack = blobs.known.get(id) ?? (blob.length >= DEDUPE_MIN_BYTES ? blobs.stored.get(blobKey(id)) : undefined)
    if (pack === undefined) {
      pack = await packs.add(id, blob)
      newBytes += blob.length
      if (blob.length >= DEDUPE_MIN_BYTES && blobs.stored.size < DEDUPE_MAX_BLOBS) blobs.stored.set(blobKey(id), pack)
    }

    content.push([id, pack])
  }

  // A file of one blob (most media files) has the blob's id for its SHA-256, and an empty file, which
  // needs no blob, has the SHA-256 of nothing. A larger file's is not taken here: reading it back
  // (download, restore, verify) computes it from the authenticated blobs, so a backup hashes each byte once.
  const sha256 = content.length === 1 ? content[0][0] : content.length === 0 ? EMPTY_SHA256 : undefined
  return {blobs: content, newBytes, ...(sha256 === undefined ? {} : {sha256}), size}
}

/**
 * A local file's blobs, up to its listed size (a file that grew is cut there, like the tar format
 * does; one that shrank is stored as read): BLOB_BYTES each, the last one shorter; an empty file has
 * none. Each is read straight into its own buffer (the pack writer holds on to it until the upload has
 * taken it). Reads go through the thread pool, so a hung mount never blocks the main thread, where the
 * stall watchdog and the signal handlers run. Undefined when the file is gone.
 */
async function readLocal(path: Buffer | string, listedSize: number): Promise<AsyncIterable<Buffer> | undefined> {
  const descriptor = await openForReading(path)
  if (descriptor === undefined) return undefined

  return (async function* () {
    try {
      let remaining = listedSize
      while (remaining > 0) {
        const buffer = Buffer.allocUnsafe(Math.min(BLOB_BYTES, remaining))
        let filled = 0
        while (filled < buffer.length) {
          const bytesRead = await readInto(descriptor, buffer, filled, buffer.length - filled)
          if (bytesRead === 0) break
          filled += bytesRead
        }

        if (filled > 0) yield buffer.subarray(0, filled)
        if (filled < buffer.length) return
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

interface IndexCursor {
  /** The previous entry of this path and type's place, if any; entries must be asked for in order. */
  seek(entry: {path: string; type: string}): Promise<IndexEntry | undefined>
}

interface PreviousIndex {
  close(): Promise<void>
  /** A new cursor from the start of the index, which is in `order`. */
  cursor(order: (a: {path: string; type: string}, b: {path: string; type: string}) => number): IndexCursor
  /** Every entry, once through, in the index's order. */
  entries(): AsyncGenerator<IndexEntry, void>
}

const NO_PREVIOUS: PreviousIndex = {
  async close() {},
  cursor: () => ({seek: async () => undefined as IndexEntry | undefined}),
  async *entries() {},
}

/** The previous backup's index, decrypted to a temp file, read by cursors that move forward with the walk. */
async function previousIndex(
  context: BackupContext,
  previous: Manifest | undefined,
  identity: X25519Identity,
  tempDir: string,
): Promise<PreviousIndex> {
  const media = previous?.components.media
  if (previous === undefined || media === undefined || !isPacked(media)) return NO_PREVIOUS
  const path = join(tempDir, 'previous.index')
  try {
    await readIndexFile(context, previous, [identity], path)
  } catch (error) {
    // Not fatal: without the previous index every file is read, and the backup is still whole.
    await rm(path, {force: true})
    context.reporter.notice(
      `warning: the index of backup ${previous.id} could not be read (${(error as Error).message}); every media file is read again.`,
    )
    return NO_PREVIOUS
  }

  const readers: AsyncGenerator<IndexEntry, void>[] = []
  return {
    async close() {
      for (const lines of readers) await lines.return()
      await rm(path, {force: true})
    },
    cursor(order) {
      const lines = readIndexLines(path)
      readers.push(lines)
      let pending: IndexEntry | undefined
      let done = false
      return {
        async seek(target) {
          while (!done) {
            if (pending === undefined) {
              const next = await lines.next()
              if (next.done) {
                done = true
                break
              }

              pending = next.value
            }

            const position = order(pending, target)
            if (position === 0) return pending
            if (position > 0) return
            pending = undefined
          }
        },
      }
    },
    entries() {
      const lines = readIndexLines(path)
      readers.push(lines)
      return lines
    },
  }
}

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
  const file = createWriteStream(path, {flags: 'wx', mode: 0o600})
  if (index.encoding !== 'gzip') {
    await readVerified(context, manifest, {identities, object: index.object, plaintext: index.plaintext, sink: file})
    return
  }

  const gunzip = createGunzip()
  const unzipped = pipeline(gunzip, file)
  unzipped.catch(() => {})
  try {
    await readVerified(context, manifest, {identities, object: index.object, plaintext: index.plaintext, sink: gunzip})
  } catch (error) {
    file.destroy()
    throw error
  }

  await unzipped.catch((error: Error) => {
    throw new ObjectCheckError(index.object.name, `not a gzipped index: ${error.message}`)
  })
}

/**
 * The entries of a decrypted index file, one at a time, after checking its header.
 *
 * @yields each entry, in archive order
 */
export async function* readIndexLines(path: string): AsyncGenerator<IndexEntry, void> {
  const lines = createInterface({crlfDelay: Number.POSITIVE_INFINITY, input: createReadStream(path)})
  let first = true
  for await (const line of lines) {
    if (first) {
      checkIndexHeader(line)
      first = false
      continue
    }

    if (line !== '') yield parseIndexLine(line)
  }
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
  options: {
    identities: readonly X25519Identity[]
    /** Sees every entry of the index as the archive is built (verify derives the rebuild script from them). */
    onEntry?: (entry: IndexEntry) => void
    tempDir: string
  },
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

  async function* entries(): AsyncGenerator<MediaEntry> {
    try {
      for await (const entry of readIndexLines(indexPath)) {
        options.onEntry?.(entry)
        const common = {
          ...(entry.etag === undefined ? {} : {etag: entry.etag}),
          ...(entry.key === undefined ? {} : {key: entry.key}),
          mode: entry.mode,
          mtime: new Date(entry.mtimeMs),
          path: entry.path,
        }
        if (entry.type === 'directory') yield {...common, size: 0, type: 'directory'}
        else if (entry.type === 'symlink') yield {...common, linkTarget: entry.linkTarget, size: 0, type: 'symlink'}
        else
          yield {
            ...common,
            open: async () => Readable.from(fileContent(reader, entry, media.index.object.name)),
            // Checked by fileContent as the bytes go by: the archive need not hash them again.
            sha256: entry.sha256 ?? (entry.blobs!.length === 1 ? entry.blobs![0][0] : undefined),
            size: entry.size,
            type: 'file',
          }
      }
    } finally {
      await reader.close().catch(() => {})
      await rm(indexPath, {force: true})
    }
  }

  return createMediaTar(entries(), createListingFile(options.tempDir))
}

async function* fileContent(reader: PackReader, entry: IndexEntry, indexName: string): AsyncGenerator<Buffer> {
  const blobs = entry.blobs!
  // Each blob is checked against its id. A recorded SHA-256 of a one-blob file is that id; one of a
  // larger file (older indexes record it) is checked over the whole.
  const whole = entry.sha256 !== undefined && blobs.length > 1 ? createHash('sha256') : undefined
  if (entry.sha256 !== undefined && blobs.length === 1 && blobs[0][0] !== entry.sha256) {
    throw new ObjectCheckError(indexName, `${entry.path}: its blob is not the file the index records`)
  }

  for (const [blob, pack] of blobs) {
    try {
      for await (const chunk of reader.stream(pack, blob)) {
        whole?.update(chunk)
        yield chunk
      }
    } catch (error) {
      if (error instanceof ObjectCheckError) throw error
      throw new ObjectCheckError(`packs/${pack}`, (error as Error).message)
    }
  }

  if (whole && whole.digest('hex') !== entry.sha256) {
    throw new ObjectCheckError(indexName, `${entry.path}: its blobs do not add up to the file the index records`)
  }
}
