import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  generateKeyPairSync,
  hkdfSync,
  KeyObject,
  timingSafeEqual,
} from 'node:crypto'

import {publicKeyObject, rawPublicKey, x25519, X25519Identity} from './age-keys.js'

/**
 * The header of an age v1 file (https://age-encryption.org/v1) with X25519 recipients: the file key
 * wrapped to each recipient, and the MAC that binds them. The payload, sealed with the key derived
 * from the file key, is age.ts's; the key derivation and the AEAD they share are here.
 */

const INTRO = 'age-encryption.org/v1\n'
const FOOTER_PREFIX = '---'
const X25519_LABEL = 'age-encryption.org/v1/X25519'
/** The Poly1305 tag of every sealed piece: a wrapped file key, and each payload chunk. */
export const AGE_TAG = 16
/** A header longer than this is refused before it ends: a recipient list has no business being larger. */
export const MAX_HEADER_BYTES = 64 * 1024
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

/** The header of a new file: `fileKey` wrapped to each recipient (raw 32-byte public keys), and its MAC. */
export function sealHeader(fileKey: Buffer, recipients: readonly Uint8Array[]): Buffer {
  return encodeHeader(
    fileKey,
    recipients.map((recipient) => wrapFileKey(fileKey, recipient)),
  )
}

/**
 * The file key of a whole header (up to the MAC line's newline; see {@link headerEnd}), unwrapped
 * with the first identity that matches a recipient, once the header's MAC checks.
 */
export function openHeader(header: Buffer, identities: readonly X25519Identity[]): Buffer {
  const {mac, macInput, stanzas} = parseHeader(header)
  const fileKey = findFileKey(stanzas, identities)
  const expected = createHmac('sha256', deriveKey(fileKey, Buffer.alloc(0), 'header'))
    .update(macInput)
    .digest()
  if (!timingSafeEqual(expected, mac)) throw new AgeError('hmac', 'header MAC does not match')
  return fileKey
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
export function headerEnd(buffer: Buffer): number {
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

export function deriveKey(ikm: Buffer, salt: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, 32))
}

function aeadSeal(key: Buffer | KeyObject, nonce: Buffer, plaintext: Buffer): Buffer {
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, {authTagLength: AGE_TAG})
  const head = cipher.update(plaintext)
  cipher.final()
  return Buffer.concat([head, cipher.getAuthTag()])
}

export function aeadOpen(key: Buffer, nonce: Buffer, sealed: Buffer): Buffer | undefined {
  if (sealed.length < AGE_TAG) return undefined
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, {authTagLength: AGE_TAG})
  decipher.setAuthTag(sealed.subarray(sealed.length - AGE_TAG))
  const plaintext = decipher.update(sealed.subarray(0, sealed.length - AGE_TAG))
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
