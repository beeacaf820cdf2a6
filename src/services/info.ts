import {BackupView} from '../domain/backup.js'
import {objectsOf} from '../domain/manifest.js'
import {storedMedia} from '../media-format/index.js'
import {catalogOf, findBackupFor} from './catalog.js'
import {BackupContext} from './context.js'
import {lastDrills, viewsOf} from './list.js'

/** `info` --json: a backup object plus what it is made of. */
export interface BackupInfo extends BackupView {
  encryption: {format: string; recipients: string[]}
  objects: {bytes: number; name: string; plaintextBytes: number; plaintextSha256: string; sha256: string}[]
  store: {location: string; storageClass: string}
  tool: {name: string; version: string}
}

/** One backup, and the environment's backups around it (for the picture of retention; not in --json). */
export interface Inspection {
  info: BackupInfo
  siblings: BackupView[]
}

export async function inspectBackup(context: BackupContext, reference: string): Promise<Inspection> {
  const catalog = await catalogOf(context)
  const {manifest} = findBackupFor(context, catalog, reference)
  const siblings = viewsOf(context, catalog, {all: false}, await lastDrills(context, catalog))
  const view = siblings.find((candidate) => candidate.id === manifest.id)!
  const {database} = manifest.components
  const contents = [
    ...(database ? [database.plaintext] : []),
    ...(storedMedia(manifest)?.ownObjects.map((object) => object.plaintext) ?? []),
  ]
  const info: BackupInfo = {
    ...view,
    encryption: manifest.encryption,
    objects: objectsOf(manifest).map((object, index) => ({
      bytes: object.bytes,
      name: object.name,
      plaintextBytes: contents[index].bytes,
      plaintextSha256: contents[index].sha256,
      sha256: object.sha256,
    })),
    store: {
      location: context.store.description,
      storageClass: context.env.store.kind === 'local' ? 'local folder' : context.env.store.location.storageClass,
    },
    tool: manifest.tool,
  }
  return {info, siblings}
}
