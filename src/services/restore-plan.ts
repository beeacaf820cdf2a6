import type {RestoreOptions} from './restore.js'

import {requireParts} from '../config/load.js'
import {formatInstant} from '../domain/format.js'
import {Manifest} from '../domain/manifest.js'
import {BackupError} from '../errors.js'
import {databaseProviderFor} from '../providers/database/index.js'
import {mediaProviderFor} from '../providers/media/index.js'
import {Catalog, catalogOf, findBackupFor} from './catalog.js'
import {BackupContext} from './context.js'
import {acceptStoreState, checkForRollback} from './machine-state.js'

/** What a restore will do, worked out before anything is downloaded or changed. */
export interface RestorePlan {
  database: boolean
  manifest: Manifest
  media: boolean
  /** One sentence naming the target environment and everything that will be overwritten. */
  summary: string
}

/**
 * Checks that the backup exists and that the target environment can take it: same database engine,
 * a media location when media is restored. Reads only the catalog.
 */
export async function planRestore(
  source: BackupContext,
  target: BackupContext,
  options: RestoreOptions,
): Promise<RestorePlan> {
  const catalog = await catalogOf(source)
  if (options.reference === 'latest') await refuseRollback(source, catalog, options.allowRollback === true)
  const {manifest} = findBackupFor(source, catalog, options.reference, options.trustWriters)
  const {components} = manifest
  const database = options.database && components.database !== undefined
  const media = options.media && components.media !== undefined
  if (!database && !media) {
    throw new BackupError('USAGE', `Backup ${manifest.id} holds nothing of what was asked to restore.`, {
      suggestion: `Run \`divio app backup info ${manifest.id}\` to see its components.`,
    })
  }

  const to = target.env
  requireParts(to, {database, media})
  const where = `environment "${to.name}" (${to.configSource})`
  if (database && to.database === undefined) {
    throw new BackupError('USAGE', `The ${where} has no database to restore into.`, {
      suggestion: 'Set "database" for it in the config, or restore with --media-only.',
    })
  }

  if (database && to.database!.engine !== components.database!.engine) {
    throw new BackupError(
      'USAGE',
      `Backup ${manifest.id} holds a ${components.database!.engine} database, but ${where} uses ${to.database!.engine}.`,
      {suggestion: 'Restore into an environment with the same database engine, or use --media-only.'},
    )
  }

  if (media && to.media === undefined) {
    throw new BackupError('USAGE', `The ${where} has no media location to restore into.`, {
      suggestion: 'Set "media" for it in the config, or restore with --db-only.',
    })
  }

  const overwritten = [
    database ? `the ${to.database!.engine} database ${databaseProviderFor(to.database!).location}` : undefined,
    media ? `the media in ${mediaProviderFor(to.media!).location}` : undefined,
  ].filter(Boolean)
  return {
    database,
    manifest,
    media,
    summary: `restore backup ${manifest.id} of ${manifest.app}/${manifest.environment} (taken ${formatInstant(manifest.createdAt)}) over ${overwritten.join(' and ')} of ${to.app}/${to.name} (${options.safetyBackup ? 'a safety backup of it is taken first' : 'with NO safety backup of it: --no-safety-backup'})`,
  }
}

/**
 * "latest" is only what the store shows. When it shows less than this machine has seen, someone may
 * have hidden the newest backups so that an older state gets restored: refuse, unless the user says so.
 */
async function refuseRollback(context: BackupContext, catalog: Catalog, allowed: boolean): Promise<void> {
  const rollback = await checkForRollback(context, catalog)
  if (rollback === undefined) return
  if (allowed) {
    context.reporter.notice(`warning: ${rollback.why}; restoring the store's newest, as --allow-rollback says.`)
    await acceptStoreState(context, catalog)
    return
  }

  throw new BackupError(
    'INTEGRITY',
    `The store may have been rolled back: ${rollback.why}, so "latest" would be ${rollback.storeNewest ? `the older ${rollback.storeNewest.id}` : 'nothing'}.`,
    {
      suggestion: `If that backup was deleted on purpose (on another machine), run the restore again with --allow-rollback, or name the backup to restore. Otherwise, look at who changed the store before restoring anything.`,
    },
  )
}
