import {objectsOf} from '../domain/manifest.js'
import {BackupError} from '../errors.js'
import {catalogOf, findBackup, objectKey} from './catalog.js'
import {BackupContext} from './context.js'

/** The longest a link may live: SigV4 presigned URLs are valid for at most seven days. */
export const MAX_URL_SECONDS = 7 * 24 * 3600

/** `url` --json: a time-limited link to each stored object of one backup. */
export interface BackupUrls {
  expiresAt: string
  id: string
  objects: {bytes: number; name: string; url: string}[]
}

/**
 * Presigned links to a backup's objects, manifest first, for fetching them with any HTTP client
 * (`curl URL | age -d`). The objects stay encrypted: a link gives its holder the ciphertext only.
 */
export async function backupUrls(
  context: BackupContext,
  reference: string,
  options: {expiresInSeconds: number},
): Promise<BackupUrls> {
  const {store} = context
  if (store.presign === undefined) {
    throw new BackupError('USAGE', `The store ${store.description} is a local folder: it has no URLs to give out.`, {
      suggestion: `Read the files there directly, or run \`divio app backup download ${reference}\` to decrypt and check them.`,
    })
  }

  const {manifest} = findBackup(await catalogOf(context), reference)
  const {app, environment, id} = manifest
  const expiresAt = new Date(context.now().getTime() + options.expiresInSeconds * 1000).toISOString()
  const names = ['manifest.json', ...objectsOf(manifest).map((object) => object.name)]
  const sizes = new Map(objectsOf(manifest).map((object) => [object.name, object.bytes]))
  const objects = await Promise.all(
    names.map(async (name) => {
      const key = objectKey(app, environment, id, name)
      const bytes = sizes.get(name) ?? (await store.stat(key))?.bytes ?? 0
      return {bytes, name, url: await store.presign!(key, options)}
    }),
  )
  return {expiresAt, id, objects}
}
