import {
  authenticate,
  Authenticity,
  describeAuthenticity,
  trustOverrides,
  UNSIGNED_WRITER,
} from '../domain/authenticity.js'
import {CompleteBackup, DamagedBackup, IncompleteBackup} from '../domain/backup.js'
import {countOf, formatInstant} from '../domain/format.js'
import {isBackupId, newestFirst, timeOfBackupId} from '../domain/ids.js'
import {Manifest, MANIFEST_NAME, parseManifest, PIN_NAME} from '../domain/manifest.js'
import {BackupError} from '../errors.js'
import {isReceiptName} from '../proof/receipt.js'
import {ObjectInfo, ObjectNotFoundError, ObjectUnreadableError, Store} from '../store/port.js'
import {BackupContext} from './context.js'
import {ObjectTooLargeError, readSmallObject} from './objects.js'

/** Manifest reads in flight at once. */
const MANIFEST_READS = 16

export interface Catalog {
  /** Newest first. Only backups whose manifest authenticated: the only ones anything acts on. */
  complete: CompleteBackup[]
  /** Newest first by id. Committed, but the manifest cannot be read or authenticated. */
  damaged: DamagedBackup[]
  /** Newest first. Backups without a manifest: still being written, or abandoned. */
  incomplete: IncompleteBackup[]
  /**
   * By backup id, the newest time the store gave any of its objects: for a complete backup, its
   * commit. By the store's clock, which is this machine's for a folder (see Store.ownClock).
   */
  storedAt: ReadonlyMap<string, Date>
}

export function environmentPrefix(app: string, environment: string): string {
  return `${app}/${environment}/`
}

export function objectKey(app: string, environment: string, id: string, name: string): string {
  return `${environmentPrefix(app, environment)}${id}/${name}`
}

/**
 * The catalog of the context's environment, authenticated against the writers trusted there. The
 * store is listed every time; a manifest this command has read and checked already, and which the
 * listing shows unchanged, is not read again: a create reads the catalog up to three times (the
 * previous backup, its own listing, retention), and over 400 backups each read took about 0.25 s.
 */
export async function catalogOf(context: BackupContext): Promise<Catalog> {
  let cache = manifestCaches.get(context)
  if (cache === undefined) {
    cache = new Map()
    manifestCaches.set(context, cache)
  }

  return readCatalog(
    context.store,
    {app: context.env.app, environment: context.env.name},
    await context.keys.trustedWriters(),
    cache,
  )
}

/**
 * Manifests read by a command, by key: what the read found, for the object at that size and time, and
 * the writers trusted then. Kept with the command's context, and gone with it.
 */
type ManifestCache = Map<string, {bytes: number; modifiedAt: number; read: ManifestRead; trusted: ReadonlySet<string>}>

const manifestCaches = new WeakMap<BackupContext, ManifestCache>()

/**
 * Reads what the store holds for one environment. One listing, then one small read per manifest.
 * A manifest that cannot be read, parsed or authenticated makes its backup `damaged` instead of
 * failing the whole read: one bad backup must not lock the user out of all the others.
 */
export async function readCatalog(
  store: Store,
  {app, environment}: {app: string; environment: string},
  trusted: ReadonlySet<string>,
  cache?: ManifestCache,
): Promise<Catalog> {
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
  const damaged: DamagedBackup[] = []
  const incomplete: IncompleteBackup[] = []
  const manifests: Array<{id: string; objects: ObjectInfo[]; pinned: boolean; receipts: string[]}> = []
  const storedAt = new Map<string, Date>()
  for (const [id, objects] of groups) {
    storedAt.set(id, new Date(Math.max(...objects.map((object) => object.modifiedAt.getTime()))))
    const names = new Set(objects.map((object) => object.key.slice(prefix.length + id.length + 1)))
    const pinned = names.has(PIN_NAME)
    if (names.has(MANIFEST_NAME)) {
      manifests.push({id, objects, pinned, receipts: [...names].filter((name) => isReceiptName(name)).sort()})
    } else {
      incomplete.push({
        app,
        bytes: objects.reduce((sum, object) => sum + object.bytes, 0),
        createdAt: timeOfBackupId(id),
        environment,
        id,
        lastModifiedAt: storedAt.get(id)!,
        objects: objects.map((object) => object.key),
        pinned,
      })
    }
  }

  // Manifests are small and each read waits on the store (a file system round trip, an S3 request):
  // read several at once.
  for (let start = 0; start < manifests.length; start += MANIFEST_READS) {
    const batch = manifests.slice(start, start + MANIFEST_READS)
    const read = await Promise.all(
      batch.map(async ({id, objects}) => {
        const key = `${prefix}${id}/${MANIFEST_NAME}`
        const listed = objects.find((object) => object.key === key)!
        const cached = cache?.get(key)
        if (
          cached !== undefined &&
          cached.bytes === listed.bytes &&
          cached.modifiedAt === listed.modifiedAt.getTime() &&
          sameMembers(cached.trusted, trusted)
        )
          return cached.read
        const result = await readManifest(store, {app, environment, id, key}, trusted)
        if (result.kind !== 'gone')
          cache?.set(key, {bytes: listed.bytes, modifiedAt: listed.modifiedAt.getTime(), read: result, trusted})
        return result
      }),
    )
    for (const [index, result] of read.entries()) {
      const {id, objects, pinned, receipts} = batch[index]
      if (result.kind === 'gone') continue
      if (result.kind === 'authentic') {
        complete.push({authenticity: result.authenticity, manifest: result.manifest, pinned, receipts})
        continue
      }

      damaged.push({
        app,
        authenticity: result.authenticity,
        createdAt: timeOfBackupId(id),
        environment,
        id,
        manifest: result.manifest,
        objects: objects.map((object) => object.key),
        pinned,
        reason: result.reason,
      })
    }
  }

  // Newest first by creation time: ids only resolve to the second, and two backups can share one.
  complete.sort((a, b) => newestFirst(a.manifest, b.manifest))
  incomplete.sort((a, b) => b.id.localeCompare(a.id))
  damaged.sort((a, b) => b.id.localeCompare(a.id))
  return {complete, damaged, incomplete, storedAt}
}

function sameMembers(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false
  for (const member of a) if (!b.has(member)) return false
  return true
}

type ManifestRead =
  | {authenticity: Authenticity; kind: 'authentic'; manifest: Manifest}
  | {authenticity?: Authenticity; kind: 'damaged'; manifest?: Manifest; reason: string}
  | {kind: 'gone'}

async function readManifest(
  store: Store,
  {app, environment, id, key}: {app: string; environment: string; id: string; key: string},
  trusted: ReadonlySet<string>,
): Promise<ManifestRead> {
  let text: string
  try {
    text = (await readSmallObject(store, key)).toString('utf8')
  } catch (error) {
    // Something else than a file under its name (planted, or left by a tool): listed, and unreadable.
    if (error instanceof ObjectUnreadableError) return {kind: 'damaged', reason: `manifest unreadable: ${error.reason}`}
    // Deleted since the listing (a concurrent prune or delete): it no longer exists.
    if (error instanceof ObjectNotFoundError) return {kind: 'gone'}
    if (error instanceof ObjectTooLargeError) return {kind: 'damaged', reason: `manifest unreadable: ${error.message}`}
    throw error
  }

  const parsed = parseManifest(text)
  if (!parsed.ok) return {kind: 'damaged', reason: `manifest unreadable: ${parsed.error}`}
  const {manifest} = parsed
  // A manifest copied from elsewhere is as wrong as a forged one, whoever signed it.
  if (manifest.id !== id || manifest.app !== app || manifest.environment !== environment) {
    return {
      kind: 'damaged',
      manifest,
      reason: `manifest describes backup ${manifest.app}/${manifest.environment}/${manifest.id}, not this one: it was moved or copied`,
    }
  }

  const authenticity = authenticate(JSON.parse(text) as Record<string, unknown>, trusted)
  if (authenticity.status === 'authentic') return {authenticity, kind: 'authentic', manifest}
  return {authenticity, kind: 'damaged', manifest, reason: `not authentic: ${describeAuthenticity(authenticity)}`}
}

/**
 * Refuses a backup reference that names nothing: an empty one is a prefix of every id, so it matched
 * the only backup of an environment, and `delete "$ID" --confirm live` with ID unset deleted it.
 */
export function assertReference(reference: string): void {
  if (reference.trim() !== '') return
  throw new BackupError('USAGE', 'The backup id is empty.', {
    suggestion: 'Give a backup id, a unique prefix of one, or `latest`; `divio app backup list` shows them.',
  })
}

/**
 * Finds a backup by full id, unique prefix, or `latest`. A damaged backup is refused (INTEGRITY), unless
 * its manifest parsed and `trustWriters` names its writer (or `unsigned`): the user's explicit word.
 */
export function findBackup(catalog: Catalog, reference: string, trustWriters: readonly string[] = []): CompleteBackup {
  assertReference(reference)
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
  const damaged = catalog.damaged.filter((backup) => backup.id.startsWith(reference))
  if (matches.length + damaged.length > 1) {
    throw new BackupError('USAGE', `"${reference}" matches ${matches.length + damaged.length} backups.`, {
      suggestion: 'Give more of the id; `divio app backup list` shows them.',
    })
  }

  if (matches.length === 1) return matches[0]
  if (damaged.length === 1) return trustedDamaged(damaged[0], trustWriters)

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

/**
 * findBackup, and for `latest`, a notice of the newer backups it passed over because they could not be
 * authenticated: on a machine that has not seen them (a new one, restoring after a loss) nothing else
 * would say that "latest" is not the newest backup committed. Not a refusal, since anyone who can write
 * the store could plant such a backup.
 */
export function findBackupFor(
  context: Pick<BackupContext, 'reporter'>,
  catalog: Catalog,
  reference: string,
  trustWriters: readonly string[] = [],
): CompleteBackup {
  const found = findBackup(catalog, reference, trustWriters)
  if (reference !== 'latest') return found
  const {id} = found.manifest
  const taken = Date.parse(found.manifest.createdAt)
  const newer = catalog.damaged.filter((backup) => backup.createdAt.getTime() > taken).map((backup) => backup.id)
  if (newer.length === 0) return found
  const named = newer.length > 3 ? `${newer.slice(0, 3).join(', ')} and ${newer.length - 3} more` : newer.join(', ')
  context.reporter.notice(
    `"latest" is ${id}, taken ${formatInstant(found.manifest.createdAt)}: ${countOf(newer.length, 'newer backup')} could not be authenticated and ${newer.length === 1 ? 'was' : 'were'} passed over (${named}). \`divio app backup verify ID\` says why.`,
  )
  return found
}

function trustedDamaged(backup: DamagedBackup, trustWriters: readonly string[]): CompleteBackup {
  const {authenticity, manifest} = backup
  if (manifest && authenticity && trustOverrides(authenticity, trustWriters)) {
    return {authenticity, manifest, pinned: backup.pinned}
  }

  const writer = authenticity?.status === 'unsigned' ? UNSIGNED_WRITER : authenticity?.writer
  const canTrust =
    manifest !== undefined && (authenticity?.status === 'untrusted-writer' || authenticity?.status === 'unsigned')
  throw new BackupError('INTEGRITY', `Backup ${backup.id} is damaged: ${backup.reason}.`, {
    suggestion: canTrust
      ? `If you know that writer ${writer} made it, pass --trust-writer ${writer}, or add it to encryption.writers (DIVIO_BACKUP_WRITERS). Otherwise delete it with \`divio app backup delete ${backup.id}\`.`
      : `Nothing was read from it. Delete it with \`divio app backup delete ${backup.id}\`, and use another backup (\`divio app backup list\`).`,
  })
}
