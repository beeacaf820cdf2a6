import {objectsOf} from '../domain/manifest.js'
import {BackupError} from '../errors.js'
import {storedMedia} from '../media-format/index.js'
import {LinkTarget} from '../media-format/port.js'
import {catalogOf, findBackupFor, objectKey} from './catalog.js'
import {BackupContext} from './context.js'

/** The longest a link may live: SigV4 presigned URLs are valid for at most seven days. */
export const MAX_URL_SECONDS = 7 * 24 * 3600

/** `url` --json: a time-limited link to each stored object of one backup. */
export interface BackupUrls {
  expiresAt: string
  id: string
  /**
   * Every object the backup needs: its own, then, for incremental media, each pack that holds its
   * blobs (`packs/<pack>`) and each signed forward that leads to one (`packs/<from>.to.<to>.json`).
   */
  objects: {bytes: number; name: string; url: string}[]
  /** Incremental media: an sh script that fetches the links and rebuilds the media (age, zstd, tar, sh). */
  recipe?: string
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

  const {manifest} = findBackupFor(context, await catalogOf(context), reference)
  const {app, environment, id} = manifest
  const expiresAt = new Date(context.now().getTime() + options.expiresInSeconds * 1000).toISOString()
  const sizes = new Map(objectsOf(manifest).map((object) => [object.name, object.bytes]))
  const keys: LinkTarget[] = ['manifest.json', ...sizes.keys()].map((name) => ({
    bytes: sizes.get(name),
    key: objectKey(app, environment, id, name),
    name,
  }))
  const media = await storedMedia(manifest)?.links(context)
  keys.push(...(media?.targets ?? []))
  const objects = await Promise.all(
    keys.map(async ({bytes, key, name}) => ({
      bytes: bytes ?? (await store.stat(key))?.bytes ?? 0,
      name,
      url: await store.presign!(key, options),
    })),
  )
  return {expiresAt, id, objects, ...(media?.recipe ? {recipe: media.recipe(objects)} : {})}
}
