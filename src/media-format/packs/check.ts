import {createHash} from 'node:crypto'
import {Readable} from 'node:stream'

import {X25519Identity} from '../../archive/age-keys.js'
import {HashingStream} from '../../archive/hash.js'
import {readTar} from '../../archive/tar-reader.js'
import {isPacked, Manifest, PackObject, StoredObject} from '../../domain/manifest.js'
import {BackupError} from '../../errors.js'
import {giveBack} from '../../lib/buffer-loan.js'
import {BackupContext} from '../../services/context.js'
import {ObjectCheckError} from '../../services/read.js'
import {ObjectNotFoundError} from '../../store/port.js'
import {forwardTargets, PackFolder, packsPrefix, readForward, ReadForward, readPackFolder} from './folder.js'
import {openPack, packPlaintext} from './reader.js'

/**
 * What readers of packs trust beside the packs (docs/storage.md): the forwards signed by a trusted writer,
 * and the size and SHA-256 of every pack, from signed manifests and signed forwards. An untrusted
 * forward is never followed; each one is named in a warning.
 */
export interface PackTrust {
  /** The SHA-256 and size of each pack, as signed; packs of older backups may have none. */
  digests: Map<string, StoredObject>
  folder: PackFolder
  /** The trusted forwards, read and checked. */
  forwards: ReadForward[]
  /** Where to look for a pack once it is gone: its trusted forwards' targets. */
  targets: Map<string, string[]>
}

export async function readPackTrust(
  context: BackupContext,
  scope: {app: string; environment: string},
  manifests: readonly Manifest[] = [],
  options: {quiet?: boolean} = {},
): Promise<PackTrust> {
  const prefix = packsPrefix(scope.app, scope.environment)
  const folder = await readPackFolder(context.store, prefix)
  const trusted = await context.keys.trustedWriters()
  const forwards: ReadForward[] = []
  for (const listed of folder.forwards) {
    const forward = await readForward(context.store, listed, {scope, trusted})
    if (forward === undefined) continue
    if (forward.trusted) forwards.push(forward)
    else if (!options.quiet)
      context.reporter.notice(`warning: ignored packs/${listed.from}.to.${listed.to}: ${forward.why}`)
  }

  const digests = new Map<string, StoredObject>()
  for (const manifest of manifests) for (const object of packObjectsOf(manifest)) digests.set(object.name, object)
  for (const forward of forwards) if (forward.object) digests.set(forward.to, forward.object)
  return {digests, folder, forwards, targets: forwardTargets(forwards)}
}

/** The packs a backup's signed manifest records with their size and SHA-256 (none for older backups). */
export function packObjectsOf(manifest: Manifest): PackObject[] {
  const {media} = manifest.components
  return media && isPacked(media) ? (media.packObjects ?? []) : []
}

/**
 * Reads one pack whole (or, once it is gone, the pack its trusted forwards lead to): its size and
 * SHA-256 against the signed record when there is one, every member authenticated by age and checked
 * against its name. Resolves with the ids of the blobs it holds, and the pack actually read.
 */
export async function checkPack(
  context: BackupContext,
  prefix: string,
  pack: string,
  keys: {identities: readonly X25519Identity[]; trust: PackTrust},
): Promise<{ids: Set<string>; stored: string}> {
  const {identities, trust} = keys
  let where = `packs/${pack}`
  let source: Readable
  let stored: string
  try {
    const opened = await openPack(context.store, prefix, pack, trust.targets)
    source = opened.source
    stored = opened.stored
    where = `packs/${opened.stored}`
  } catch (error) {
    if (error instanceof ObjectNotFoundError) throw new ObjectCheckError(where, 'missing from the store')
    throw error
  }

  const ciphertext = new HashingStream()
  const ids = new Set<string>()
  let tar: Readable | undefined
  try {
    const opened = await packPlaintext(source, identities, ciphertext)
    tar = opened.tar
    for await (const member of readTar(tar, {keepsNoBody: true})) {
      const hash = createHash('sha256')
      await member.eachChunk((chunk) => {
        hash.update(chunk)
        giveBack(chunk)
      })

      if (hash.digest('hex') !== member.path)
        throw new ObjectCheckError(where, `blob ${member.path.slice(0, 12)}… does not match its id`)
      ids.add(member.path)
    }

    await opened.done
  } catch (error) {
    // A machine that cannot read the pack (no zstd here) says so; it is not the pack's fault.
    if (error instanceof ObjectCheckError || error instanceof BackupError) throw error
    throw new ObjectCheckError(where, (error as Error).message)
  } finally {
    tar?.destroy()
  }

  const expected = trust.digests.get(stored)
  if (expected && (ciphertext.bytes !== expected.bytes || ciphertext.sha256 !== expected.sha256))
    throw new ObjectCheckError(where, 'its size or SHA-256 is not the one signed for it: it was replaced')
  return {ids, stored}
}
