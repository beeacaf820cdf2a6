import {createHash} from 'node:crypto'
import {once} from 'node:events'
import {createReadStream, createWriteStream} from 'node:fs'
import {rm} from 'node:fs/promises'
import {join} from 'node:path'
import {createInterface} from 'node:readline'
import {PassThrough, Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {createGunzip, createGzip} from 'node:zlib'

import {X25519Identity} from '../archive/age-keys.js'
import {createDecryptStream} from '../archive/age.js'
import {createListingFile} from '../archive/listing.js'
import {createMediaTar, MediaEntry} from '../archive/media-tar.js'
import {readTar} from '../archive/tar-reader.js'
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
import {PackForward, planPackCollection} from '../domain/pack-collection.js'
import {encodeName, printableName} from '../lib/byte-names.js'
import {closeFile, openForReading, readInto} from '../lib/file-io.js'
import {limitOldGenerationGrowth} from '../lib/memory.js'
import {ActivityWatchdog} from '../lib/stall.js'
import {mediaProviderFor} from '../providers/media/index.js'
import {ObjectNotFoundError} from '../store/port.js'
import {Catalog} from './catalog.js'
import {BackupContext, Progress} from './context.js'
import {putSmallObject} from './objects.js'
import {
  condemnedMarkerKey,
  forwardKey,
  forwardTargets,
  packsPrefix,
  readForward,
  readPackFolder,
  unusablePacks,
} from './pack-folder.js'
import {openPack, PackReader, PackWriter} from './packs.js'
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
  const unusable = await unusablePacks(context.store, prefix)
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
    before.blobs!.every(([, pack]) => !unusable.has(pack))
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
      const known = new Map((before?.type === 'file' ? before.blobs! : []).filter(([, pack]) => !unusable.has(pack)))
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
      if (stored.size < DEDUPE_MAX_BLOBS && !unusable.has(pack) && blobSize(entry.size, position) >= DEDUPE_MIN_BYTES)
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
      await script.add(encodeName(rebuildScriptLine(line)))
    }

    watchdog.stop()
    const written = await packs.close()
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

/** A word for sh: in single quotes, which keep everything literal but a single quote. */
function shellQuote(text: string): string {
  return `'${text.replaceAll("'", String.raw`'\''`)}'`
}

/**
 * The rebuild script of a backup: what its index says, as sh commands that put the media tree back
 * together from the blobs of its packs, with nothing but a POSIX shell (`export --raw`'s README):
 *
 *     for pack in packs/*.age; do age -d -i KEY "$pack" | tar -x -C blobs; done
 *     age -d -i KEY media.rebuild.sh.age > rebuild.sh && sh rebuild.sh blobs media
 */
function rebuildScriptHeader(): string {
  return [
    '#!/bin/sh',
    '# Rebuilds the media of one backup from the blobs of its packs. Usage: sh rebuild.sh BLOBS TARGET',
    '# BLOBS: a folder where every pack was extracted (age -d -i KEY PACK | tar -x -C BLOBS).',
    'set -eu',
    'B=$1',
    'T=$2',
    'mkdir -p "$T"',
    'd() { mkdir -p -- "$T/$1"; }',
    'f() { p=$1; m=$2; shift 2; : > "$T/$p"; for b in "$@"; do cat -- "$B/$b" >> "$T/$p"; done; chmod "$m" "$T/$p"; }',
    'l() { ln -s -- "$2" "$T/$1"; }',
    '',
  ].join('\n')
}

function rebuildScriptLine(entry: IndexEntry): string {
  const mode = (entry.mode % 0o1_0000).toString(8)
  if (entry.type === 'directory') return `d ${shellQuote(entry.path)} ${mode}\n`
  if (entry.type === 'symlink') return `l ${shellQuote(entry.path)} ${shellQuote(entry.linkTarget ?? '')}\n`
  return `f ${shellQuote(entry.path)} ${mode}${entry.blobs!.map(([blob]) => ` ${blob}`).join('')}\n`
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
  options: {identities: readonly X25519Identity[]; tempDir: string},
): Promise<{stream: Readable; summary: Promise<unknown>}> {
  const media = manifest.components.media as MediaPacksComponent
  const indexPath = join(options.tempDir, `${manifest.id}.index`)
  await readIndexFile(context, manifest, options.identities, indexPath)
  const prefix = packsPrefix(manifest.app, manifest.environment)
  const reader = new PackReader({
    forwards: forwardTargets((await readPackFolder(context.store, prefix)).forwards),
    identities: options.identities,
    prefix,
    store: context.store,
  })

  async function* entries(): AsyncGenerator<MediaEntry> {
    try {
      for await (const entry of readIndexLines(indexPath)) {
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

/** What prune did, or would do, with the packs of an environment. */
export interface PackCollectionResult {
  condemned: string[]
  deleted: string[]
  /** Half-written packs of killed creates, untouched for the grace period: removed. */
  leftovers: string[]
  pardoned: string[]
  /** Mostly dead packs whose live blobs were copied into new packs (a prune with the identity). */
  repacked?: RepackResult
  /** Why nothing was collected, when that is the case for a reason other than "nothing to collect". */
  skipped?: string
  waiting: number
}

export interface RepackResult {
  /** Mostly dead packs left for later: younger than the store's minimum storage duration (S3 Standard-IA: 30 days). */
  deferred: number
  /** Bytes of the superseded packs that are freed once they are deleted. */
  freedBytes: number
  /** The superseded packs. */
  from: string[]
  /** The new packs holding their live blobs. */
  into: string[]
  liveBytes: number
  /** When repacking did not run, why (no identity, a damaged backup). */
  skipped?: string
}

/**
 * Two-phase collection of the packs that no backup references or that repacking superseded (see
 * domain/pack-collection.ts). The references are every pack named by a committed backup that is not
 * being removed, damaged ones included; when a damaged manifest cannot be read at all, nothing is
 * collected, since it may reference any pack. Markers are written before anything is deleted, and a
 * pack's marker goes only after the pack, so an interrupted prune leaves at worst a marker that the
 * next one removes.
 */
export async function collectPacks(
  context: BackupContext,
  catalog: Catalog,
  options: {dryRun: boolean; removing: ReadonlySet<string>},
): Promise<PackCollectionResult | undefined> {
  const prefix = packsPrefix(context.env.app, context.env.name)
  const folder = await readPackFolder(context.store, prefix)
  const {leftovers, markers, packs} = folder
  if (packs.length === 0 && markers.length === 0 && leftovers.length === 0 && folder.forwards.length === 0)
    return undefined
  const unreadable = catalog.damaged.find((backup) => backup.manifest === undefined)
  if (unreadable) {
    return {
      condemned: [],
      deleted: [],
      leftovers: [],
      pardoned: [],
      skipped: `backup ${unreadable.id} is damaged and its manifest unreadable, so any pack may be its`,
      waiting: 0,
    }
  }

  const references = packReferences(catalog, options.removing)
  const forwards: PackForward[] = []
  for (const listed of folder.forwards) {
    const forward = await readForward(context.store, listed)
    if (forward) forwards.push(forward)
  }

  const graceMs = context.env.retention.incompleteGraceHours * 3_600_000
  const plan = planPackCollection({forwards, graceMs, markers, now: context.now(), packs, references})
  // Like an incomplete backup: left alone for the grace period, in case its writer is still running.
  const staleLeftovers = leftovers.filter((object) => context.now().getTime() - object.modifiedAt.getTime() > graceMs)
  const result = {
    condemned: plan.condemn,
    deleted: plan.delete,
    leftovers: staleLeftovers.map((object) => object.key.slice(`${prefix}/packs/`.length)),
    pardoned: plan.pardon,
    waiting: plan.waiting.length,
  }
  if (options.dryRun) return result
  for (const pack of plan.condemn)
    await putSmallObject(context.store, condemnedMarkerKey(prefix, pack), `${context.now().toISOString()}\n`)
  // A pardoned pack loses its forwards first: readers read it, and creates may use it again.
  for (const {from, to} of plan.unforward) await context.store.delete(forwardKey(prefix, from, to))
  for (const pack of plan.pardon) await context.store.delete(condemnedMarkerKey(prefix, pack))
  for (const pack of plan.delete) {
    context.signal.throwIfAborted()
    await context.store.delete(`${prefix}/packs/${pack}`)
    await context.store.delete(condemnedMarkerKey(prefix, pack))
  }

  for (const pack of plan.dropMarkers) await context.store.delete(condemnedMarkerKey(prefix, pack))
  for (const {key} of staleLeftovers) await context.store.delete(key)
  return result
}

/** Every pack named by a committed backup that is not being removed (damaged ones included), with who names it. */
export function packReferences(catalog: Catalog, removing: ReadonlySet<string>): Map<string, string[]> {
  const references = new Map<string, string[]>()
  const manifests = [
    ...catalog.complete.filter(({manifest}) => !removing.has(manifest.id)).map(({manifest}) => manifest),
    ...catalog.damaged.map((backup) => backup.manifest!),
  ]
  for (const manifest of manifests) {
    const {media} = manifest.components
    if (media && isPacked(media))
      for (const pack of media.packs) references.set(pack, [...(references.get(pack) ?? []), manifest.id])
  }

  return references
}

/**
 * Reads one pack whole (or, once it is gone, the pack its live blobs were copied into): every member
 * authenticated by age and checked against its name; the count of blobs.
 */
export async function checkPack(
  context: BackupContext,
  manifest: Manifest,
  pack: string,
  keys: {forwards?: ReadonlyMap<string, readonly string[]>; identities: readonly X25519Identity[]},
): Promise<number> {
  const {forwards, identities} = keys
  const prefix = packsPrefix(manifest.app, manifest.environment)
  let where = `packs/${pack}`
  let source: Readable
  try {
    const opened = await openPack(context.store, prefix, pack, forwards)
    source = opened.source
    where = `packs/${opened.stored}`
  } catch (error) {
    if (error instanceof ObjectNotFoundError) throw new ObjectCheckError(where, 'missing from the store')
    throw error
  }

  const plain = new PassThrough()
  pipeline(source, createDecryptStream(identities), plain).catch((error: Error) => plain.destroy(error))
  let blobs = 0
  try {
    for await (const member of readTar(plain)) {
      const hash = createHash('sha256')
      for await (const chunk of member.body) hash.update(chunk as Buffer)
      if (hash.digest('hex') !== member.path)
        throw new ObjectCheckError(where, `blob ${member.path.slice(0, 12)}… does not match its id`)
      blobs++
    }
  } catch (error) {
    if (error instanceof ObjectCheckError) throw error
    throw new ObjectCheckError(where, (error as Error).message)
  }

  return blobs
}
