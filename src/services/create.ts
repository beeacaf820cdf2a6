import {randomBytes} from 'node:crypto'

import {requireParts} from '../config/load.js'
import {signManifest} from '../domain/authenticity.js'
import {BackupView} from '../domain/backup.js'
import {newBackupId} from '../domain/ids.js'
import {DatabaseComponent, Manifest, MANIFEST_NAME, MANIFEST_SCHEMA_VERSION, Trigger} from '../domain/manifest.js'
import {BackupError, describeCause, describeIoError} from '../errors.js'
import {makeStagingDir, removeStagingDir, sweepStaleStaging, tempFolderError} from '../lib/staging.js'
import {withinStallTimeout} from '../lib/stall.js'
import {chooseMediaFormat} from '../media-format/index.js'
import {PutObject} from '../media-format/port.js'
import {HookOutcome} from '../proof/hooks.js'
import {databaseProviderFor} from '../providers/database/index.js'
import {duringBackup} from './activity.js'
import {objectKey} from './catalog.js'
import {BackupContext, timedStage} from './context.js'
import {identityCreatedNotice, writerKeyCreatedNotice} from './keys.js'
import {listBackups} from './list.js'
import {refuseMissingPart} from './missing-source.js'
import {withHooks} from './notify.js'
import {putSmallObject} from './objects.js'
import {PruneDecision, retentionAfterCreate} from './retention.js'
import {isEmptyStore, newStoreNotice, refuseNewIdentity, storeCall} from './store-setup.js'
import {transferComponent} from './transfer.js'

/** How long removing a failed backup's objects may take before they are left for prune. */
const CLEANUP_TIMEOUT_MS = 3000

export interface CreateOptions {
  database: boolean
  media: boolean
  note?: string
  trigger: Trigger
}

/**
 * Takes one backup: each component is snapshotted, hashed, encrypted, hashed again and stored as it
 * streams; the manifest is written last, and only when every stage succeeded. Until then the backup
 * does not exist; on failure or interruption the objects already written are removed (best effort),
 * and anything left is an incomplete backup that prune collects.
 */
export async function createBackup(context: BackupContext, options: CreateOptions): Promise<BackupView> {
  return duringBackup(context, () => takeNow(context, options))
}

async function takeNow(context: BackupContext, options: CreateOptions): Promise<BackupView> {
  const {env, reporter, signal, store} = context
  requireParts(env, options)
  const wantDatabase = options.database && env.database !== undefined
  const wantMedia = options.media && env.media !== undefined
  if (!wantDatabase && !wantMedia) throw nothingToBackUp(context, options)
  // Whether this backup starts the store: asked now, awaited only where needed (a new key, the notice
  // after the commit), so that the listing overlaps the work instead of preceding it.
  const newStore = storeCall(context, 'its listing', isEmptyStore(context))
  newStore.catch(() => {})

  const recipients = await context.keys.recipients(
    context.now(),
    (path, recipient) => reporter.notice(identityCreatedNotice(path, recipient)),
    async () => {
      if (!(await newStore)) await refuseNewIdentity(context)
    },
  )

  let writerKeyMade: string | undefined
  const writer = await context.keys.writerKey(context.now(), (path, writerId) => {
    writerKeyMade = path
    reporter.notice(writerKeyCreatedNotice(path, writerId))
  })
  const trusted = await context.keys.trustedWriters()
  if (!trusted.has(writer.id)) throw untrustedWriter(context, writer.id, writerKeyMade)
  await refuseMissingPart(context, options)

  const createdAt = context.now()
  const id = newBackupId(createdAt, randomBytes(6))
  const written: string[] = []
  await sweepStaleStaging(context.tempRoot)
  const tempDir = await makeStagingDir(context.tempRoot, 'backup')
  const key = (name: string) => objectKey(env.app, env.name, id, name)
  const put: Put = async (
    name,
    source,
    progress,
    {bytes, compression = 'none', location, to = recipients.publicKeys},
  ) => {
    written.push(key(name))
    return transferComponent({
      bytes,
      compression,
      key: key(name),
      location,
      name,
      progress,
      recipients: to,
      signal,
      source,
      stallTimeoutMs: context.stallTimeoutMs,
      store,
    })
  }

  const manifestKey = key(MANIFEST_NAME)
  let manifest: Manifest
  try {
    const components: Manifest['components'] = {}
    const previous = previousSizes(context)
    if (wantDatabase) {
      components.database = await timedStage(reporter, 'database', () =>
        backUpDatabase(context, tempDir, put, previous),
      )
    }

    if (wantMedia) {
      components.media = await timedStage(reporter, 'media', () =>
        chooseMediaFormat(env).backUp(context, {
          previousMediaBytes: async () => (await previous()).media,
          put,
          recipients: recipients.publicKeys,
          tempDir,
          writer,
        }),
      )
    }

    signal.throwIfAborted()
    const fields: Omit<Manifest, 'signature'> = {
      app: env.app,
      completedAt: context.now().toISOString(),
      components,
      createdAt: createdAt.toISOString(),
      encryption: {format: 'age-v1', recipients: recipients.names},
      environment: env.name,
      id,
      note: options.note ?? null,
      schemaVersion: MANIFEST_SCHEMA_VERSION,
      tool: {name: '@divio/plugin-app-backup', version: context.toolVersion},
      trigger: options.trigger,
    }
    manifest = signManifest(fields, writer)
    // The commit point: before this write the backup does not exist; after it, it is complete.
    written.unshift(manifestKey)
    await timedStage(reporter, 'commit (manifest.json)', () =>
      putSmallObject(store, manifestKey, `${JSON.stringify(manifest, null, 2)}\n`),
    )
  } catch (error) {
    const leftovers = await removeUncommitted(context, written, manifestKey)
    throw failure(tempFolderError(error, context.tempRoot) ?? error, id, leftovers, signal)
  } finally {
    await removeStagingDir(tempDir)
  }

  // Committed. Nothing below may remove any of it: a failure from here on is reported as what it is.
  if (await newStore.catch(() => false)) reporter.notice(newStoreNotice(context))
  try {
    const view = (await listBackups(context, {all: false})).find((backup) => backup.id === id)
    if (view === undefined) throw new Error('it is missing from the listing')
    return view
  } catch (error) {
    throw new BackupError(
      'STORE_UNAVAILABLE',
      `Backup ${id} is complete and committed, but reading it back failed: ${describeCause(error)}.`,
      {
        cause: error,
        suggestion: `Nothing was removed. Run \`divio app backup verify ${id}\` once the store is reachable.`,
      },
    )
  }
}

/** Streams one component into the store; `location` names its source in messages. */
type Put = PutObject

/** The sizes of the newest complete backup, as estimates for progress; read only when progress is drawn. */
type PreviousSizes = () => Promise<{database?: number; media?: number}>

function previousSizes(context: BackupContext): PreviousSizes {
  let sizes: ReturnType<PreviousSizes> | undefined
  return async () => {
    if (!context.reporter.interactive) return {}
    sizes ??= listBackups(context, {all: false}).then(
      ([newest]) => ({database: newest?.components.database?.bytes, media: newest?.components.media?.bytes}),
      () => ({}),
    )
    return sizes
  }
}

async function backUpDatabase(
  context: BackupContext,
  tempDir: string,
  put: Put,
  previous: PreviousSizes,
): Promise<DatabaseComponent> {
  const provider = databaseProviderFor(context.env.database!)
  const snapshot = await provider.snapshot({
    countRows: context.env.countRows,
    // Well within the stall timeout, which would otherwise fail the dump first, without a name.
    lockWaitMs: context.stallTimeoutMs / 2,
    signal: context.signal,
    tempDir,
  })
  try {
    const progress = context.reporter.progress('database', snapshot.bytes)
    if (snapshot.bytes === undefined) {
      const estimate = (await previous()).database
      if (estimate) progress.expect(estimate, {estimated: true})
    }

    const stored = await put(`database.${snapshot.extension}.age`, snapshot.stream, progress, {
      compression: snapshot.compression,
      location: `the ${provider.engine} database ${provider.location}`,
    })
    // Counted alongside the dump; once the dump is stored, waiting longer than a stall means a hang.
    const facts = snapshot.facts
      ? await withinStallTimeout(snapshot.facts(), {
          signal: context.signal,
          timeoutMs: context.stallTimeoutMs,
          what: 'its row counts',
          where: `the ${provider.engine} database ${provider.location}`,
        })
      : undefined
    return {
      compression: snapshot.compression,
      engine: provider.engine,
      ...(facts ? {facts} : {}),
      format: snapshot.format,
      ...stored,
      ...(snapshot.serverVersion ? {serverVersion: snapshot.serverVersion} : {}),
    }
  } finally {
    await snapshot.cleanup()
  }
}

/**
 * Removes what a failed create wrote, the manifest first. When the manifest cannot be removed, the
 * backup may be committed after all (a write that landed but reported an error), so its data stays.
 */
async function removeUncommitted(
  context: BackupContext,
  keys: readonly string[],
  manifestKey: string,
): Promise<string[]> {
  // Bounded, and independent of the (possibly aborted) command signal: a store that stopped answering
  // must not hold an interrupted or failed command. What is left, prune collects.
  const signal = AbortSignal.timeout(CLEANUP_TIMEOUT_MS)
  const leftovers: string[] = []
  for (const key of keys) {
    if (leftovers.includes(manifestKey)) {
      leftovers.push(key)
      continue
    }

    try {
      if (signal.aborted) throw signal.reason
      await context.store.delete(key, {signal})
    } catch {
      leftovers.push(key)
    }
  }

  return leftovers
}

/**
 * `madeAt`: the key was made by this very command, which is what a tick run as another user than the
 * one who set the app up meets (a systemd unit without User=, root's crontab): that is the likely fix.
 */
function untrustedWriter(context: BackupContext, writerId: string, madeAt: string | undefined): BackupError {
  const {env} = context
  const trustIt = `add ${writerId} to encryption.writers in ${env.configSource}${env.writers ? '' : ' (or to DIVIO_BACKUP_WRITERS)'}`
  return new BackupError(
    'IDENTITY_WRONG',
    `This machine's writer key (${writerId}) is not a trusted writer of ${env.app}/${env.name}: its backups would be refused.`,
    {
      suggestion:
        madeAt === undefined
          ? `${trustIt[0].toUpperCase()}${trustIt.slice(1)}, or use a trusted writer key (DIVIO_BACKUP_WRITER_KEY_FILE).`
          : `This user had no writer key, so one was made at ${madeAt}. Run as the user who holds a trusted one (cron: that user's crontab; systemd: User= in the unit), or point DIVIO_BACKUP_WRITER_KEY_FILE at it; or, to trust the new one, ${trustIt}.`,
    },
  )
}

function failure(error: unknown, id: string, leftovers: readonly string[], signal: AbortSignal): BackupError {
  const left =
    leftovers.length === 0
      ? 'Nothing was left in the store.'
      : `${leftovers.length} partial object(s) remain; \`divio app backup prune\` collects them after the grace period.`
  if (signal.aborted) {
    return new BackupError('INTERRUPTED', `Interrupted: backup ${id} was not committed. ${left}`, {cause: error})
  }

  if (error instanceof BackupError) {
    return new BackupError(error.code, `Backup ${id} failed and was not committed: ${error.message}`, {
      cause: error,
      exitCode: error.exitCode,
      suggestion: [error.suggestion, left].filter(Boolean).join(' '),
    })
  }

  const io = describeIoError(error, `backup ${id}`)
  if (io)
    return new BackupError(io.code, `${io.message} The backup was not committed.`, {
      cause: error,
      suggestion: `${io.suggestion} ${left}`,
    })
  return new BackupError('BACKUP_FAILED', `Backup ${id} failed and was not committed: ${(error as Error).message}.`, {
    cause: error,
    suggestion: `${left} Fix the cause above and run the command again.`,
  })
}

function nothingToBackUp(context: BackupContext, options: CreateOptions): BackupError {
  const {env} = context
  const missing = [
    options.database && env.database === undefined ? 'no database' : undefined,
    options.media && env.media === undefined ? 'no media' : undefined,
  ].filter(Boolean)
  return new BackupError(
    'NOTHING_TO_BACK_UP',
    `Nothing to back up in environment "${env.name}": ${missing.join(' and ')} configured.`,
    {
      suggestion:
        env.configSource === 'embedded default'
          ? 'Set DATABASE_URL or create db.sqlite3, and/or set MEDIA_ROOT or create ./media; or write .divio/backups.json.'
          : `Set "database" and/or "media" for ${env.name} in ${env.configSource}.`,
    },
  )
}

/** `create` --json: the backup object, plus what the trigger's retention policy removed afterwards. */
export interface TakeBackupResult extends BackupView {
  /** With --notify: the hooks that ran, and how they fared. */
  notifications?: HookOutcome[]
  removedByRetention: PruneDecision[]
}

/**
 * Takes a backup and then, only because it succeeded, applies the retention policy of its trigger.
 * With `notify`, the environment's hooks are told of the start and of the outcome.
 */
export async function takeBackup(
  context: BackupContext,
  options: CreateOptions & {notify?: boolean},
): Promise<TakeBackupResult> {
  if (!options.notify) return takeAndApplyRetention(context, options)
  const {notifications, result} = await withHooks(
    context,
    () => takeAndApplyRetention(context, options),
    (taken) => ({backup: taken}),
  )
  return {...result, notifications}
}

async function takeAndApplyRetention(context: BackupContext, options: CreateOptions): Promise<TakeBackupResult> {
  const view = await createBackup(context, options)
  if (!context.env.retention.afterBackup) return {...view, removedByRetention: []}
  try {
    const removedByRetention = await timedStage(context.reporter, 'retention', () =>
      retentionAfterCreate(context, options.trigger, view.id),
    )
    return {...view, removedByRetention}
  } catch (error) {
    // It says the backup is complete, and what to check.
    if (error instanceof BackupError && error.code === 'CLOCK_UNTRUSTED') throw error
    throw new BackupError(
      'BACKUP_FAILED',
      `Backup ${view.id} is complete, but applying retention afterwards failed: ${(error as Error).message}`,
      {
        cause: error,
        suggestion: `The new backup is safe. Run \`divio app backup prune --dry-run\` to see what retention would do, then prune. If this machine may not delete (append-only store credentials), set "retention": {"afterBackup": false} for ${context.env.name} in ${context.env.configSource}, and prune from a machine that may.`,
      },
    )
  }
}
