import {PathLike} from 'node:fs'
import {FileHandle, open} from 'node:fs/promises'
import {Writable} from 'node:stream'

import {giveBack} from './buffer-loan.js'

/** Bytes a sink takes in before its writer waits: a few of the chunks that stream through it. */
const HIGH_WATER_MARK = 1024 * 1024

/**
 * Writes a stream's chunks to `handle` in order, through the thread pool, and gives each back once
 * it is written (buffer-loan.ts): a lent buffer goes round again, and node:crypto's output is freed
 * at once. Chunks that wait together go in one writev. The caller closes the handle.
 */
export function fileSink(handle: FileHandle): Writable {
  return new Writable({
    highWaterMark: HIGH_WATER_MARK,
    write(chunk: Buffer, _encoding, callback) {
      writeAll(handle, [chunk]).then(() => callback(), callback)
    },
    writev(chunks, callback) {
      writeAll(
        handle,
        chunks.map(({chunk}) => chunk as Buffer),
      ).then(() => callback(), callback)
    },
  })
}

/**
 * A new file at `path` as a stream's sink, like fs.createWriteStream with `flags` and `mode`, but
 * writing as {@link fileSink} does. The file is closed when the stream finishes or is destroyed.
 */
export function createFileSink(path: PathLike, options: {flags: string; mode: number}): Writable {
  let handle: FileHandle | undefined
  const close = async () => {
    const opened = handle
    handle = undefined
    await opened?.close()
  }

  return new Writable({
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
    highWaterMark: HIGH_WATER_MARK,
    write(chunk: Buffer, _encoding, callback) {
      writeAll(handle!, [chunk]).then(() => callback(), callback)
    },
    writev(chunks, callback) {
      writeAll(
        handle!,
        chunks.map(({chunk}) => chunk as Buffer),
      ).then(() => callback(), callback)
    },
  })
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
