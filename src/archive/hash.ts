import {createHash, Hash} from 'node:crypto'
import {Transform, TransformCallback} from 'node:stream'

import {CipherReply, cipherThread, whenCipherThreadIdle} from './cipher-thread.js'

/** A pass-through that counts bytes and takes their SHA-256 on the way, so data is read only once. */
export class HashingStream extends Transform {
  bytes = 0
  private readonly hash: Hash = createHash('sha256')
  private hex: string | undefined

  /** The hex digest; only valid once the stream has ended. */
  get sha256(): string {
    if (this.hex === undefined) throw new Error('HashingStream: digest read before the end of the stream')
    return this.hex
  }

  override _flush(callback: TransformCallback): void {
    this.hex = this.hash.digest('hex')
    callback()
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length
    this.hash.update(chunk)
    callback(null, chunk)
  }
}

/**
 * Bytes a stream hands the cipher thread at a time; a stream that ends within the first is hashed here.
 * Fewer, larger messages cost the thread that sends them less: with 1 MiB instead of
 * 256 KiB, a verify of the bench tree took 2.5-2.6 s against 2.8-2.9 s (pairs taken in turn), at the
 * same peak RSS.
 */
const BATCH = 1024 * 1024
/** Batches with the cipher thread and not yet hashed: enough to keep it busy, and bounded. */
const MAX_IN_FLIGHT = 2
/** Batches the cipher thread gave back, shared by every hashing stream of the process as the thread is. */
const spareBatches: ArrayBuffer[] = []
const SPARE_BATCHES = 4
whenCipherThreadIdle(() => {
  spareBatches.length = 0
})

/**
 * The same pass-through as {@link HashingStream}, with the hashing on the cipher thread: each chunk
 * is passed on at once and copied into a batch (a copy costs about a tenth of a SHA-256 of the same
 * bytes), and full batches go to the thread. For reads that hash the same bytes more than once (the
 * ciphertext and the plaintext of every object a verify, download or restore reads), so that the
 * thread that decrypts and parses is not also the one that hashes. `sha256` is ready when the stream
 * has flushed, as with HashingStream.
 */
export class OffThreadHashingStream extends Transform {
  bytes = 0
  private batch: Buffer<ArrayBuffer> | undefined
  private filled = 0
  private flushed: TransformCallback | undefined
  private hex: string | undefined
  private inFlight = 0
  private job: undefined | {id: number; thread: ReturnType<typeof cipherThread>}
  private parked: TransformCallback | undefined

  get sha256(): string {
    if (this.hex === undefined) throw new Error('HashingStream: digest read before the end of the stream')
    return this.hex
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.job) this.job.thread.cancel(this.job.id)
    callback(error)
  }

  override _flush(callback: TransformCallback): void {
    if (this.job === undefined) {
      // It ended within its first batch: hashed here, where starting the thread would cost more.
      this.hex = createHash('sha256')
        .update(this.batch?.subarray(0, this.filled) ?? Buffer.alloc(0))
        .digest('hex')
      this.batch = undefined
      callback()
      return
    }

    this.send()
    this.flushed = callback
    this.job.thread.send({id: this.job.id, kind: 'end'})
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length
    for (let offset = 0; offset < chunk.length;) {
      this.batch ??= spareBatch()
      const copied = chunk.copy(this.batch, this.filled, offset)
      this.filled += copied
      offset += copied
      if (this.filled === BATCH) this.send()
    }

    this.push(chunk)
    if (this.inFlight < MAX_IN_FLIGHT) callback()
    else this.parked = callback
  }

  /** Called by the cipher thread for each reply of this stream's job. */
  receive(reply: CipherReply): void {
    switch (reply.kind) {
      case 'digest': {
        const {flushed} = this
        this.flushed = undefined
        if (reply.bytes === this.bytes) {
          this.hex = reply.sha256
          flushed?.()
        } else {
          flushed?.(new Error(`hashing lost bytes: ${reply.bytes} of ${this.bytes} hashed`))
        }

        break
      }

      case 'error': {
        this.destroy(new Error(`hashing failed: ${reply.message}`))
        break
      }

      case 'hashed': {
        this.inFlight--
        if (spareBatches.length < SPARE_BATCHES) spareBatches.push(reply.spent)
        const {parked} = this
        this.parked = undefined
        parked?.()
        break
      }
    }
  }

  /** Hands the filled part of the batch to the cipher thread, starting this stream's job with the first. */
  private send(): void {
    if (this.batch === undefined || this.filled === 0) return
    const {batch, filled} = this
    this.batch = undefined
    this.filled = 0
    this.inFlight++
    if (this.job === undefined) {
      const thread = cipherThread()
      this.job = {id: thread.start(this, {kind: 'hash'}), thread}
    }

    this.job.thread.send({batch: batch.buffer, id: this.job.id, kind: 'data', length: filled}, [batch.buffer])
  }
}

function spareBatch(): Buffer<ArrayBuffer> {
  const spare = spareBatches.pop()
  return spare === undefined ? Buffer.allocUnsafeSlow(BATCH) : Buffer.from(spare)
}
