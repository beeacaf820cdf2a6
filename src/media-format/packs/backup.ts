import {createReadStream, createWriteStream} from 'node:fs'
import {rm, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {createGzip} from 'node:zlib'

import {HashingStream} from '../../archive/hash.js'
import {MediaEntry, mediaReadFailure, reportLeftOut} from '../../archive/media-tar.js'
import {WriterKey} from '../../archive/writer-key.js'
import {formatBytes} from '../../domain/format.js'
import {Manifest, MediaPacksComponent, PackObject, StoredObject} from '../../domain/manifest.js'
import {BackupError, isSystemError, sourceReadFailure} from '../../errors.js'
import {BufferLender} from '../../lib/buffer-loan.js'
import {printableName} from '../../lib/byte-names.js'
import {withPath} from '../../lib/file-sink.js'
import {LineSpool} from '../../lib/line-spool.js'
import {ActivityWatchdog} from '../../lib/stall.js'
import {canCompress, zstdCompressor} from '../../lib/zstd.js'
import {mediaProviderFor} from '../../providers/media/index.js'
import {BackupContext, Progress, wallTimeMs} from '../../services/context.js'
import {failedPacks} from '../../services/machine-state.js'
import {COMPRESSION_LEVEL} from '../../services/transfer.js'
import {packObjectsOf} from './check.js'
import {packsForCreate, packsPrefix} from './folder.js'
import {
  blobKey,
  blobSize,
  changeTimeSettled,
  INDEX_NAME,
  IndexEntry,
  indexHeaderLine,
  indexLine,
  isUnchanged,
  keyOrder,
  REBUILD_NAME,
  walkOrder,
} from './media-index.js'
import {previousIndex} from './previous-index.js'
import {rebuildScriptHeader, rebuildScriptLine} from './rebuild-script.js'
import {DEDUPE_MAX_BLOBS, DEDUPE_MIN_BYTES, storeFile} from './store-file.js'
import {PackWriter} from './writer.js'

/** Uploads one staged file as a backup object (the caller's put: it records what to undo on failure). */
export type PutFile = (
  name: string,
  source: Readable,
  progress: Progress,
  options: {
    /** The file's size. */
    bytes: number
    to: readonly Uint8Array[]
  },
) => Promise<{
  object: StoredObject
  plaintext: {bytes: number; sha256: string}
}>

/**
 * Backs up a media folder incrementally. The previous backup of this writer is read through its
 * index, merged with the walk (both are in walk order, so memory stays flat): a file whose size, mtime,
 * inode and ctime are unchanged keeps its blobs and is not opened (a file read too close to its last
 * change is read again: changeTimeSettled). Everything else is read, cut into blobs of BLOB_BYTES,
 * and only blobs this run has not stored yet go into new packs. Packs that prune has condemned, or
 * copied elsewhere (superseded), are never reused. The index goes last, encrypted to the owner and
 * to this writer.
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
  const provider = mediaProviderFor(env.media!)
  // Both the index and the walk are in the provider's order, so that they merge as sorted streams.
  const order = provider.kind === 's3' ? keyOrder : (a: {path: string}, b: {path: string}) => walkOrder(a.path, b.path)
  provider.expectEntries?.(options.previous?.components.media?.files ?? 0)
  const prefix = packsPrefix(env.app, env.name)
  const usable = await usablePacks(context, prefix, options.previous)
  const previous = await previousIndex(context, options.previous, options.writer.ageIdentity, options.tempDir)
  const packs = new PackWriter({
    codec: 'auto',
    prefix,
    recipients: options.recipients,
    signal,
    // A remote store's streamed puts hold part buffers; a staged pack goes up without any.
    stageIn: options.tempDir,
    stallTimeoutMs: context.stallTimeoutMs,
    store: context.store,
  })
  const watchdog = new ActivityWatchdog({
    signal,
    source: `the media ${provider.location}`,
    timeoutMs: context.stallTimeoutMs,
  })
  const indexPath = join(options.tempDir, 'media.index.gz')
  // Streams with their default buffers: letting the index run 1 MiB ahead of gzip and of its writes,
  // instead of waiting at every 16 KiB, saved 0.1 s of an unchanged backup of the bench tree, but a
  // backup that read one changed 128 MiB file again then peaked at up to 158 MiB instead of 140.
  const gzip = createGzip()
  const indexWritten = pipeline(gzip, tempFile(indexPath))
  indexWritten.catch(() => {})
  const index = new LineSpool(gzip)
  // The rebuild script is compressed where this machine can: a line a file, with the hex ids of its
  // blobs, it shrinks to about 40%. As the walk writes it, so that zstd works on the other core then:
  // compressed when it was stored, it cost an unchanged backup of the bench tree 0.1 s more. The
  // recipes decompress it with `zstd -dcf`, which passes an older, plain one through.
  const scriptCompression = canCompress() ? 'zstd' : 'none'
  const scriptPath = join(options.tempDir, scriptCompression === 'zstd' ? 'media.rebuild.sh.zst' : 'media.rebuild.sh')
  const scriptPlaintext = new HashingStream()
  // With the command's signal: a zstd that stopped would otherwise hold the backup past Ctrl-C.
  const scriptWritten = pipeline(
    [
      scriptPlaintext,
      ...(scriptCompression === 'zstd' ? [zstdCompressor(COMPRESSION_LEVEL)] : []),
      tempFile(scriptPath),
    ],
    {signal},
  )
  scriptWritten.catch(() => {})
  const script = new LineSpool(scriptPlaintext)
  const stats = {blobBytes: 0, files: 0, filesRead: 0, totalFileBytes: 0}
  const referenced = new Set<string>()
  const stored = new Map<string, string>()
  // This backup's own: a host process keeps no buffers of it once the command is done.
  const blobBuffers = new BufferLender(4)
  // Before the walk's first stat, so before every read: what change times are judged against.
  const walkStartedMs = wallTimeMs(context)
  /** Whether the file `described` (its index line without content) keeps the blobs of `before`. */
  const reusable = (before: IndexEntry, described: IndexEntry): boolean =>
    isUnchanged(before, described) && before.blobs!.every(([, pack]) => usable.has(pack))
  /**
   * The previous backup's larger blobs, so that a file renamed or copied since is read but not stored
   * again: collected before the first file is read, so that a backup that reads none (nothing changed)
   * reads the index once instead of twice.
   */
  let knownBlobs: Promise<void> | undefined
  const collectKnownBlobs = async () => {
    for await (const entry of previous.entries()) {
      for (const [position, [id, pack]] of (entry.blobs ?? []).entries()) {
        if (stored.size < DEDUPE_MAX_BLOBS && usable.has(pack) && blobSize(entry.size, position) >= DEDUPE_MIN_BYTES)
          stored.set(blobKey(id), pack)
      }
    }
  }

  /**
   * An unchanged file's index line, with its previous blobs; undefined when it has to be read. Apart
   * from fileLine, which reads: most files of most backups are unchanged, and need no promise.
   */
  const unchangedLine = (entry: MediaEntry, before: IndexEntry | undefined): IndexEntry | undefined => {
    if (before === undefined) return undefined
    const line = describe(entry)
    if (!reusable(before, line)) return undefined
    line.blobs = before.blobs
    if (before.sha256 !== undefined) line.sha256 = before.sha256
    return line
  }

  /** A changed or new file's index line, with what reading it stored; undefined when it is gone. */
  const fileLine = async (entry: MediaEntry, before: IndexEntry | undefined): Promise<IndexEntry | undefined> => {
    // A changed file keeps the blobs of its previous version that are still in it (an edit in place
    // stores the blobs it touched); blobs of condemned or superseded packs are stored again.
    const known = new Map((before?.type === 'file' ? before.blobs! : []).filter(([, pack]) => usable.has(pack)))
    knownBlobs ??= collectKnownBlobs()
    await knownBlobs
    const read = await storeFile(
      entry,
      packs,
      {buffers: blobBuffers, known, stored},
      {progress: options.progress, watchdog},
    ).catch((error: unknown) => {
      throw mediaReadFailure(error, entry)
    })
    if (read === undefined) {
      reportLeftOut(entry, (path, why) =>
        reporter.notice(`warning: media ${JSON.stringify(printableName(path))} skipped: ${why}`),
      )
      return undefined
    }

    stats.filesRead++
    stats.blobBytes += read.newBytes
    // Described after reading: an S3 object replaced since the listing is recorded as read.
    const line = describeRead(entry, walkStartedMs)
    line.blobs = read.blobs
    line.size = read.size
    if (read.sha256 !== undefined) line.sha256 = read.sha256
    return line
  }

  // The ahead cursor is for the provider's read-ahead: an S3 object that will be reused is not downloaded.
  const {ahead, current} = previous.cursors(order)
  const needsContent = (entry: MediaEntry): boolean | Promise<boolean> => {
    const before = ahead.seek(entry)
    const needs = (found: IndexEntry | undefined) => found === undefined || !reusable(found, describe(entry))
    return before instanceof Promise ? before.then(needs) : needs(before)
  }

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
      // A walk that fails says so as the tar format's does (its read is the transfer's source).
      const next = await watchdog.race(entries.next()).catch((error: unknown) => {
        throw isSystemError(error) ? sourceReadFailure(error, `the media ${provider.location}`) : error
      })
      if (next.done) break
      watchdog.touch()
      const entry = next.value
      let before = current.seek(entry)
      if (before instanceof Promise) before = await before
      let line: IndexEntry | undefined
      if (entry.type === 'file') {
        line = unchangedLine(entry, before) ?? (await fileLine(entry, before))
        if (line === undefined) continue
        for (const [, pack] of line.blobs!) referenced.add(pack)
        stats.files++
        stats.totalFileBytes += line.size
      } else {
        line = describe(entry)
      }

      const indexing = index.add(indexLine(line))
      if (indexing) await indexing
      const scripting = script.add(rebuildScriptLine(line))
      if (scripting) await scripting
    }

    watchdog.stop()
    const written = await packs.close()
    const packObjects = new Map([...usable, ...written.map((pack) => [pack.name, pack.object] as const)])
    await checkPacksStillThere(
      context,
      prefix,
      [...referenced].map((pack) => packObjects.get(pack)!),
    )
    await Promise.all([index.end(), script.end(), indexWritten, scriptWritten])
    const uploaded = await options.put(INDEX_NAME, createReadStream(indexPath), options.progress, {
      bytes: (await stat(indexPath)).size,
      to: [...options.recipients, options.writer.ageIdentity.publicKey],
    })
    // Stored as it was staged: what the manifest records as its plaintext is the script's own.
    const {object: rebuildObject} = await options.put(REBUILD_NAME, createReadStream(scriptPath), options.progress, {
      bytes: (await stat(scriptPath)).size,
      to: options.recipients,
    })
    const rebuild = {
      object: rebuildObject,
      plaintext: {bytes: scriptPlaintext.bytes, sha256: scriptPlaintext.sha256},
      ...(scriptCompression === 'zstd' ? {compression: 'zstd' as const} : {}),
    }
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
    await packs.abandon(error as Error)
    gzip.destroy()
    // Stops the compressor too, through the pipeline: a program left waiting would hold the process.
    scriptPlaintext.destroy()
    await scriptWritten.catch(() => {})
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
): Promise<Map<string, PackObject>> {
  const {present, unusable} = await packsForCreate(context.store, prefix)
  const failed = await failedPacks(context)
  const usable = new Map<string, PackObject>()
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
 * The index line of a file just read, in a walk that started at `walkStartedMs`. A file read too close
 * to its last change could change again unseen: it is recorded without its change time, so that the
 * next backup reads it again.
 */
function describeRead(entry: MediaEntry, walkStartedMs: number): IndexEntry {
  const line = describe(entry)
  if (line.ctimeMs !== undefined && !changeTimeSettled(line.ctimeMs, walkStartedMs)) delete line.ctimeMs
  return line
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

/**
 * A temp file of the backup (the index, the rebuild script), with a write stream's default buffers
 * (see the index's above). A failed write names the file, which a write stream's error does not, so
 * that a full temp folder is not reported as the store's.
 */
function tempFile(path: string): Writable {
  // eslint-disable-next-line no-restricted-syntax -- its default buffers, on purpose: see the index's
  const file = createWriteStream(path, {flags: 'wx', mode: 0o600})
  // Before the pipeline's own listener, which passes the error on to every stage.
  file.once('error', (error) => withPath(error, path))
  return file
}
