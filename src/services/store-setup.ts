import {countOf} from '../domain/format.js'
import {BackupError} from '../errors.js'
import {isInside} from '../lib/paths.js'
import {withinStallTimeout} from '../lib/stall.js'
import {readCatalog} from './catalog.js'
import {BackupContext} from './context.js'

/** What these steps need of a service context: `init` has no more before it writes its config. */
export type StoreSetupContext = Pick<BackupContext, 'env' | 'keys' | 'signal' | 'stallTimeoutMs' | 'store'>

/*
 * The first contact of a command that writes with its store: whether the store is new (and saying so
 * once), and refusing to start a new key where the store already holds backups.
 */

/** A call to the store before the transfers, bounded as they are (see withinStallTimeout). */
export function storeCall<T>(context: StoreSetupContext, what: string, work: Promise<T>): Promise<T> {
  const {signal, stallTimeoutMs, store} = context
  return withinStallTimeout(work, {signal, timeoutMs: stallTimeoutMs, what, where: `the store ${store.description}`})
}

/** Whether the store holds nothing at all yet: then this backup starts it, and says so. */
export async function isEmptyStore({store}: StoreSetupContext): Promise<boolean> {
  return store.isEmpty()
}

/**
 * Said once, by the backup that started the store: where it is, and, for a folder inside the app's own
 * folder, that it shares the app's disk and fate.
 */
export function newStoreNotice({env, store}: StoreSetupContext): string {
  const created = `Created a new store at ${store.description}.`
  if (env.store.kind !== 'local' || !isInside(env.store.path, env.root)) return created
  return [
    created,
    "It is inside the app folder, on the app's own disk: it is not off-site, and is lost with the disk.",
    'Copy it elsewhere regularly, or keep the backups in S3 (DIVIO_BACKUP_STORE=s3://bucket/prefix;',
    'see docs/s3.md).',
  ].join('\n')
}

/**
 * With no secret key on this machine, a new one would be generated. Where the store already holds
 * backups, those were encrypted to a key that is missing here: a new key would split the history in
 * two, and every later backup would need a key that the earlier ones do not, so this refuses instead.
 */
export async function refuseNewIdentity(context: StoreSetupContext): Promise<void> {
  const catalog = await storeCall(
    context,
    'its listing',
    (async () =>
      readCatalog(
        context.store,
        {app: context.env.app, environment: context.env.name},
        await context.keys.trustedWriters(),
      ))(),
  )
  const backups = catalog.complete.length + catalog.damaged.length
  if (backups === 0) return
  const recipients = [...new Set(catalog.complete.flatMap(({manifest}) => manifest.encryption.recipients))]
  const {app, name} = context.env
  throw new BackupError(
    'IDENTITY_MISSING',
    `No secret key at ${context.keys.identityPath}, but the store holds ${countOf(backups, 'backup')} of ${app}/${name}${recipients.length > 0 ? `, encrypted to ${recipients.join(', ')}` : ''}. No new key was made.`,
    {
      suggestion: `Restore the key file to ${context.keys.identityPath} from where you copied it, or point DIVIO_BACKUP_IDENTITY_FILE at it. If it is lost for good (the old backups then cannot be decrypted), make a new key on purpose: age-keygen -o ${context.keys.identityPath}`,
    },
  )
}
