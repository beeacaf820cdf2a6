import {bech32} from 'bech32'
import {createPrivateKey, createPublicKey, hkdfSync, KeyObject, randomBytes, sign, verify} from 'node:crypto'

import {AgeKeyError, parseIdentity, X25519Identity} from './age-keys.js'

/**
 * The writer key (docs/keys.md): one 32-byte secret held by the machines that create backups. Two keys
 * are derived from it with HKDF-SHA-256, so that one line in one file is all a machine needs:
 * - an Ed25519 key that signs every manifest, whose public half is the **writer id**;
 * - an X25519 age identity, to which writers also encrypt what later creates must read back.
 *
 * File format, in the style of age-keygen:
 *   # created: 2026-12-02T10:00:00Z
 *   # writer id: divio-writer1…
 *   DIVIO-WRITER-KEY-1…            (Bech32 of the secret, upper case)
 */

const SECRET_HRP = 'divio-writer-key-'
const WRITER_ID_HRP = 'divio-writer'
const BECH32_LIMIT = 1023
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const AGE_SECRET_HRP = 'age-secret-key-'

export interface WriterKey {
  /** The derived X25519 age identity; its recipient (`age1…`) is recorded, signed, in each manifest. */
  readonly ageIdentity: X25519Identity
  /** `divio-writer1…`: the Bech32 of the Ed25519 public key. Public; what users trust. */
  readonly id: string
  readonly signingKey: KeyObject
}

export function parseWriterKey(text: string): WriterKey {
  const line = text
    .split(/\r?\n/)
    .map((candidate) => candidate.trim())
    .find((candidate) => candidate !== '' && !candidate.startsWith('#'))
  if (line === undefined) throw new AgeKeyError('the writer key file holds no DIVIO-WRITER-KEY-1 line')
  let decoded
  try {
    decoded = bech32.decode(line, BECH32_LIMIT)
  } catch {
    throw new AgeKeyError('not a writer key (expected a line starting with DIVIO-WRITER-KEY-1)')
  }

  if (decoded.prefix !== SECRET_HRP || line !== line.toUpperCase())
    throw new AgeKeyError('not a writer key (expected a line starting with DIVIO-WRITER-KEY-1)')
  const secret = Buffer.from(bech32.fromWords(decoded.words))
  if (secret.length !== 32) throw new AgeKeyError('a writer key must hold 32 bytes')
  return writerKeyFromSecret(secret)
}

export function generateWriterKey(): {fileContents: (createdAt: Date) => string; key: WriterKey} {
  const secret = randomBytes(32)
  const key = writerKeyFromSecret(secret)
  const encoded = bech32.encode(SECRET_HRP, bech32.toWords(secret), BECH32_LIMIT).toUpperCase()
  return {
    fileContents: (createdAt) =>
      [
        `# created: ${createdAt.toISOString().replace(/\.\d+Z$/, 'Z')}`,
        `# writer id: ${key.id}`,
        `# age recipient: ${key.ageIdentity.recipient}`,
        encoded,
        '',
      ].join('\n'),
    key,
  }
}

function writerKeyFromSecret(secret: Buffer): WriterKey {
  const derive = (purpose: string) =>
    Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), `divio-backup writer key v1: ${purpose}`, 32))
  const signingKey = createPrivateKey({
    format: 'der',
    key: Buffer.concat([ED25519_PKCS8_PREFIX, derive('ed25519')]),
    type: 'pkcs8',
  })
  const ageSecret = bech32.encode(AGE_SECRET_HRP, bech32.toWords(derive('x25519')), BECH32_LIMIT).toUpperCase()
  return {ageIdentity: parseIdentity(ageSecret), id: writerIdOf(createPublicKey(signingKey)), signingKey}
}

function writerIdOf(publicKey: KeyObject): string {
  const raw = (publicKey.export({format: 'der', type: 'spki'}) as Buffer).subarray(ED25519_SPKI_PREFIX.length)
  return bech32.encode(WRITER_ID_HRP, bech32.toWords(raw), BECH32_LIMIT)
}

/** The Ed25519 public key of a writer id, or undefined when the text is not one. */
export function parseWriterId(text: string): KeyObject | undefined {
  try {
    const decoded = bech32.decode(text.trim(), BECH32_LIMIT)
    if (decoded.prefix !== WRITER_ID_HRP) return undefined
    const raw = Buffer.from(bech32.fromWords(decoded.words))
    if (raw.length !== 32) return undefined
    return createPublicKey({format: 'der', key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), type: 'spki'})
  } catch {
    return undefined
  }
}

export function isWriterId(text: string): boolean {
  return parseWriterId(text) !== undefined
}

export function signBytes(key: WriterKey, message: Buffer): string {
  return sign(null, message, key.signingKey).toString('base64')
}

/** Decoded writer ids: a listing checks many manifests of the same few writers. */
const publicKeys = new Map<string, KeyObject | undefined>()

/** True when `signature` (base64) is the writer's Ed25519 signature of `message`. */
export function verifyBytes(writerId: string, message: Buffer, signature: string): boolean {
  if (!publicKeys.has(writerId)) {
    if (publicKeys.size > 1000) publicKeys.clear()
    publicKeys.set(writerId, parseWriterId(writerId))
  }

  const publicKey = publicKeys.get(writerId)
  if (publicKey === undefined) return false
  const raw = Buffer.from(signature, 'base64')
  if (raw.length !== 64 || raw.toString('base64') !== signature) return false
  return verify(null, message, publicKey, raw)
}
