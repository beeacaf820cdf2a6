import {bech32} from 'bech32'
import {createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, KeyObject} from 'node:crypto'

/**
 * age X25519 keys (https://age-encryption.org/v1): recipients are `age1…` and identities are
 * `AGE-SECRET-KEY-1…`, both Bech32 without the 90-character limit. Files written here are
 * byte-compatible with `age-keygen`, so `age -d -i <file>` reads them.
 */

const RECIPIENT_HRP = 'age'
const IDENTITY_HRP = 'age-secret-key-'
const BECH32_LIMIT = 1023

// DER wrappers of raw X25519 keys (RFC 8410), so node:crypto can import them without JWK round trips.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')

export interface X25519Identity {
  readonly privateKey: KeyObject
  readonly publicKey: Buffer
  /** The matching recipient, `age1…`. */
  readonly recipient: string
}

export class AgeKeyError extends Error {
  constructor(
    message: string,
    /** What to do instead, where the file is a kind of key this tool cannot use. */
    readonly suggestion?: string,
  ) {
    super(message)
  }
}

export function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({format: 'der', key: Buffer.concat([SPKI_PREFIX, raw]), type: 'spki'})
}

export function rawPublicKey(key: KeyObject): Buffer {
  return (key.export({format: 'der', type: 'spki'}) as Buffer).subarray(SPKI_PREFIX.length)
}

export function x25519(privateKey: KeyObject, publicKey: KeyObject): Buffer {
  return diffieHellman({privateKey, publicKey})
}

export function parseRecipient(text: string): Buffer {
  const trimmed = text.trim()
  let decoded
  try {
    decoded = bech32.decode(trimmed, BECH32_LIMIT)
  } catch {
    throw new AgeKeyError(`not an age X25519 recipient: ${JSON.stringify(abbreviate(trimmed))}`)
  }

  if (decoded.prefix !== RECIPIENT_HRP || trimmed !== trimmed.toLowerCase()) {
    throw new AgeKeyError(`not an age X25519 recipient: ${JSON.stringify(abbreviate(trimmed))}`)
  }

  const bytes = Buffer.from(bech32.fromWords(decoded.words))
  if (bytes.length !== 32) throw new AgeKeyError('an age X25519 recipient must hold 32 bytes')
  return bytes
}

export function formatRecipient(publicKey: Uint8Array): string {
  return bech32.encode(RECIPIENT_HRP, bech32.toWords(publicKey), BECH32_LIMIT)
}

export function parseIdentity(text: string): X25519Identity {
  const trimmed = text.trim()
  let decoded
  try {
    decoded = bech32.decode(trimmed, BECH32_LIMIT)
  } catch {
    throw new AgeKeyError('not an age X25519 identity (expected a line starting with AGE-SECRET-KEY-1)')
  }

  if (decoded.prefix !== IDENTITY_HRP || trimmed !== trimmed.toUpperCase()) {
    throw new AgeKeyError('not an age X25519 identity (expected a line starting with AGE-SECRET-KEY-1)')
  }

  const secret = Buffer.from(bech32.fromWords(decoded.words))
  if (secret.length !== 32) throw new AgeKeyError('an age X25519 identity must hold 32 bytes')
  const privateKey = createPrivateKey({format: 'der', key: Buffer.concat([PKCS8_PREFIX, secret]), type: 'pkcs8'})
  const publicKey = rawPublicKey(createPublicKey(privateKey))
  return {privateKey, publicKey, recipient: formatRecipient(publicKey)}
}

/** Parses an identity file as age-keygen writes it: `#` comments, blank lines, one key per line. */
export function parseIdentityFile(contents: string): X25519Identity[] {
  const foreign = foreignIdentity(contents)
  if (foreign !== undefined) throw new AgeKeyError(foreign.what, foreign.suggestion)
  const identities = contents
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => parseIdentity(line))
  if (identities.length === 0) throw new AgeKeyError('the identity file holds no AGE-SECRET-KEY-1 line')
  return identities
}

export function generateIdentity(): {fileContents: (createdAt: Date) => string; identity: X25519Identity} {
  const {privateKey} = generateKeyPairSync('x25519')
  const pkcs8 = privateKey.export({format: 'der', type: 'pkcs8'}) as Buffer
  const secret = pkcs8.subarray(PKCS8_PREFIX.length)
  const encoded = bech32.encode(IDENTITY_HRP, bech32.toWords(secret), BECH32_LIMIT).toUpperCase()
  const identity = parseIdentity(encoded)
  return {
    fileContents: (createdAt) =>
      `# created: ${createdAt.toISOString().replace(/\.\d+Z$/, 'Z')}\n# public key: ${identity.recipient}\n${encoded}\n`,
    identity,
  }
}

/**
 * The keys people point an identity file at that age reads and this tool does not, named, with what to
 * do: a passphrase-protected identity (which would need scrypt at 256 MiB, more than a command may
 * take), an SSH key, and a plugin's (a hardware key).
 */
function foreignIdentity(contents: string): undefined | {suggestion: string; what: string} {
  const start = contents.trimStart()
  if (start.startsWith('age-encryption.org/v1') || start.startsWith('-----BEGIN AGE ENCRYPTED FILE-----')) {
    return {
      suggestion:
        'Decrypt it into a file only you can read, `(umask 077; age -d -o identity.txt FILE)`, point DIVIO_BACKUP_IDENTITY_FILE at identity.txt, and delete it when done.',
      what: 'it is itself encrypted with age (a passphrase, age -p), and this tool does not ask for passphrases',
    }
  }

  if (/^-----BEGIN (OPENSSH |RSA |EC |DSA )?PRIVATE KEY-----/.test(start) || /^ssh-(ed25519|rsa) /.test(start)) {
    return {
      suggestion:
        'Use an age X25519 identity (age-keygen): the backups are encrypted to its public key, age1…, set in "recipients" or made on the first create.',
      what: 'it is an SSH key, which age can use, but this tool cannot',
    }
  }

  if (/^AGE-PLUGIN-/m.test(contents)) {
    return {
      suggestion: 'Use an age X25519 identity (age-keygen), kept in a file only you can read.',
      what: "it names an age plugin's identity (a hardware key, AGE-PLUGIN-…), which this tool cannot use",
    }
  }

  return undefined
}

function abbreviate(text: string): string {
  return text.length > 24 ? `${text.slice(0, 12)}…${text.slice(-6)}` : text
}
