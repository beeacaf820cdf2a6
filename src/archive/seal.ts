import {createHash, Hash} from 'node:crypto'
import {Duplex, Transform, TransformCallback} from 'node:stream'

import {BufferLender, giveBack, isLent, lendToFree} from '../lib/buffer-loan.js'
import {deferred} from '../lib/deferred.js'
import {AgeSealer} from './age.js'
import {CipherReply, cipherThread, whenCipherThreadIdle} from './cipher-thread.js'

/** What a seal stream measured: its input and its age output, each with its byte count and SHA-256. */
export interface SealResult {
  /** Undefined sha256 when the stream was created with `hashPlaintext: false`. */
  plaintext: {bytes: number; sha256?: string}
  sealed: {bytes: number; sha256: string}
}

/** A seal stream: `offThread` says where its cipher runs, `result` what it measured. */
export type Sealing = Duplex & {readonly offThread: boolean; result: Promise<SealResult>}

/** Plaintext travels to the worker in batches of this size: few messages, and each is one transfer. */
const BATCH = 256 * 1024
/** Batches handed to the worker and not yet back: enough to keep both threads busy, and bounded. */
const MAX_IN_FLIGHT = 2
/**
 * Room for the sealed bytes of a batch: its plaintext, a tag per 64 KiB and, in the first, the header
 * (about 100 bytes a recipient). A batch that needs more gets a buffer of its own.
 */
const SEALED_BATCH = BATCH + 4096
/**
 * Sealed buffers given back and kept for the next batches: about as many as the stages after the seal
 * streams hold at once, and a backup of packs has up to three streams going (a pack of each kind
 * filling while the one before is stored).
 */
const SPARE_SEALED = 16
/** Plaintext batches the cipher thread gave back, kept for the next ones: a few per stream going. */
const SPARE_BATCHES = 8

/**
 * The buffers that go round between the seal streams and the cipher thread, shared by every stream of
 * the process as the thread is: a backup of packs seals an object every 16 MiB, and pools of their
 * own made each stream fill new ones before any came back (about a thousand buffers for 700 MiB).
 */
const sealedLender = new BufferLender(SPARE_SEALED)
const spareBatches: ArrayBuffer[] = []

// Once no stream is going: a host's process keeps none of these buffers between commands.
whenCipherThreadIdle(() => {
  sealedLender.clear()
  spareBatches.length = 0
})

function plaintextBatch(): Buffer<ArrayBuffer> {
  const spare = spareBatches.pop()
  return spare === undefined ? Buffer.allocUnsafeSlow(BATCH) : Buffer.from(spare)
}

/**
 * A duplex that takes plaintext and yields the age encryption of it to `recipients`, taking the SHA-256
 * of both sides on the way. `result` resolves after the last sealed byte has been pushed, and rejects
 * if the stream fails.
 *
 * With `offThread` (the default) both hashes and the cipher run on a worker thread, so that a
 * backup uses a second core while this thread reads and archives; memory stays bounded, since at most
 * {@link MAX_IN_FLIGHT} batches are with the worker and writes wait while the reader is behind. The
 * worker costs its own heap, about 15 MiB, so callers whose output is slower than one core anyway (an
 * upload) can keep the work on this thread. A stream that ends within its first batch never reaches the
 * worker (see {@link SealStream}).
 */
export function createSealStream(
  recipients: readonly Uint8Array[],
  options: {hashPlaintext?: boolean; offThread?: boolean} = {},
): Sealing {
  const hashPlaintext = options.hashPlaintext ?? true
  return options.offThread === false
    ? new InThreadSealStream(recipients, hashPlaintext)
    : new SealStream(recipients, hashPlaintext)
}

/** The same work as {@link SealStream}, on the calling thread. */
class InThreadSealStream extends Transform {
  readonly offThread = false
  readonly result: Promise<SealResult>
  private readonly outcome = deferred<SealResult>()
  private plainBytes = 0
  private readonly plainHash: Hash | undefined
  private sealedBytes = 0
  private readonly sealedHash = createHash('sha256')
  private readonly sealer: AgeSealer

  constructor(recipients: readonly Uint8Array[], hashPlaintext: boolean) {
    super({readableHighWaterMark: BATCH, writableHighWaterMark: BATCH})
    this.result = this.outcome.promise
    this.sealer = new AgeSealer(recipients)
    this.plainHash = hashPlaintext ? createHash('sha256') : undefined
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.outcome.reject(error ?? new Error('the encryption stream was closed before it finished'))
    callback(error)
  }

  override _flush(callback: TransformCallback): void {
    this.pushSealed(this.sealer.final())
    this.outcome.resolve({
      plaintext: {bytes: this.plainBytes, sha256: this.plainHash?.digest('hex')},
      sealed: {bytes: this.sealedBytes, sha256: this.sealedHash.digest('hex')},
    })
    callback()
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.plainHash?.update(chunk)
    this.plainBytes += chunk.length
    // A lent chunk goes back once sealed: the sealer copies out the bytes it holds for the next one.
    const lent = isLent(chunk)
    this.pushSealed(this.sealer.update(chunk, {borrowed: lent}))
    if (lent) giveBack(chunk)
    callback()
  }

  private pushSealed(pieces: Buffer[]): void {
    for (const piece of pieces) {
      this.sealedHash.update(piece)
      this.sealedBytes += piece.length
      // node:crypto's output, made for this chunk: the stage that writes it away frees it.
      this.push(lendToFree(piece))
    }
  }
}

/**
 * The worker is only asked once a whole batch has come: a stream that ends first (a manifest, the
 * dump of a small database, the media of a small app) is sealed here, in one go, since starting a
 * worker thread costs more CPU (about 0.1 s, a V8 isolate of its own) than sealing a batch.
 */
class SealStream extends Duplex {
  readonly offThread = true
  readonly result: Promise<SealResult>
  private batch = plaintextBatch()
  private ending = false
  private filled = 0
  private inFlight = 0
  private job: undefined | {id: number; worker: ReturnType<typeof cipherThread>}
  private readonly outcome = deferred<SealResult>()
  private parked: (() => void) | undefined
  private readerBehind = false

  constructor(
    private readonly recipients: readonly Uint8Array[],
    private readonly hashPlaintext: boolean,
  ) {
    super({readableHighWaterMark: BATCH, writableHighWaterMark: BATCH})
    this.result = this.outcome.promise
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.job) this.job.worker.cancel(this.job.id)
    this.outcome.reject(error ?? new Error('the encryption stream was closed before it finished'))
    callback(error)
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.job === undefined) {
      this.sealHere(callback)
      return
    }

    this.flushBatch()
    this.ending = true
    this.parked = callback
    this.job.worker.send({id: this.job.id, kind: 'end'})
  }

  override _read(): void {
    this.readerBehind = false
    this.release()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    let offset = 0
    while (offset < chunk.length) {
      const copied = chunk.copy(this.batch, this.filled, offset)
      this.filled += copied
      offset += copied
      if (this.filled === BATCH) this.flushBatch()
    }

    // Copied: the stage that lent it may write its next bytes into it.
    giveBack(chunk)
    this.parked = callback
    this.release()
  }

  /** Called by the worker wrapper for each reply of this stream's job. */
  receive(reply: CipherReply): void {
    switch (reply.kind) {
      case 'done': {
        this.push(null)
        this.outcome.resolve({plaintext: reply.plaintext, sealed: reply.sealed})
        this.takeParked()?.()
        break
      }

      case 'error': {
        this.destroy(new Error(`encryption failed: ${reply.message}`))
        break
      }

      case 'sealed': {
        this.inFlight--
        if (reply.spent !== undefined && spareBatches.length < SPARE_BATCHES) spareBatches.push(reply.spent)
        // Lent to the stages after this one; the last gives it back (buffer-loan.ts).
        const sealed = sealedLender.lend(Buffer.from(reply.batch, 0, reply.length))
        if (!this.push(sealed)) this.readerBehind = true
        this.release()
        break
      }
    }
  }

  private flushBatch(): void {
    if (this.filled === 0) return
    const {batch, filled} = this
    this.batch = plaintextBatch()
    this.filled = 0
    this.inFlight++
    this.job ??= this.startJob()
    // A stream's last sealed bytes come in a buffer of their size: one too small for a batch is dropped.
    const spareOutput = sealedLender.borrowBack()
    const output =
      spareOutput !== undefined && spareOutput.byteLength >= SEALED_BATCH
        ? spareOutput
        : Buffer.allocUnsafeSlow(SEALED_BATCH).buffer
    this.job.worker.send({batch: batch.buffer, id: this.job.id, kind: 'data', length: filled, output}, [
      batch.buffer,
      output,
    ])
  }

  /** Lets the writer go on once the worker and the reader have room; the end waits for 'done' instead. */
  private release(): void {
    if (this.ending) return
    if (this.inFlight < MAX_IN_FLIGHT && !this.readerBehind) this.takeParked()?.()
  }

  /** The whole plaintext is the part of one batch filled: seals it on this thread. */
  private sealHere(callback: (error?: Error | null) => void): void {
    const plaintext = this.batch.subarray(0, this.filled)
    const sealer = new AgeSealer(this.recipients)
    const sealedHash = createHash('sha256')
    let sealedBytes = 0
    for (const piece of [...sealer.update(plaintext), ...sealer.final()]) {
      sealedHash.update(piece)
      sealedBytes += piece.length
      this.push(lendToFree(piece))
    }

    this.push(null)
    this.outcome.resolve({
      plaintext: {
        bytes: plaintext.length,
        sha256: this.hashPlaintext ? createHash('sha256').update(plaintext).digest('hex') : undefined,
      },
      sealed: {bytes: sealedBytes, sha256: sealedHash.digest('hex')},
    })
    callback()
  }

  private startJob(): {id: number; worker: ReturnType<typeof cipherThread>} {
    const worker = cipherThread()
    const recipients = this.recipients.map((key) => Uint8Array.from(key))
    return {id: worker.start(this, {hashPlaintext: this.hashPlaintext, kind: 'start', recipients}), worker}
  }

  private takeParked(): (() => void) | undefined {
    const {parked} = this
    this.parked = undefined
    return parked
  }
}
