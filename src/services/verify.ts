import {Manifest, MANIFEST_NAME, StoredObject} from '../domain/manifest.js'
import {findBackup, readCatalog} from './catalog.js'
import {BackupContext} from './context.js'
import {ObjectCheckError, readVerified} from './read.js'

/** `verify` --json: stable contract (DESIGN §3). */
export interface VerifyResult {
  id: string
  objects: {detail: string; name: string; ok: boolean}[]
  ok: boolean
}

/** Reads back every object of one backup and checks sizes, checksums and age authentication. */
export async function verifyBackup(context: BackupContext, reference: string): Promise<VerifyResult> {
  const catalog = await readCatalog(context.store, context.env.app, context.env.name)
  return verifyManifest(context, findBackup(catalog, reference).manifest)
}

export async function verifyAllBackups(context: BackupContext): Promise<VerifyResult[]> {
  const catalog = await readCatalog(context.store, context.env.app, context.env.name)
  const results: VerifyResult[] = []
  for (const backup of catalog.complete) results.push(await verifyManifest(context, backup.manifest))
  return results
}

async function verifyManifest(context: BackupContext, manifest: Manifest): Promise<VerifyResult> {
  const identities = await context.keys.identities()
  const objects: VerifyResult['objects'] = [{detail: 'schema valid', name: MANIFEST_NAME, ok: true}]
  const {database, media} = manifest.components
  const checks: {compression?: 'none' | 'zstd'; object: StoredObject; plaintext: {bytes: number; sha256: string}}[] = [
    ...(database ? [{compression: database.compression, object: database.object, plaintext: database.plaintext}] : []),
    ...(media ? [{object: media.object, plaintext: media.plaintext}, media.listing] : []),
  ]
  for (const {compression, object, plaintext} of checks) {
    try {
      await readVerified(context, manifest, {compression, identities, object, plaintext})
      objects.push({
        detail: `authenticated; ${plaintext.bytes} bytes, sha256 ${plaintext.sha256.slice(0, 12)}… matches`,
        name: object.name,
        ok: true,
      })
    } catch (error) {
      if (!(error instanceof ObjectCheckError)) throw error
      objects.push({detail: error.message, name: object.name, ok: false})
    }
  }

  return {id: manifest.id, objects, ok: objects.every((object) => object.ok)}
}
