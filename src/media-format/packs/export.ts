import {createReadStream} from 'node:fs'
import {rename, rm, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {PassThrough} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {X25519Identity} from '../../archive/age-keys.js'
import {HashingStream} from '../../archive/hash.js'
import {isPacked, Manifest, MediaPacksComponent, StoredObject} from '../../domain/manifest.js'
import {BackupError} from '../../errors.js'
import {createFileSink} from '../../lib/file-sink.js'
import {makeFolders} from '../../lib/folders.js'
import {syncPath} from '../../lib/fsync.js'
import {makeStagingDir, removeStagingDir} from '../../lib/staging.js'
import {BackupContext} from '../../services/context.js'
import {readSmallObject} from '../../services/objects.js'
import {SHARED_PACKS} from '../port.js'
import {readPackTrust} from './check.js'
import {forwardKey, locatePacks, packsPrefix} from './folder.js'
import {readIndexFile, readIndexLines} from './read.js'
import {RebuildScriptCheck} from './rebuild-script.js'

export type ExportedFile = {
  backup: string
  bytes: number
  path: string
  sha256: string
  status: 'exported' | 'present'
}

/**
 * The packs that the exported backups of incremental media refer to, as stored (age-encrypted tars of
 * blobs), into `<env>/packs/`, once each, with the signed forwards that lead to the copies of packs
 * repacking replaced (`<pack>.to.<pack>.json`). A pack is immutable, so one already there with its
 * size and SHA-256 is kept.
 *
 * Each pack's size and SHA-256 must be the ones signed for it (in a backup's manifest, or a trusted
 * forward): a pack planted or swapped in the store is refused before anything of it is written, since
 * the README's recipe would extract it. A pack of a backup written before digests were recorded is
 * copied with a warning. With the identity, each backup's rebuild script is also derived again from
 * its index and compared, since the recipe runs it.
 */
export async function exportPacks(
  context: BackupContext,
  manifests: readonly Manifest[],
  outputDir: string,
): Promise<ExportedFile[]> {
  const names = new Set<string>()
  for (const manifest of manifests) {
    const {media} = manifest.components
    if (media && isPacked(media)) for (const pack of media.packs) names.add(pack)
  }

  if (names.size === 0) return []
  await checkRebuildScripts(context, manifests)
  const scope = {app: context.env.app, environment: context.env.name}
  const trust = await readPackTrust(context, scope, manifests)
  const present = new Set(trust.folder.packs.map((pack) => pack.name))
  const {missing, stored: located, via} = locatePacks(names, present, trust.targets)
  if (missing.length > 0) {
    throw new BackupError(
      'INTEGRITY',
      `Pack ${missing[0]}, which an exported backup refers to, is missing from the store.`,
      {suggestion: 'Run `divio app backup verify --all` to see which backups are affected.'},
    )
  }

  const unsigned = located.filter((name) => !trust.digests.has(name))
  if (unsigned.length > 0)
    context.reporter.notice(
      `warning: ${unsigned.length} pack(s) belong to backups made before packs were recorded in the signed manifest; they are exported unchecked (verify checks their blobs).`,
    )
  const folder = join(outputDir, context.env.name, 'packs')
  await makeFolders(folder)
  const files: ExportedFile[] = []
  for (const name of located) files.push(await exportPack(context, name, trust.digests.get(name), folder))
  const prefix = packsPrefix(scope.app, scope.environment)
  for (const {from, to} of via) {
    const body = await readSmallObject(context.store, forwardKey(prefix, from, to))
    const path = join(folder, `${from}.to.${to}.json`)
    await writeFile(path, body, {mode: 0o644})
    const hashing = new HashingStream()
    await pipeline(createReadStream(path), hashing, new PassThrough().resume())
    files.push({backup: SHARED_PACKS, bytes: hashing.bytes, path, sha256: hashing.sha256, status: 'exported'})
  }

  return files
}

async function exportPack(
  context: BackupContext,
  name: string,
  signed: StoredObject | undefined,
  folder: string,
): Promise<ExportedFile> {
  const path = join(folder, name)
  const key = `${packsPrefix(context.env.app, context.env.name)}/packs/${name}`
  const listed = await context.store.stat(key)
  if (listed === undefined) {
    throw new BackupError('INTEGRITY', `Pack ${name}, which an exported backup refers to, is missing from the store.`, {
      suggestion: 'Run `divio app backup verify --all` to see which backups are affected.',
    })
  }

  const refuse = () =>
    new BackupError(
      'INTEGRITY',
      `Pack ${name} in the store is not the one signed for it (size or SHA-256 differ): it was replaced or planted. Nothing of it was exported.`,
      {
        suggestion:
          'Run `divio app backup verify --all` to see which backups it affects; the backups whose blobs it holds cannot be exported raw until then.',
      },
    )
  const matchesSigned = (digest: {bytes: number; sha256: string}) =>
    signed === undefined || (digest.bytes === signed.bytes && digest.sha256 === signed.sha256)
  const existing = await stat(path).catch(() => {})
  if (existing?.size === (signed?.bytes ?? listed.bytes)) {
    const hashing = new HashingStream()
    await pipeline(createReadStream(path), hashing, new PassThrough().resume())
    if (matchesSigned(hashing))
      return {backup: SHARED_PACKS, bytes: hashing.bytes, path, sha256: hashing.sha256, status: 'present'}
  }

  if (signed !== undefined && listed.bytes !== signed.bytes) throw refuse()
  const partial = `${path}.partial`
  const hashing = new HashingStream()
  try {
    await pipeline(
      await context.store.get(key),
      hashing,
      createFileSink(partial, {flags: 'w', mode: 0o600, syncs: true}),
      {
        signal: context.signal,
      },
    )
    if (!matchesSigned(hashing)) throw refuse()
  } catch (error) {
    await rm(partial, {force: true})
    throw error
  }

  await syncPath(partial)
  await rename(partial, path)
  return {backup: SHARED_PACKS, bytes: hashing.bytes, path, sha256: hashing.sha256, status: 'exported'}
}

/**
 * The recipe runs each backup's rebuild script, which a create machine wrote: with the identity, it is
 * derived again from the index and compared first. Without it, the export says so, and the README
 * says to run `verify`, which checks the same.
 */
async function checkRebuildScripts(context: BackupContext, manifests: readonly Manifest[]): Promise<void> {
  let identities: X25519Identity[]
  try {
    identities = await context.keys.identities()
  } catch (error) {
    if (!(error instanceof BackupError)) throw error
    context.reporter.notice(
      'warning: without the identity, the rebuild scripts are exported unchecked; run `divio app backup verify` where the identity is, before running one.',
    )
    return
  }

  const tempDir = await makeStagingDir(context.tempRoot, 'export')
  try {
    for (const manifest of manifests) {
      const {media} = manifest.components
      if (!media || !isPacked(media)) continue
      const script = new RebuildScriptCheck()
      const path = join(tempDir, `${manifest.id}.index`)
      await readIndexFile(context, manifest, identities, path)
      for await (const entry of readIndexLines(path)) script.add(entry)
      await rm(path, {force: true})
      if (!script.matches((media as MediaPacksComponent).rebuild.plaintext.sha256)) {
        throw new BackupError(
          'INTEGRITY',
          `The rebuild script of backup ${manifest.id} is not the one its index derives: it would run something else. Nothing was exported raw.`,
          {
            suggestion: `Do not run it. \`divio app backup export\` (without --raw) writes that backup's media as a standard tar, checked file by file.`,
          },
        )
      }
    }
  } finally {
    await removeStagingDir(tempDir)
  }
}
