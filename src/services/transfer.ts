import {rm} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {Duplex, PassThrough, Readable, Transform, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {HashingStream} from '../archive/hash.js'
import {createSealStream, Sealing} from '../archive/seal.js'
import {StoredObject} from '../domain/manifest.js'
import {BackupError, describeCause, describeIoError, sourceReadFailure, tempFolderFailure} from '../errors.js'
import {deferred} from '../lib/deferred.js'
import {createFileSink} from '../lib/file-sink.js'
import {StallWatchdog} from '../lib/stall.js'
import {zstdCompressor} from '../lib/zstd.js'
import {Store} from '../store/port.js'
import {Progress} from './context.js'

/**
 * Sealing 4 MiB here takes the main thread about 25 ms; starting the cipher thread costs about 0.1 s
 * of CPU and of waiting, and 8 MiB (the index of a packed backup of 20,000 files is about 1 MiB).
 */
const SEAL_HERE_MAX_BYTES = 4 * 1024 * 1024

export interface TransferOptions {
  /**
   * The plaintext's size, when it is known ahead (a staged file). An object of up to
   * {@link SEAL_HERE_MAX_BYTES} is sealed on this thread: starting the cipher thread would cost more.
   */
  bytes?: number
  compression: 'none' | 'zstd'
  /** The object's key in the store. */
  key: string
  /** The source in words, for messages: "the sqlite database /srv/app/db.sqlite3". */
  location: string
  /** The object's name, for messages. */
  name: string
  progress: Progress
  recipients: readonly Uint8Array[]
  signal: AbortSignal
  source: Readable
  /**
   * A private folder (the command's staging folder) where an object bound for a remote store is
   * staged whole and then given to putFile, which sends it without part buffers: for objects of a
   * bounded size (a pack, about 16 MiB). A local store takes the stream as it comes.
   */
  stageIn?: string
  /** Replaces a stage; for fault injection in tests. */
  stages?: {compressor?: () => Duplex; encryption?: (seal: Sealing) => Duplex; stagingSink?: (path: string) => Writable}
  stallTimeoutMs: number
  store: Store
}

export interface TransferResult {
  object: StoredObject
  plaintext: {bytes: number; sha256: string}
}

/**
 * Streams one component from its source through hashing, optional compression and age encryption
 * into the store, and returns what the manifest records of it.
 *
 * Every stage settles the whole transfer: the first failure, wherever it happens, destroys every
 * stream, so no stage is left waiting for data that will never come or for a reader that is gone; a
 * stage that stops moving data is failed by a watchdog. The error names the stage that failed first,
 * and the location, with the documented exit code: 7 for a source or store that is unavailable.
 */
export async function transferComponent(options: TransferOptions): Promise<TransferResult> {
  const {object, plaintext} = await transfer(options, {hashPlaintext: true})
  return {object, plaintext: {bytes: plaintext.bytes, sha256: plaintext.sha256!}}
}

/**
 * The same for an object whose plaintext no manifest records: a pack, whose every blob is checked by
 * its id when it is read. Its plaintext is not hashed, which took a SHA-256 pass over every byte a
 * packed backup stores (about 0.6 CPU-s of a first backup of the bench tree).
 */
export async function transferObject(options: TransferOptions): Promise<StoredObject> {
  const {object} = await transfer(options, {hashPlaintext: false})
  return object
}

async function transfer(
  options: TransferOptions,
  {hashPlaintext}: {hashPlaintext: boolean},
): Promise<{object: StoredObject; plaintext: {bytes: number; sha256?: string}}> {
  const {location, name, progress, signal, source, store} = options
  const {encryption, meter, plain, seal, zstd} = middleStages(options, {hashPlaintext})
  const output = new PassThrough({highWaterMark: 256 * 1024})
  // Its error is the store's, reported through `stored` and the pipeline; a store that fails before
  // the pipeline reaches it (a folder it cannot make) must not leave that error without a listener.
  output.on('error', () => {})
  const failures = new FirstFailure()
  // A store that hangs without reading or settling must not hold the transfer: a stall or an
  // interruption settles it.
  const stalled = deferred<never>()
  // Stopping the store's requests as well frees their sockets: a hung request would keep the process alive.
  const stopStore = new AbortController()
  const onAbort = () => stalled.reject(signal.reason as Error)
  signal.addEventListener('abort', onAbort, {once: true})
  const watchdog = new StallWatchdog({
    middle: zstd ? 'the compressor (zstd) or the encryption' : 'the encryption',
    onStall(error) {
      failures.note('stall', error)
      source.destroy(error)
      output.destroy(error)
      stopStore.abort(error)
      stalled.reject(error)
    },
    source: location,
    store: `the store ${store.description}`,
    timeoutMs: options.stallTimeoutMs,
    writer: staged(options) ? `the temp folder ${options.stageIn}` : undefined,
  })
  const stages: Array<[Stage, Duplex | Readable]> = [
    ['source', source],
    ['encryption', encryption],
  ]
  if (encryption !== seal) stages.push(['encryption', seal])
  if (zstd) stages.push(['compressor', zstd])
  for (const [stage, stream] of stages) stream.once('error', (error: Error) => failures.note(stage, error))
  const streams = [
    source,
    watchdog.source,
    ...(plain ? [plain] : []),
    meter,
    ...(zstd ? [zstd] : []),
    encryption,
    watchdog.sink,
    output,
  ]
  const stored = putOutput(options, output, {
    onProgress: watchdog.touch,
    onStagingFailure: (error) => failures.note('staging', error),
    signal: AbortSignal.any([signal, stopStore.signal]),
  }).catch((error: unknown) => {
    failures.note('store', error)
    output.destroy(error as Error)
    throw error
  })
  const [piped, storedResult] = await Promise.allSettled([
    Promise.race([pipeline(streams as unknown as [Readable, ...Duplex[]], {signal}), stalled.promise]),
    Promise.race([stored, stalled.promise]),
  ]).finally(() => {
    watchdog.stop()
    signal.removeEventListener('abort', onAbort)
  })
  if (piped.status === 'rejected' || storedResult.status === 'rejected') {
    const fallback = piped.status === 'rejected' ? piped.reason : (storedResult as PromiseRejectedResult).reason
    throw failures.explain(fallback, {
      location,
      name,
      stageIn: options.stageIn,
      store: store.description,
      storeIsLocal: store.local,
    })
  }

  const sealed = await seal.result
  const {bytes} = storedResult.value
  progress.done()
  if (bytes !== sealed.sealed.bytes)
    throw new Error(`${name}: the store accepted ${bytes} bytes of ${sealed.sealed.bytes}`)
  return {
    object: {bytes, name, sha256: sealed.sealed.sha256},
    plaintext: plain ? {bytes: plain.bytes, sha256: plain.sha256} : sealed.plaintext,
  }
}

/**
 * The stages between the source and the store: a meter of progress, the plaintext's hash where the
 * seal stream cannot take it (compressed data is hashed before it leaves for zstd; otherwise the seal
 * stream hashes its input), zstd, and the encryption.
 */
function middleStages(
  options: TransferOptions,
  {hashPlaintext}: {hashPlaintext: boolean},
): {encryption: Duplex; meter: Transform; plain?: HashingStream; seal: Sealing; zstd?: Duplex} {
  const {compression, progress, stages, store} = options
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      progress.advance(chunk.length)
      callback(null, chunk)
    },
  })
  const plain = compression === 'zstd' && hashPlaintext ? new HashingStream() : undefined
  const small = options.bytes !== undefined && options.bytes <= SEAL_HERE_MAX_BYTES
  const seal = createSealStream(options.recipients, {
    hashPlaintext: hashPlaintext && compression === 'none',
    offThread: store.local && !small,
  })
  const encryption = stages?.encryption?.(seal) ?? seal
  const zstd = compression === 'zstd' ? (stages?.compressor ?? compressor)() : undefined
  return {encryption, meter, plain, seal, zstd}
}

/**
 * Stores the transfer's output: as a stream, or staged in a file of its own first, which is then given
 * to putFile (see TransferOptions.stageIn). The file is removed however it ends; it holds ciphertext.
 */
async function putOutput(
  options: TransferOptions,
  output: Readable,
  {
    onProgress,
    onStagingFailure,
    signal,
  }: {onProgress: () => void; onStagingFailure: (error: Error) => void; signal: AbortSignal},
): Promise<{bytes: number}> {
  const {key, name, stageIn, stages, store} = options
  if (!staged(options)) return store.put(key, output, {signal})
  const path = join(stageIn!, `${name}.staged`)
  let sink: undefined | Writable
  try {
    sink = stages?.stagingSink?.(path) ?? createFileSink(path, {flags: 'wx', mode: 0o600})
    // Before the pipeline's own listener, which passes the error on to every stage. The sink's own
    // failures name its path; an error it is destroyed with (another stage's) does not.
    sink.on('error', (error: NodeJS.ErrnoException) => {
      if (error.path === path) onStagingFailure(error)
    })
    await pipeline(output, sink, {signal})
    return await store.putFile(key, path, {onProgress, signal})
  } finally {
    // A sink destroyed while its file is still being opened (a source that failed at once) creates
    // the file after the pipeline has failed: removed before that, it would come back, and stay.
    const opening = sink
    if (opening !== undefined && !opening.closed) {
      await new Promise((resolve) => {
        opening.once('close', resolve)
      })
    }

    await rm(path, {force: true})
  }
}

/** Whether the transfer stages its object in a file before the store takes it (TransferOptions.stageIn). */
function staged({stageIn, store}: TransferOptions): boolean {
  return stageIn !== undefined && !store.local
}

/** zstd's own default: what every compressed object of a backup is written with. */
export const COMPRESSION_LEVEL = 3

/** The output is a standard .zst that `zstd -d` reads. */
function compressor(): Duplex {
  return zstdCompressor(COMPRESSION_LEVEL)
}

/** Errors of the file system written to, not of the data or the program. */
const STORAGE_ERRORS = new Set(['EDQUOT', 'ENOSPC', 'EROFS'])

type Stage = 'compressor' | 'encryption' | 'source' | 'staging' | 'stall' | 'store'

/**
 * Remembers which stage of a transfer failed first. Once one stage fails, the others fail as a
 * consequence (a premature close, an aborted upload), so the first failure is the cause to report.
 */
class FirstFailure {
  private first: undefined | {error: unknown; stage: Stage}

  /** The user-facing error: the cause, named by the location that failed. */
  explain(
    fallback: unknown,
    where: {location: string; name: string; stageIn?: string; store: string; storeIsLocal?: boolean},
  ): unknown {
    const {error, stage} = this.first ?? {error: fallback, stage: 'source' as Stage}
    if (error instanceof BackupError) return error
    // Writing the staged file: the temp folder's failure, not the store's it was bound for.
    if (stage === 'staging')
      return tempFolderFailure(
        error,
        `${where.name} (staged for the store)`,
        where.stageIn!,
        'a few packs (about 50 MiB)',
      )
    const cause = describeCause(error)
    // A full or read-only file system is the store's, whichever stage saw it first (the encryption
    // stage, when its write to the store is what failed); a temp file that fails this way says so.
    if (STORAGE_ERRORS.has((error as NodeJS.ErrnoException)?.code ?? '')) {
      const {path} = error as NodeJS.ErrnoException
      const elsewhere =
        path !== undefined && (!where.storeIsLocal || (!path.startsWith(where.store) && !where.store.startsWith(path)))
      return elsewhere
        ? tempFolderFailure(
            error,
            `the temp file ${basename(path)} (for ${where.name})`,
            dirname(path),
            "the backup's temp files",
          )
        : describeIoError(error, `${where.name} to the store ${where.store}`)
    }

    switch (stage) {
      case 'compressor': {
        return new BackupError('BACKUP_FAILED', `The compressor (zstd) failed on ${where.name}: ${cause}.`, {
          cause: error,
          suggestion: 'Check that zstd is installed (apt-get install zstd) and that the temp folder has space.',
        })
      }

      case 'encryption': {
        return new BackupError('BACKUP_FAILED', `Encrypting ${where.name} failed: ${cause}.`, {cause: error})
      }

      case 'store': {
        return (
          describeIoError(error, `${where.name} to the store ${where.store}`) ??
          new BackupError('STORE_UNAVAILABLE', `Cannot write ${where.name} to the store ${where.store}: ${cause}.`, {
            cause: error,
            suggestion:
              'Check that the store location exists, is writable and is reachable, then run the command again.',
          })
        )
      }

      default: {
        return sourceReadFailure(error, where.location)
      }
    }
  }

  note(stage: Stage, error: unknown): void {
    if (this.first === undefined && !isPrematureClose(error) && (error as Error)?.name !== 'AbortError')
      this.first = {error, stage}
  }
}

function isPrematureClose(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ERR_STREAM_PREMATURE_CLOSE'
}
