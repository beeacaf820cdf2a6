import {createReadStream} from 'node:fs'
import {stat} from 'node:fs/promises'
import {join} from 'node:path'

import {ExtractSummary} from '../archive/extract.js'
import {stopWriterThread} from '../archive/file-writer.js'
import {BackupError} from '../errors.js'
import {printableName} from '../lib/byte-names.js'
import {makeStagingDir, removeStagingDir, tempFolderError} from '../lib/staging.js'
import {checkTarStream} from '../media-format/extract-tar.js'
import {storedMedia} from '../media-format/index.js'
import {TarStream} from '../media-format/port.js'
import {databaseProviderFor} from '../providers/database/index.js'
import {mediaProviderFor} from '../providers/media/index.js'
import {MediaProvider, PreparedMediaRestore} from '../providers/media/port.js'
import {duringRestore} from './activity.js'
import {BackupContext, timedStage} from './context.js'
import {createBackup} from './create.js'
import {downloadBackup, extensionOf} from './download.js'
import {ObjectCheckError} from './read.js'
import {planRestore, RestorePlan} from './restore-plan.js'

export interface RestoreOptions {
  /** Restore `latest` even when the store shows less than this machine has seen. */
  allowRollback?: boolean
  /** S3 media: delete objects the backup does not hold. */
  clean: boolean
  database: boolean
  media: boolean
  reference: string
  safetyBackup: boolean
  /** Writer ids (or `unsigned`) to accept although they are not trusted: the user's explicit word. */
  trustWriters?: string[]
}

/** `restore --json`: what was restored where, and the backup that holds the target's previous state. */
export interface RestoreResult {
  database: null | {engine: string; location: string}
  from: string
  id: string
  /** `skipped`: members of the backup left out, each with why (symlinks that lead outside the media folder). */
  media: null | {
    /** With `--clean`: objects the backup does not hold, left in place since S3 has archived them. */
    archivedKept?: number
    bytes: number
    deleted: number
    files: number
    location: string
    skipped: Array<{path: string; why: string}>
  }
  /** The on-demand backup of the target taken just before; null when skipped or there was nothing. */
  safetyBackup: null | string
  to: string
}

/** What the person restoring must confirm, and how they did (--confirm) if they did. */
export interface RestoreConfirmation {
  action: string
  confirm?: string
  environment: string
}

/**
 * A whole restore: plan, stage, confirm, apply. `confirm` asks for the target's name (or checks
 * --confirm) and throws if it is not given. With `prompt` (a person at a terminal) it is asked once the
 * backup has been staged and checked, so that they are not kept waiting after answering; otherwise
 * first, so that a refusal costs no download. The staging is removed on every path.
 */
export async function restoreBackup(
  source: BackupContext,
  target: BackupContext,
  options: RestoreOptions & {confirm?: string; prompt: boolean},
  confirm: (confirmation: RestoreConfirmation) => Promise<void>,
): Promise<RestoreResult> {
  const plan = await planRestore(source, target, options)
  const confirmation = {action: plan.summary, confirm: options.confirm, environment: target.env.name}
  if (!options.prompt) await confirm(confirmation)
  const staged = await stageRestore(source, target, plan)
  try {
    if (options.prompt) await confirm(confirmation)
    return await duringRestore(target, () => applyRestore(target, plan, staged, options))
  } finally {
    await staged.cleanup()
  }
}

/** What a restore applies: the database downloaded and checked, and the media to write. */
export interface StagedRestore {
  cleanup(): Promise<void>
  database?: string
  /** A folder target's media: written, checked, into a new folder, straight from the store. */
  extractMedia?: (folder: string) => Promise<ExtractSummary>
  /** A bucket target's media: the staged media.tar, checked in full before the first upload. */
  media?: () => Promise<TarStream>
}

/**
 * Downloads, decrypts and authenticates what the restore reads before it changes anything into a
 * staging folder, checking every checksum against the manifest: the database, and the media archive
 * when the target reads it twice (a bucket is checked in full before the first upload). A damaged
 * backup fails here, before the target is touched. A media folder needs no staged archive: it is
 * extracted beside the target straight from the store, and swapped in only once all of it checked.
 */
export async function stageRestore(
  source: BackupContext,
  target: BackupContext,
  plan: RestorePlan,
): Promise<StagedRestore> {
  const staging = await makeStagingDir(source.tempRoot, 'restore')
  const cleanup = () => removeStagingDir(staging)
  const streamed = plan.media && mediaProviderFor(target.env.media!).prepare !== undefined
  try {
    const folder = join(staging, 'files')
    if (plan.database || (plan.media && !streamed)) {
      await downloadBackup(source, staging, {
        database: plan.database,
        manifest: plan,
        media: plan.media && !streamed,
        outputDir: folder,
        reference: plan.manifest.id,
      })
    }

    const {database} = plan.manifest.components
    const staged: StagedRestore = {
      cleanup,
      database: plan.database ? join(folder, `database.${extensionOf(database!.format)}`) : undefined,
    }
    if (streamed) {
      const media = storedMedia(plan.manifest)!
      staged.extractMedia = async (folder) =>
        media.extract(source, await source.keys.identities(), {folder, tempDir: staging})
    } else if (plan.media) {
      staged.media = async () => ({checked: Promise.resolve(), stream: createReadStream(join(folder, 'media.tar'))})
    }

    return staged
  } catch (error) {
    await cleanup()
    throw error instanceof BackupError
      ? new BackupError(error.code, `${error.message} The target was not touched.`, {
          cause: error,
          exitCode: error.exitCode,
          suggestion: error.suggestion,
        })
      : error
  }
}

/**
 * Takes the safety backup of the target, then applies the staged files: the database first, then the
 * media. Each step either completes or leaves its part of the target as it was (MySQL excepted, which
 * stops at the first error); a failure says what was already changed and where the previous state is.
 */
export async function applyRestore(
  target: BackupContext,
  plan: RestorePlan,
  staged: StagedRestore,
  options: RestoreOptions,
): Promise<RestoreResult> {
  const {manifest} = plan
  // Everything that can be checked is checked before the safety backup: a refused archive must not
  // cost a backup of the target, let alone touch it; nor a target that cannot be filled now.
  if (plan.database) await checkDatabaseTarget(target)
  const media = plan.media
    ? await timedStage(target.reporter, 'check media', () => prepareMedia(target, plan, staged))
    : undefined
  // The media is written: what follows (a safety backup, which reads on the reader thread, the swap)
  // writes no file through the writer thread, whose isolate goes now.
  await stopWriterThread()
  let safetyBackup: null | string
  try {
    safetyBackup = options.safetyBackup
      ? await timedStage(target.reporter, 'safety backup', () => {
          // The progress bars that follow are of the safety backup: say so, on a terminal.
          if (target.reporter.interactive)
            target.reporter.notice(`Safety backup of ${target.env.app}/${target.env.name}:`)
          return takeSafetyBackup(target, plan)
        })
      : null
  } catch (error) {
    await media?.prepared?.discard()
    throw error
  }

  const kept = safetyBackup ? ` Its previous state is in backup ${safetyBackup}.` : ''
  const result: RestoreResult = {
    database: null,
    from: manifest.environment,
    id: manifest.id,
    media: null,
    safetyBackup,
    to: target.env.name,
  }
  const tempDir = await makeStagingDir(target.tempRoot, 'restore-apply')
  try {
    if (plan.database) {
      const provider = databaseProviderFor(target.env.database!)
      try {
        await timedStage(target.reporter, 'apply database', () =>
          provider.restore(staged.database!, {
            lockWaitMs: target.stallTimeoutMs,
            signal: target.signal,
            tempDir,
          }),
        )
      } catch (error) {
        throw stepFailure(error, `${kept} Nothing else was changed.`)
      }

      result.database = {engine: provider.engine, location: provider.location}
    }

    if (media) {
      const {prepared, provider} = media
      const done = result.database ? ` The database was already restored.${kept}` : kept
      try {
        const summary = await timedStage(target.reporter, 'apply media', async () =>
          prepared
            ? prepared.commit()
            : provider.restore((await staged.media!()).stream, {
                clean: options.clean,
                onSkip: (path, why) => target.reporter.notice(skippedWarning(path, why)),
                signal: target.signal,
              }),
        )
        // A restore through the provider reported what it skipped as it went (onSkip); a prepared one did not.
        for (const {path, why} of prepared ? summary.skipped : []) target.reporter.notice(skippedWarning(path, why))

        result.media = {...summary, location: provider.location}
      } catch (error) {
        throw stepFailure(error, done)
      }
    }

    return result
  } finally {
    await media?.prepared?.discard()
    await removeStagingDir(tempDir)
  }
}

/** The database port's own check of the target (restorable), with a staging folder of its own for it. */
async function checkDatabaseTarget(target: BackupContext): Promise<void> {
  const tempDir = await makeStagingDir(target.tempRoot, 'restore-apply')
  try {
    await databaseProviderFor(target.env.database!).restorable({signal: target.signal, tempDir})
  } finally {
    await removeStagingDir(tempDir)
  }
}

/**
 * Writes and checks the media before anything else happens: tar safety, every file, and everything it
 * was read from. A folder target keeps what was written, ready to swap in; for a bucket, which takes
 * the members back as keys, the staged archive is read through and checked as verify checks it.
 */
async function prepareMedia(
  target: BackupContext,
  plan: RestorePlan,
  staged: StagedRestore,
): Promise<{prepared?: PreparedMediaRestore; provider: MediaProvider}> {
  const provider = mediaProviderFor(target.env.media!)
  try {
    if (provider.prepare)
      return {prepared: await provider.prepare(staged.extractMedia!, {signal: target.signal}), provider}
    await checkTarStream(await staged.media!(), provider.kind, target.signal)
    return {provider}
  } catch (error) {
    // Stopped by SIGINT/SIGTERM: whatever broke on the way down, the user asked to stop.
    if (target.signal.aborted) throw target.signal.reason
    // A full temp folder (the decrypted index of packs) comes as the file system's own error: named
    // here, where the temp folder is known, and then said to have changed nothing, as a folder's is.
    const inTemp = tempFolderError(error, target.tempRoot)
    throw untouched(inTemp ?? error, plan.manifest.id, provider.location, provider.prepare !== undefined && !inTemp)
  }
}

/** A failure of the media check, saying that nothing was changed (a folder's provider says so itself). */
function untouched(error: unknown, id: string, location: string, saysSo: boolean): unknown {
  if (error instanceof ObjectCheckError) {
    return new BackupError(
      'INTEGRITY',
      `Backup ${id} failed verification: ${error.objectName}: ${error.message}. The target was not touched.`,
      {suggestion: `Run \`divio app backup verify ${id}\` for a full report, and restore from another backup.`},
    )
  }

  if (!(error instanceof BackupError) || saysSo) return error
  return new BackupError(error.code, `${error.message} The media in ${location} was not changed.`, {
    cause: error,
    exitCode: error.exitCode,
    suggestion: error.suggestion,
  })
}

async function takeSafetyBackup(target: BackupContext, plan: RestorePlan): Promise<null | string> {
  const {env} = target
  // A target that does not exist yet (a new SQLite file or media folder) has nothing to keep.
  const database = plan.database && (await exists(env.database!))
  const media = plan.media && (await exists(env.media!))
  if (!database && !media) {
    target.reporter.notice(`The target holds no ${plan.database ? 'database' : 'media'} yet: no safety backup needed.`)
    return null
  }

  try {
    const backup = await createBackup(target, {
      database,
      media,
      note: `before restore of ${plan.manifest.id}`,
      trigger: 'on-demand',
    })
    return backup.id
  } catch (error) {
    if (!(error instanceof BackupError)) throw error
    throw new BackupError(error.code, `The safety backup of ${env.app}/${env.name} failed: ${error.message}`, {
      cause: error,
      exitCode: error.exitCode,
      suggestion:
        `Nothing was restored and the target was not touched. ${error.suggestion ?? ''} To restore without a safety backup, pass --no-safety-backup.`.trim(),
    })
  }
}

async function exists(
  location: NonNullable<BackupContext['env']['database']> | NonNullable<BackupContext['env']['media']>,
): Promise<boolean> {
  if ('engine' in location)
    return location.engine !== 'sqlite' || (await stat(location.path).catch(() => {})) !== undefined
  return location.kind !== 'filesystem' || (await stat(location.path).catch(() => {})) !== undefined
}

function skippedWarning(path: string, why: string): string {
  return `warning: media ${JSON.stringify(printableName(path))} not restored: ${why}`
}

function stepFailure(error: unknown, afterwards: string): unknown {
  if (!(error instanceof BackupError)) return error
  return new BackupError(error.code, `${error.message}${afterwards}`, {
    cause: error,
    exitCode: error.exitCode,
    suggestion: error.suggestion,
  })
}
