import {PathLike} from 'node:fs'
import {FileHandle, open} from 'node:fs/promises'
import {Writable, WritableOptions} from 'node:stream'

import {giveBack} from './buffer-loan.js'

/** Bytes a sink takes in before its writer waits: a few of the chunks that stream through it. */
const HIGH_WATER_MARK = 1024 * 1024

/** Bytes written between two flushes of a sink that `syncs` (see createFileSink). */
const SYNC_EVERY_BYTES = 32 * 1024 * 1024

/** What a sink needs beyond its chunks: `syncs` (see createFileSink). */
export interface FileSinkOptions {
  syncs?: boolean
}

/**
 * Writes a stream's chunks to `handle` in order, through the thread pool, and gives each back once
 * it is written (buffer-loan.ts): a lent buffer goes round again, and node:crypto's output is freed
 * at once. Chunks that wait together go in one writev. The caller closes the handle, once the
 * stream has finished or been destroyed (a background flush is settled by then).
 */
export function fileSink(handle: FileHandle, options: FileSinkOptions = {}): Writable {
  const flushes = new FlushAhead(options)
  return sinkWritable(() => handle, flushes, {
    destroy(error, callback) {
      flushes.settled().then(() => callback(error))
    },
    final(callback) {
      flushes.settled().then(() => callback())
    },
  })
}

/**
 * A new file at `path` as a stream's sink, like fs.createWriteStream with `flags` and `mode`, but
 * writing as {@link fileSink} does. The file is closed when the stream finishes or is destroyed.
 *
 * `syncs`: the caller will flush the file to disk once it is written (a store's put, a download, an
 * export, a file a restore extracts, which its `sync -f` flushes with the rest of the tree). The
 * sink then flushes what it has written every {@link SYNC_EVERY_BYTES}, in the background and one
 * flush at a time, so that the disk writes while the stream runs: otherwise the kernel holds the
 * whole file in memory until that fsync, and the command waits for all of it at the end (about
 * 0.4 s for the 706 MiB media.tar of the bench tree).
 */
export function createFileSink(path: PathLike, options: FileSinkOptions & {flags: string; mode: number}): Writable {
  let handle: FileHandle | undefined
  const flushes = new FlushAhead(options)
  const close = async () => {
    await flushes.settled()
    const opened = handle
    handle = undefined
    await opened?.close()
  }

  return sinkWritable(() => handle!, flushes, {
    construct(callback) {
      open(path, options.flags, options.mode).then((opened) => {
        handle = opened
        callback()
      }, callback)
    },
    destroy(error, callback) {
      close().then(
        () => callback(error),
        () => callback(error),
      )
    },
    final(callback) {
      close().then(() => callback(), callback)
    },
    // A failed write reports no path; this sink knows it.
    path,
  })
}

/** The flushes a sink that `syncs` starts as it writes: one at a time, each after SYNC_EVERY_BYTES. */
class FlushAhead {
  private syncing: Promise<void> | undefined
  private unsynced = 0

  constructor(private readonly options: FileSinkOptions) {}

  /** Settles once no flush is running; never rejects. */
  settled(): Promise<void> {
    return this.syncing ?? Promise.resolve()
  }

  wrote(handle: FileHandle, bytes: number): void {
    this.unsynced += bytes
    if (!this.options.syncs || this.unsynced < SYNC_EVERY_BYTES || this.syncing !== undefined) return
    this.unsynced = 0
    // Its failure is the final fsync's to report, which the caller makes.
    this.syncing = handle
      .datasync()
      .catch(() => {})
      .finally(() => {
        this.syncing = undefined
      })
  }
}

function sinkWritable(
  handleOf: () => FileHandle,
  flushes: FlushAhead,
  {path, ...ends}: Pick<WritableOptions, 'construct' | 'destroy' | 'final'> & {path?: PathLike},
): Writable {
  const wrote = (bytes: number) => flushes.wrote(handleOf(), bytes)
  const failed = (callback: (error?: Error | null) => void) => (error: Error) =>
    callback(path === undefined ? error : withPath(error, path))
  return new Writable({
    ...ends,
    highWaterMark: HIGH_WATER_MARK,
    write(chunk: Buffer, _encoding, callback) {
      const bytes = chunk.length
      writeAll(handleOf(), [chunk]).then(() => {
        wrote(bytes)
        callback()
      }, failed(callback))
    },
    writev(chunks, callback) {
      let bytes = 0
      for (const {chunk} of chunks) bytes += (chunk as Buffer).length
      writeAll(
        handleOf(),
        chunks.map(({chunk}) => chunk as Buffer),
      ).then(() => {
        wrote(bytes)
        callback()
      }, failed(callback))
    },
  })
}

/**
 * A file system error with the path of the file it happened to, where it had none: a write to an open
 * file reports only its code, and the message that explains it needs to say where (a full temp folder
 * is not a full store).
 */
export function withPath(error: Error, path: PathLike): Error {
  const failure = error as NodeJS.ErrnoException
  if (typeof failure.code === 'string' && failure.path === undefined) failure.path = path.toString()
  return error
}

/**
 * Writes all of `chunks`, then gives them back. A file system may write less than asked (a disk that
 * has just filled up says so on the next write); one that writes nothing at all, and says no error,
 * would loop here for ever, so that is an error of its own.
 */
export async function writeAll(handle: FileHandle, chunks: Buffer[]): Promise<void> {
  let total = 0
  for (const chunk of chunks) total += chunk.length
  const {bytesWritten} = await handle.writev(chunks)
  if (bytesWritten < total) {
    let rest = Buffer.concat(chunks).subarray(bytesWritten)
    while (rest.length > 0) {
      const written = await handle.write(rest)
      if (written.bytesWritten === 0) throw new Error(`the file system wrote nothing of ${rest.length} bytes`)
      rest = rest.subarray(written.bytesWritten)
    }
  }

  for (const chunk of chunks) giveBack(chunk)
}
