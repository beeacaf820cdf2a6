import {signBytes, verifyBytes, WriterKey} from '../archive/writer-key.js'
import {canonicalJson, canonicalManifestBytes, Manifest, ManifestSignature} from './manifest.js'

/**
 * Whether a manifest was written by a trusted writer (docs/keys.md). Only `authentic` manifests are
 * acted on; every other status makes the backup `damaged`: shown, never `latest`, never counted or
 * removed by retention, and refused by restore unless the user names the writer with --trust-writer.
 */
export type Authenticity =
  | {status: 'authentic'; writer: string}
  | {status: 'bad-signature'; writer: string}
  | {status: 'unsigned'; writer: null}
  | {status: 'untrusted-writer'; writer: string}

/** The pseudo writer id that --trust-writer accepts for manifests written before signing. */
export const UNSIGNED_WRITER = 'unsigned'

export function signManifest(manifest: Omit<Manifest, 'signature'>, key: WriterKey): Manifest {
  const signer = {algorithm: 'ed25519' as const, recipient: key.ageIdentity.recipient, writer: key.id}
  const value = signBytes(key, canonicalManifestBytes(manifest, signer))
  return {...manifest, signature: {...signer, value}}
}

/**
 * Checks the signature over the manifest exactly as stored (`raw`, the parsed JSON), so that a field
 * this version does not know is covered too, and then whether its writer is trusted.
 */
export function authenticate(raw: Record<string, unknown>, trusted: ReadonlySet<string>): Authenticity {
  const signature = raw.signature as Partial<ManifestSignature> | undefined
  if (signature === undefined || signature === null) return {status: 'unsigned', writer: null}
  const writer = typeof signature.writer === 'string' ? signature.writer : '(none)'
  const {algorithm, recipient, value} = signature
  if (algorithm !== 'ed25519' || typeof recipient !== 'string' || typeof value !== 'string')
    return {status: 'bad-signature', writer}
  if (!verifyBytes(writer, canonicalManifestBytes(raw, {algorithm, recipient, writer}), value))
    return {status: 'bad-signature', writer}
  return trusted.has(writer) ? {status: 'authentic', writer} : {status: 'untrusted-writer', writer}
}

/** Whether `--trust-writer` values accept a backup whose manifest did not authenticate. */
export function trustOverrides(authenticity: Authenticity, trustWriters: readonly string[]): boolean {
  switch (authenticity.status) {
    case 'unsigned': {
      return trustWriters.includes(UNSIGNED_WRITER)
    }

    case 'untrusted-writer': {
      return trustWriters.includes(authenticity.writer)
    }

    default: {
      return authenticity.status === 'authentic'
    }
  }
}

export function describeAuthenticity(authenticity: Authenticity): string {
  switch (authenticity.status) {
    case 'authentic': {
      return `signed by trusted writer ${authenticity.writer}`
    }

    case 'bad-signature': {
      return `its signature does not match its contents (claimed writer ${authenticity.writer}): it was edited or forged`
    }

    case 'unsigned': {
      return 'it is not signed: written before manifests were signed, or forged'
    }

    case 'untrusted-writer': {
      return `it is signed by writer ${authenticity.writer}, which is not trusted here`
    }
  }
}

/**
 * The objects beside the packs that decide what prune deletes (condemned markers and forwards,
 * docs/storage.md) are signed like manifests, by the writer key of the prune that wrote them: a store writer
 * without a key can plant such an object, but not one that a reader acts on.
 */
export type PackNoteKind = 'condemned' | 'drill-receipt' | 'forward'

export interface SignedNote {
  [field: string]: unknown
  signature: {algorithm: 'ed25519'; value: string; writer: string}
}

export function signNote(kind: PackNoteKind, fields: Record<string, unknown>, key: WriterKey): SignedNote {
  const signer = {algorithm: 'ed25519' as const, writer: key.id}
  const value = signBytes(key, noteBytes(kind, fields, signer))
  return {...fields, signature: {...signer, value}}
}

/** The writer of a note whose signature checks and whose writer is trusted; otherwise why not. */
export function authenticateNote(
  kind: PackNoteKind,
  raw: unknown,
  trusted: ReadonlySet<string>,
): {ok: false; why: string} | {ok: true; writer: string} {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return {ok: false, why: 'not a signed note'}
  const {signature} = raw as {signature?: Partial<SignedNote['signature']>}
  if (signature === undefined || signature === null) return {ok: false, why: 'unsigned'}
  const {algorithm, value, writer} = signature
  if (algorithm !== 'ed25519' || typeof value !== 'string' || typeof writer !== 'string')
    return {ok: false, why: 'its signature is malformed'}
  if (!verifyBytes(writer, noteBytes(kind, raw as Record<string, unknown>, {algorithm, writer}), value))
    return {ok: false, why: 'its signature does not match its contents'}
  if (!trusted.has(writer)) return {ok: false, why: `signed by writer ${writer}, which is not trusted here`}
  return {ok: true, writer}
}

function noteBytes(kind: PackNoteKind, fields: Record<string, unknown>, signer: {algorithm: string; writer: string}) {
  const unsigned = {...fields}
  delete unsigned.signature
  return Buffer.from(`divio-backup ${kind} signature v1\n${canonicalJson({...unsigned, signer})}`, 'utf8')
}
