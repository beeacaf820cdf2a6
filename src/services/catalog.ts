import {CompleteBackup, IncompleteBackup} from '../domain/backup.js'
import {isBackupId, timeOfBackupId} from '../domain/ids.js'
import {Manifest, MANIFEST_NAME, parseManifest, PIN_NAME} from '../domain/manifest.js'
import {BackupError} from '../errors.js'
import {ObjectInfo, ObjectNotFoundError, Store} from '../store/port.js'
import {readSmallObject} from './objects.js'

/** Manifest reads in flight at once. */
const MANIFEST_READS = 16

export interface Catalog {
  /** Newest first. */
  complete: CompleteBackup[]
  /** Newest first. Backups without a manifest: still being written, or abandoned. */
  incomplete: IncompleteBackup[]
}

export function environmentPrefix(app: string, environment: string): string {
  return `${app}/${environment}/`
}

export function objectKey(app: string, environment: string, id: string, name: string): string {
  return `${environmentPrefix(app, environment)}${id}/${name}`
}

/** Reads what the store holds for one environment. One listing, then one small read per manifest. */
export async function readCatalog(store: Store, app: string, environment: string): Promise<Catalog> {
  const prefix = environmentPrefix(app, environment)
  const groups = new Map<string, ObjectInfo[]>()
  for await (const object of store.list(prefix)) {
    const [id] = object.key.slice(prefix.length).split('/')
    if (!isBackupId(id)) continue
    const group = groups.get(id) ?? []
    group.push(object)
    groups.set(id, group)
  }

  const complete: CompleteBackup[] = []
  const incomplete: IncompleteBackup[] = []
  const manifests: Array<{id: string; pinned: boolean}> = []
  for (const [id, objects] of groups) {
    const names = new Set(objects.map((object) => object.key.slice(prefix.length + id.length + 1)))
    const pinned = names.has(PIN_NAME)
    if (names.has(MANIFEST_NAME)) {
      manifests.push({id, pinned})
    } else {
      incomplete.push({
        app,
        bytes: objects.reduce((sum, object) => sum + object.bytes, 0),
        createdAt: timeOfBackupId(id),
        environment,
        id,
        lastModifiedAt: new Date(Math.max(...objects.map((object) => object.modifiedAt.getTime()))),
        objects: objects.map((object) => object.key),
        pinned,
      })
    }
  }

  // Manifests are small and each read waits on the store (a file system round trip, an S3 request):
  // read several at once.
  for (let start = 0; start < manifests.length; start += MANIFEST_READS) {
    const batch = manifests.slice(start, start + MANIFEST_READS)
    const read = await Promise.all(batch.map(({id}) => readManifest(store, `${prefix}${id}/${MANIFEST_NAME}`, id)))
    for (const [index, manifest] of read.entries()) complete.push({manifest, pinned: batch[index].pinned})
  }

  // Newest first by creation time: ids only resolve to the second, and two backups can share one.
  complete.sort(
    (a, b) =>
      Date.parse(b.manifest.createdAt) - Date.parse(a.manifest.createdAt) || b.manifest.id.localeCompare(a.manifest.id),
  )
  incomplete.sort((a, b) => b.id.localeCompare(a.id))
  return {complete, incomplete}
}

async function readManifest(store: Store, key: string, id: string): Promise<Manifest> {
  let text: string
  try {
    text = (await readSmallObject(store, key)).toString('utf8')
  } catch (error) {
    if (error instanceof ObjectNotFoundError) {
      throw new BackupError('STORE_UNAVAILABLE', `Backup ${id} disappeared while it was being read.`, {
        suggestion: 'Another process is deleting backups (a prune or delete); run the command again.',
      })
    }

    throw error
  }

  const parsed = parseManifest(text)
  if (!parsed.ok) {
    throw new BackupError('INTEGRITY', `The manifest of backup ${id} is damaged (${parsed.error}).`, {
      suggestion: `Inspect ${key} in the store; delete the backup with \`divio app backup delete ${id}\` if it cannot be repaired.`,
    })
  }

  if (parsed.manifest.id !== id) {
    throw new BackupError('INTEGRITY', `The manifest stored under ${id} describes backup ${parsed.manifest.id}.`, {
      suggestion: 'The store was edited by hand; move the folder back to its own id.',
    })
  }

  return parsed.manifest
}

/** Finds a backup by full id, unique prefix, or `latest`. */
export function findBackup(catalog: Catalog, reference: string): CompleteBackup {
  if (reference === 'latest') {
    const [latest] = catalog.complete
    if (latest === undefined) {
      throw new BackupError('BACKUP_NOT_FOUND', 'There are no complete backups yet.', {
        suggestion: 'Take one with `divio app backup create`.',
      })
    }

    return latest
  }

  const matches = catalog.complete.filter((backup) => backup.manifest.id.startsWith(reference))
  if (matches.length === 1) return matches[0]
  if (matches.length > 1) {
    throw new BackupError('USAGE', `"${reference}" matches ${matches.length} backups.`, {
      suggestion: 'Give more of the id; `divio app backup list` shows them.',
    })
  }

  const incomplete = catalog.incomplete.find((backup) => backup.id.startsWith(reference))
  if (incomplete) {
    throw new BackupError(
      'BACKUP_NOT_FOUND',
      `Backup ${incomplete.id} is incomplete: it was never committed and holds no usable data.`,
      {
        suggestion:
          '`divio app backup list --all` shows it; `divio app backup prune` collects it once it is old enough.',
      },
    )
  }

  throw new BackupError('BACKUP_NOT_FOUND', `No backup "${reference}".`, {
    suggestion: '`divio app backup list` shows the backups of this environment.',
  })
}
