import {createCipheriv, randomBytes} from 'node:crypto'
import {Transform, TransformCallback} from 'node:stream'

import {giveBack, isLent, lendToFree} from '../lib/buffer-loan.js'
import {
  aeadOpen,
  AgeError,
  deriveKey,
  headerEnd,
  MAX_HEADER_BYTES,
  openHeader,
  sealHeader,
  AGE_TAG as TAG,
} from './age-header.js'
import {formatRecipient, X25519Identity} from './age-keys.js'

export {AgeError} from './age-header.js'

/**
 * The age v1 file format (https://age-encryption.org/v1) with X25519 recipients, on node:crypto.
 *
 * Written here rather than taken from a library because the payload is the hot path of every
 * backup: node:crypto's ChaCha20-Poly1305 streams several times faster than pure-JS ciphers and
 * keeps memory flat. Interoperability is tested both ways against the stock `age` CLI and against
 * the community test vectors (cctv-age).
 */

const CHUNK = 64 * 1024

/** Encrypts a byte stream to X25519 recipients (raw 32-byte public keys). */
export function createEncryptStream(recipients: readonly Uint8Array[]): Transform {
  return new EncryptTransform(new AgeSealer(recipients))
}

/**
 * The synchronous core of encryption, for callers that move bytes themselves (a worker thread): takes
 * plaintext in pieces of any size and returns the age file's bytes, header first, in order.
 */
export class AgeSealer {
  private counter = 0n
  private readonly key: Buffer
  private pending: Buffer[] = []
  private pendingBytes = 0
  private prefix: Buffer | undefined
  /** Two buffers for the held-back tail of borrowed input, used in turn (see `update`). */
  private tails: Buffer[] | undefined

  constructor(recipients: readonly Uint8Array[]) {
    if (recipients.length === 0) throw new Error('age: at least one recipient is required')
    const fileKey = randomBytes(16)
    const nonce = randomBytes(16)
    this.prefix = Buffer.concat([sealHeader(fileKey, recipients), nonce])
    this.key = deriveKey(fileKey, nonce, 'payload')
  }

  /** Seals the rest, including the last chunk (which is sealed differently), and ends the file. */
  final(): Buffer[] {
    const out = this.takePrefix()
    this.seal(out, takePieces(this.pending, this.pendingBytes), true)
    this.pendingBytes = 0
    return out
  }

  /**
   * Seals what `data` completes. With `borrowed`, the caller reuses `data` as soon as this returns:
   * the bytes held back for the next call are copied out of it first.
   */
  update(data: Buffer, options: {borrowed?: boolean} = {}): Buffer[] {
    const out = this.takePrefix()
    this.pending.push(data)
    this.pendingBytes += data.length
    // Hold back at least one byte: the last chunk is sealed differently and is only known at the end.
    while (this.pendingBytes > CHUNK) {
      this.seal(out, takePieces(this.pending, CHUNK), false)
      this.pendingBytes -= CHUNK
    }

    if (options.borrowed) this.keepTail()
    return out
  }

  /** Copies the held-back bytes (at most a chunk) into a buffer of this sealer's own. */
  private keepTail(): void {
    this.tails ??= [Buffer.allocUnsafeSlow(CHUNK), Buffer.allocUnsafeSlow(CHUNK)]
    // The other buffer than last time: the held-back bytes may be in the one used last time.
    const tail = this.pending[0]?.buffer === this.tails[0].buffer ? this.tails[1] : this.tails[0]
    let filled = 0
    for (const piece of this.pending) filled += piece.copy(tail, filled)
    this.pending = filled === 0 ? [] : [tail.subarray(0, filled)]
  }

  /** Appends one sealed chunk: ciphertext, then tag, as separate buffers (joining them would copy every byte). */
  private seal(out: Buffer[], plaintext: Buffer[], last: boolean): void {
    const cipher = createCipheriv('chacha20-poly1305', this.key, chunkNonce(this.counter, last), {authTagLength: TAG})
    for (const piece of plaintext) out.push(cipher.update(piece))
    cipher.final()
    out.push(cipher.getAuthTag())
    this.counter++
  }

  private takePrefix(): Buffer[] {
    const {prefix} = this
    this.prefix = undefined
    return prefix ? [prefix] : []
  }
}

/**
 * Decrypts an age stream. Each emitted chunk has been authenticated, but truncation is only
 * detected at the end: consumers must not act on the output before the stream finishes cleanly.
 */
export function createDecryptStream(identities: readonly X25519Identity[]): Transform {
  return new DecryptTransform(identities)
}

/** The recipient strings (`age1…`) an age header is addressed to, for display; needs no secret. */
export function describeRecipients(recipients: readonly Uint8Array[]): string[] {
  return recipients.map((recipient) => formatRecipient(recipient))
}

class EncryptTransform extends Transform {
  constructor(private readonly sealer: AgeSealer) {
    super({readableHighWaterMark: 4 * CHUNK, writableHighWaterMark: 4 * CHUNK})
  }

  override _flush(callback: TransformCallback): void {
    for (const piece of this.sealer.final()) this.push(piece)
    callback()
  }

  override _transform(data: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    for (const piece of this.sealer.update(data)) this.push(piece)
    callback()
  }
}

class DecryptTransform extends Transform {
  private counter = 0n
  private fileKey: Buffer | undefined
  private key: Buffer | undefined
  private pending: Buffer[] = []
  private pendingBytes = 0
  private sealedScratch: Buffer | undefined
  /** Buffers for the held-back bytes of lent chunks, used in turn (see keepTail). */
  private tails: Buffer[] = []

  constructor(private readonly identities: readonly X25519Identity[]) {
    super({readableHighWaterMark: 4 * CHUNK, writableHighWaterMark: 4 * CHUNK})
  }

  override _flush(callback: TransformCallback): void {
    try {
      if (this.fileKey === undefined) throw new AgeError('header', 'file ends inside the header')
      if (this.key === undefined) throw new AgeError('payload', 'file ends before the payload nonce')
      if (this.pendingBytes === 0) throw new AgeError('payload', 'file is truncated: the final chunk is missing')
      if (this.pendingBytes < TAG) throw new AgeError('payload', 'file is truncated inside a chunk')
      const plaintext = this.open(this.consume(this.pendingBytes), true)
      if (plaintext.length === 0 && this.counter > 1n) throw new AgeError('payload', 'final chunk is empty')
      this.push(plaintext)
      callback()
    } catch (error) {
      callback(error as Error)
    }
  }

  override _transform(data: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.pending.push(data)
      this.pendingBytes += data.length
      this.openPending()
      // A lent chunk goes back to its stage once this one holds no view of it (buffer-loan.ts).
      if (isLent(data)) {
        this.keepTail()
        giveBack(data)
      }

      callback()
    } catch (error) {
      callback(error as Error)
    }
  }

  private consume(bytes: number): Buffer {
    const out = takeBytes(this.pending, bytes)
    this.pendingBytes -= bytes
    return out
  }

  /**
   * The next sealed chunk, for open() alone, which is done with it when it returns: one that spans the
   * source's chunks is gathered into a buffer of this stream's own, not a new one each time (a chunk in
   * every few of a pack read in 1 MiB pieces; 49 MiB of them in a packed download of the bench tree).
   */
  private consumeSealedChunk(): Buffer {
    this.sealedScratch ??= Buffer.allocUnsafeSlow(CHUNK + TAG)
    const out = takeBytes(this.pending, CHUNK + TAG, this.sealedScratch)
    this.pendingBytes -= CHUNK + TAG
    return out
  }

  /** Copies what is held back for the next chunk (less than a sealed chunk, or a header) into a buffer of this stream's own. */
  private keepTail(): void {
    const bytes = this.pendingBytes
    // The other buffer than last time: the held-back bytes may be in the one used last time.
    const index = this.tails[0] !== undefined && this.pending[0]?.buffer === this.tails[0].buffer ? 1 : 0
    if (!(this.tails[index]?.length >= bytes)) this.tails[index] = Buffer.allocUnsafeSlow(Math.max(bytes, CHUNK + TAG))
    const into = this.tails[index]
    let filled = 0
    for (const piece of this.pending) filled += piece.copy(into, filled)
    this.pending = filled === 0 ? [] : [into.subarray(0, filled)]
  }

  private open(sealed: Buffer, last: boolean): Buffer {
    const nonce = chunkNonce(this.counter, last)
    const plaintext = aeadOpen(this.key!, nonce, sealed)
    if (plaintext === undefined) {
      throw new AgeError('payload', `chunk ${this.counter} failed authentication: the data is corrupt or was modified`)
    }

    this.counter++
    return plaintext
  }

  /** Reads the header, then opens every chunk known not to be the last one. */
  private openPending(): void {
    if (this.fileKey === undefined && !this.readHeader()) return
    if (this.key === undefined) {
      if (this.pendingBytes < 16) return
      this.key = deriveKey(this.fileKey!, this.consume(16), 'payload')
    }

    // A full chunk is only known not to be the last one once a byte beyond it has arrived.
    while (this.pendingBytes > CHUNK + TAG) this.push(lendToFree(this.open(this.consumeSealedChunk(), false)))
  }

  private readHeader(): boolean {
    const joined = this.consume(this.pendingBytes)
    const end = headerEnd(joined)
    if (end === -1) {
      if (joined.length > MAX_HEADER_BYTES) throw new AgeError('header', 'header is too large')
      this.pending = [joined]
      this.pendingBytes = joined.length
      return false
    }

    this.fileKey = openHeader(joined.subarray(0, end), this.identities)
    const rest = joined.subarray(end)
    this.pending = rest.length > 0 ? [rest] : []
    this.pendingBytes = rest.length
    return true
  }
}

/**
 * Removes `bytes` bytes from the front of a list of buffers, copying only when a chunk spans buffers:
 * into `into` when it is given (and large enough), else into a new buffer.
 */
function takeBytes(list: Buffer[], bytes: number, into?: Buffer): Buffer {
  if (bytes === 0) return Buffer.alloc(0)
  const first = list[0]
  if (first.length === bytes) {
    list.shift()
    return first
  }

  if (first.length > bytes) {
    list[0] = first.subarray(bytes)
    return first.subarray(0, bytes)
  }

  const out = into !== undefined && into.length >= bytes ? into.subarray(0, bytes) : Buffer.allocUnsafe(bytes)
  let filled = 0
  while (filled < bytes) {
    const head = list[0]
    const needed = bytes - filled
    if (head.length <= needed) {
      head.copy(out, filled)
      filled += head.length
      list.shift()
    } else {
      head.copy(out, filled, 0, needed)
      list[0] = head.subarray(needed)
      filled += needed
    }
  }

  return out
}

/** Removes `bytes` bytes from the front of a list of buffers, as views: nothing is copied. */
function takePieces(list: Buffer[], bytes: number): Buffer[] {
  const pieces: Buffer[] = []
  let needed = bytes
  while (needed > 0) {
    const head = list[0]
    if (head.length <= needed) {
      pieces.push(head)
      needed -= head.length
      list.shift()
    } else {
      pieces.push(head.subarray(0, needed))
      list[0] = head.subarray(needed)
      needed = 0
    }
  }

  return pieces
}

function chunkNonce(counter: bigint, last: boolean): Buffer {
  const nonce = Buffer.alloc(12)
  nonce.writeBigUInt64BE(counter, 3)
  if (last) nonce[11] = 1
  return nonce
}
