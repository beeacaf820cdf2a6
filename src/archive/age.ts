import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  generateKeyPairSync,
  hkdfSync,
  KeyObject,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto'
import {Transform, TransformCallback} from 'node:stream'

import {giveBack, isLent, lendToFree} from '../lib/buffer-loan.js'
import {formatRecipient, publicKeyObject, rawPublicKey, x25519, X25519Identity} from './age-keys.js'

/**
 * The age v1 file format (https://age-encryption.org/v1) with X25519 recipients, on node:crypto.
 *
 * Written here rather than taken from a library because the payload is the hot path of every
 * backup: node:crypto's ChaCha20-Poly1305 streams several times faster than pure-JS ciphers and
 * keeps memory flat. Interoperability is tested both ways against the stock `age` CLI and against
 * the community test vectors (cctv-age).
 */

const INTRO = 'age-encryption.org/v1\n'
const FOOTER_PREFIX = '---'
const X25519_LABEL = 'age-encryption.org/v1/X25519'
const CHUNK = 64 * 1024
const TAG = 16
const MAX_HEADER_BYTES = 64 * 1024
const BASE64_LINE = 64

/** Thrown for anything that is not a well-formed, authentic age file for our identities. */
export class AgeError extends Error {
  constructor(
    readonly kind: 'header' | 'hmac' | 'no-match' | 'payload',
    message: string,
  ) {
    super(message)
    this.name = 'AgeError'
  }
}

interface Stanza {
  args: string[]
  body: Buffer
  type: string
}

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
    const stanzas = recipients.map((recipient) => wrapFileKey(fileKey, recipient))
    const nonce = randomBytes(16)
    this.prefix = Buffer.concat([encodeHeader(fileKey, stanzas), nonce])
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

function wrapFileKey(fileKey: Buffer, recipient: Uint8Array): Stanza {
  const {privateKey, publicKey} = generateKeyPairSync('x25519')
  const ephemeralShare = rawPublicKey(publicKey)
  const shared = x25519(privateKey, publicKeyObject(recipient))
  if (isAllZero(shared)) throw new Error('age: recipient is a low-order point')
  const wrapKey = deriveKey(shared, Buffer.concat([ephemeralShare, recipient]), X25519_LABEL)
  return {args: [encodeBase64(ephemeralShare)], body: aeadSeal(wrapKey, Buffer.alloc(12), fileKey), type: 'X25519'}
}

function unwrapFileKey(stanza: Stanza, identity: X25519Identity): Buffer | undefined {
  const [shareText] = stanza.args
  const share = decodeBase64(shareText)
  if (share?.length !== 32) throw new AgeError('header', 'malformed X25519 stanza: share must be 32 bytes')
  if (stanza.body.length !== 32) throw new AgeError('header', 'malformed X25519 stanza: body must be 32 bytes')
  let shared: Buffer
  try {
    shared = x25519(identity.privateKey, publicKeyObject(share))
  } catch {
    // OpenSSL refuses to derive from small-order points; age requires rejecting them as well.
    throw new AgeError('header', 'X25519 stanza has a low-order share')
  }

  if (isAllZero(shared)) throw new AgeError('header', 'X25519 stanza has a low-order share')
  const wrapKey = deriveKey(shared, Buffer.concat([share, identity.publicKey]), X25519_LABEL)
  return aeadOpen(wrapKey, Buffer.alloc(12), stanza.body)
}

function encodeHeader(fileKey: Buffer, stanzas: readonly Stanza[]): Buffer {
  let text = INTRO
  for (const stanza of stanzas) {
    text += `-> ${[stanza.type, ...stanza.args].join(' ')}\n`
    const body = encodeBase64(stanza.body)
    for (let offset = 0; offset <= body.length; offset += BASE64_LINE) {
      text += `${body.slice(offset, offset + BASE64_LINE)}\n`
    }
  }

  text += FOOTER_PREFIX
  const mac = createHmac('sha256', deriveKey(fileKey, Buffer.alloc(0), 'header'))
    .update(text, 'latin1')
    .digest()
  return Buffer.from(`${text} ${encodeBase64(mac)}\n`, 'latin1')
}

/** Finds the end of the header (the byte after the MAC line's newline), or -1 when more input is needed. */
function headerEnd(buffer: Buffer): number {
  let lineStart = 0
  while (lineStart < buffer.length) {
    const newline = buffer.indexOf(0x0a, lineStart)
    if (newline === -1) return -1
    if (buffer.subarray(lineStart, lineStart + 4).toString('latin1') === '--- ') return newline + 1
    lineStart = newline + 1
  }

  return -1
}

function parseHeader(header: Buffer): {mac: Buffer; macInput: Buffer; stanzas: Stanza[]} {
  const text = header.toString('latin1')
  if (!text.startsWith(INTRO)) {
    if (text.startsWith('age-encryption.org/')) throw new AgeError('header', 'unsupported age version')
    throw new AgeError('header', 'not an age file')
  }

  const lines = text.slice(INTRO.length, -1).split('\n')
  const stanzas: Stanza[] = []
  let index = 0
  while (index < lines.length && lines[index].startsWith('-> ')) {
    const args = lines[index].slice(3).split(' ')
    if (args.some((arg) => !/^[\u0021-\u007E]+$/.test(arg))) throw new AgeError('header', 'malformed stanza arguments')
    index++
    const bodyParts: string[] = []
    for (;;) {
      if (index >= lines.length) throw new AgeError('header', 'stanza body is not terminated')
      const line = lines[index++]
      if (line.length > BASE64_LINE) throw new AgeError('header', 'stanza body line is too long')
      bodyParts.push(line)
      if (line.length < BASE64_LINE) break
    }

    const body = decodeBase64(bodyParts.join(''))
    if (body === undefined) throw new AgeError('header', 'stanza body is not canonical base64')
    const [type, ...rest] = args
    stanzas.push({args: rest, body, type})
  }

  if (index !== lines.length - 1) throw new AgeError('header', 'malformed header line')
  const footer = lines[index]
  if (!footer.startsWith('--- ')) throw new AgeError('header', 'malformed header footer')
  const mac = decodeBase64(footer.slice(4))
  if (mac?.length !== 32) throw new AgeError('header', 'malformed header MAC')
  if (stanzas.length === 0) throw new AgeError('header', 'no recipient stanzas')
  const macInput = header.subarray(0, header.length - 1 - footer.length + FOOTER_PREFIX.length)
  return {mac, macInput, stanzas}
}

function findFileKey(stanzas: readonly Stanza[], identities: readonly X25519Identity[]): Buffer {
  for (const stanza of stanzas) {
    if (stanza.type !== 'X25519') continue
    if (stanza.args.length !== 1) throw new AgeError('header', 'malformed X25519 stanza: wrong argument count')
    for (const identity of identities) {
      const fileKey = unwrapFileKey(stanza, identity)
      if (fileKey === undefined) continue
      if (fileKey.length !== 16) throw new AgeError('header', 'wrapped file key has the wrong length')
      return fileKey
    }
  }

  throw new AgeError('no-match', 'no identity matches any recipient of this file')
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

    const {mac, macInput, stanzas} = parseHeader(joined.subarray(0, end))
    const fileKey = findFileKey(stanzas, this.identities)
    const expected = createHmac('sha256', deriveKey(fileKey, Buffer.alloc(0), 'header'))
      .update(macInput)
      .digest()
    if (!timingSafeEqual(expected, mac)) throw new AgeError('hmac', 'header MAC does not match')
    this.fileKey = fileKey
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

function deriveKey(ikm: Buffer, salt: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, 32))
}

function aeadSeal(key: Buffer | KeyObject, nonce: Buffer, plaintext: Buffer): Buffer {
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, {authTagLength: TAG})
  const head = cipher.update(plaintext)
  cipher.final()
  return Buffer.concat([head, cipher.getAuthTag()])
}

function aeadOpen(key: Buffer, nonce: Buffer, sealed: Buffer): Buffer | undefined {
  if (sealed.length < TAG) return undefined
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, {authTagLength: TAG})
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG))
  const plaintext = decipher.update(sealed.subarray(0, sealed.length - TAG))
  try {
    decipher.final()
  } catch {
    return undefined
  }

  return plaintext
}

function encodeBase64(data: Uint8Array): string {
  return Buffer.from(data).toString('base64').replace(/=+$/, '')
}

/** Strict, canonical, unpadded base64 as age requires; undefined for anything else. */
function decodeBase64(text: string | undefined): Buffer | undefined {
  if (text === undefined || !/^[A-Za-z0-9+/]*$/.test(text) || text.length % 4 === 1) return undefined
  const decoded = Buffer.from(text, 'base64')
  return encodeBase64(decoded) === text ? decoded : undefined
}

function isAllZero(bytes: Uint8Array): boolean {
  return bytes.every((byte) => byte === 0)
}
