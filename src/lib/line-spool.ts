import {once} from 'node:events'
import {Writable} from 'node:stream'

const SPOOL_BYTES = 64 * 1024

/**
 * Lines gathered into 64 KiB writes: a write (and, into gzip, a compression call) for each line of a
 * million-file index costs more than the line.
 */
export class LineSpool {
  private buffer = Buffer.allocUnsafe(SPOOL_BYTES)
  private failure: Error | undefined
  private filled = 0

  constructor(private readonly stream: Writable) {
    // Reported by the next add or end (a full disk, say), not thrown from an event.
    stream.on('error', (error: Error) => {
      this.failure ??= error
    })
  }

  /**
   * A line of text, or of bytes (a rebuild script line, whose file names need not be UTF-8). Returns a
   * promise only when the line waits for a write (the spool was full): most lines are only copied,
   * and a promise a line, awaited, cost an unchanged backup of 16,002 files more than the copies.
   */
  add(line: Buffer | string): Promise<void> | undefined {
    if (this.failure) throw this.failure
    const bytes = typeof line === 'string' ? Buffer.byteLength(line) : line.length
    if (SPOOL_BYTES - this.filled < bytes) return this.flushThenAdd(line, bytes)
    this.copy(line)
  }

  async end(): Promise<void> {
    await this.flush()
    if (this.failure) throw this.failure
    await new Promise<void>((resolve, reject) => {
      this.stream.end((error?: Error | null) => (error ? reject(error) : resolve()))
    })
  }

  private copy(line: Buffer | string): void {
    this.filled += typeof line === 'string' ? this.buffer.write(line, this.filled) : line.copy(this.buffer, this.filled)
  }

  private async flush(): Promise<void> {
    if (this.filled === 0) return
    const full = this.buffer.subarray(0, this.filled)
    this.buffer = Buffer.allocUnsafe(SPOOL_BYTES)
    this.filled = 0
    await this.write(full)
  }

  private async flushThenAdd(line: Buffer | string, bytes: number): Promise<void> {
    await this.flush()
    if (bytes > SPOOL_BYTES) await this.write(typeof line === 'string' ? Buffer.from(line) : line)
    else this.copy(line)
  }

  private async write(data: Buffer): Promise<void> {
    if (!this.stream.write(data)) await once(this.stream, 'drain')
  }
}
