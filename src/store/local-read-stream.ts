import {FileHandle} from 'node:fs/promises'
import {Readable} from 'node:stream'

import {BufferLender, giveBack} from '../lib/buffer-loan.js'
import {settling} from './bounded-calls.js'

/** The largest read, and the size of the buffers the files of one store share. */
const READ_CHUNK = 1024 * 1024
const FIRST_READ = 16 * 1024

/**
 * Reads an object's file in chunks lent (buffer-loan.ts): a chunk given back reads a later one. The
 * first read is small and each full one doubles the next, up to READ_CHUNK: most objects read whole are
 * small (manifests), and a buffer of READ_CHUNK for each of a thousand of them made V8 collect its whole
 * heap dozens of times in a `list`. A full-size buffer that another file of the store gave back
 * (`fullReads`) is used at once, since it costs nothing new. The file is closed before the stream says
 * 'close', so nothing of it is open once a command is done.
 */
export class LocalReadStream extends Readable {
  private readonly lender = new BufferLender(4)
  private nextRead = FIRST_READ
  private reading: undefined | {settled(): boolean}

  constructor(
    private readonly handle: FileHandle,
    /** Full-size buffers shared by the store's files (LocalStore.fullReads). */
    private readonly fullReads: BufferLender,
    /** The store's bound on a call (BoundedCalls.run). */
    private readonly bounded: <T>(read: Promise<T>) => Promise<T>,
    /** What a failed read means to the user (LocalStore.readFailure). */
    private readonly failure: (error: unknown) => unknown = (error) => error,
  ) {
    super({highWaterMark: READ_CHUNK})
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // A read that stalled, or that SIGINT/SIGTERM gave up on, still waits in the kernel, and the
    // close would wait for it: the error is the stream's now, and the file closes when the read ends.
    if (this.reading?.settled() === false) {
      this.handle.close().catch(() => {})
      callback(error)
      return
    }

    this.handle.close().then(
      () => callback(error),
      (closeError: Error) => callback(error ?? closeError),
    )
  }

  override _read(): void {
    const shared = this.fullReads.borrowBack()
    const wanted = shared === undefined ? this.nextRead : READ_CHUNK
    const lender = wanted === READ_CHUNK ? this.fullReads : this.lender
    const spare = shared ?? this.lender.borrowBack()
    const buffer =
      spare !== undefined && spare.byteLength >= wanted ? Buffer.from(spare) : Buffer.allocUnsafeSlow(wanted)
    const reading = settling(this.handle.read(buffer, 0, wanted, null))
    this.reading = reading
    this.bounded(reading.work).then(
      ({bytesRead}) => {
        if (this.destroyed) return
        if (bytesRead === wanted) this.nextRead = Math.min(2 * wanted, READ_CHUNK)
        const chunk = lender.lend(buffer.subarray(0, bytesRead))
        if (bytesRead > 0) {
          this.push(chunk)
          return
        }

        // The end: the buffer read nothing, and goes back for the next file.
        giveBack(chunk)
        this.push(null)
      },
      (error: Error) => this.destroy(this.failure(error) as Error),
    )
  }
}
