import {close, read, readFile} from 'node:fs'

/**
 * Reads of media files through the thread pool, with the callback API: a hung mount blocks a pool
 * thread, never the main thread (where the stall watchdog and the signal handlers run). The callback
 * API costs a third of what FileHandle promises cost per call, which matters at one open, read and
 * close per file for tens of thousands of files. Media files are opened by listed-files.ts.
 */

/** Reads up to `length` bytes at the file's position into `buffer` at `offset`; 0 at the end. */
export function readInto(descriptor: number, buffer: Buffer, offset: number, length: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(descriptor, buffer, offset, length, null, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead)))
  })
}

/**
 * The process's umask, from /proc (Linux); undefined where that cannot be read. Read afresh by each
 * caller that needs it, since node:process only reads it by changing it.
 */
export function readUmask(): Promise<number | undefined> {
  return new Promise((resolve) => {
    readFile('/proc/self/status', 'latin1', (error, status) => {
      const match = error ? null : /^Umask:\s+([0-7]+)$/m.exec(status)
      resolve(match ? Number.parseInt(match[1], 8) : undefined)
    })
  })
}

export function closeFile(descriptor: number): Promise<void> {
  return new Promise((resolve, reject) => {
    close(descriptor, (error) => (error ? reject(error) : resolve()))
  })
}
