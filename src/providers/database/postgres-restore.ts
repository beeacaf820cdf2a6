import {randomBytes} from 'node:crypto'
import {rm} from 'node:fs/promises'
import {PassThrough, Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {BackupError} from '../../errors.js'
import {run, streamFrom} from '../../lib/process.js'
import {describeToolError} from './dump-stream.js'
import {RestoreOptions} from './port.js'
import {EXTENSIONS_NOT_OURS, restoreListWithout, writeRestoreList} from './postgres-extensions.js'
import {LockWatch, psqlQuery} from './postgres-locks.js'
import {RestoreScript, restoreScript} from './postgres-script.js'

/** What a restore needs of the provider: its tools, its login, and where it restores, for messages. */
export interface PostgresTarget {
  /** libpq's environment: the password, the connect timeout. */
  env(): NodeJS.ProcessEnv
  /** The DSN without its password. */
  readonly location: string
  tool(name: string): string
  /** The connection URI without the password. */
  readonly uri: string
}

/**
 * Restores a custom-format dump into the database, in one transaction: all of it, or nothing. The
 * tables, views and sequences the user owns are replaced, not only the backup's (postgres-script);
 * the extensions that another role owns in the target stay as they are (postgres-extensions).
 */
export async function restoreDump(target: PostgresTarget, dumpPath: string, options: RestoreOptions): Promise<void> {
  // Its own name, by which the lock watch finds its session.
  const applicationName = `divio-app-backup restore ${randomBytes(6).toString('hex')}`
  const watch =
    options.lockWaitMs === undefined
      ? undefined
      : new LockWatch(psqlQuery(target.tool('psql'), target.uri, target.env()), applicationName, options.lockWaitMs)
  let listPath: string | undefined
  let script: RestoreScript | undefined
  let archiveOutput: Readable | undefined
  try {
    listPath = await restoreList(target, dumpPath, options)
    const archive = [
      '--clean',
      '--if-exists',
      '--no-owner',
      '--no-privileges',
      '--single-transaction',
      '--exit-on-error',
      ...(listPath ? [`--use-list=${listPath}`] : []),
    ]
    archiveOutput = streamFrom(target.tool('pg_restore'), [...archive, '--file=-', dumpPath], {
      env: target.env(),
      signal: options.signal,
    }).stream
    script = await restoreScript(archiveOutput)
    const env = {...target.env(), PGAPPNAME: applicationName}
    const {stream} = script
      ? streamFrom(target.tool('psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', `--dbname=${target.uri}`], {
          env,
          signal: options.signal,
          stdin: script.script,
        })
      : // An older pg_restore, whose script psql would replay unrestricted: the archive's way, as before.
        streamFrom(target.tool('pg_restore'), [...archive, `--dbname=${target.uri}`, dumpPath], {
          env,
          signal: options.signal,
        })
    await pipeline(stream, new PassThrough().resume())
    const cutShort = script?.cutShort()
    if (cutShort !== undefined) throw cutShort
  } catch (error) {
    throw await restoreFailure(target, error, watch)
  } finally {
    watch?.stop()
    archiveOutput?.destroy()
    script?.script.destroy()
    if (listPath) await rm(listPath, {force: true})
  }
}

export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/**
 * The list of the dump's entries to restore, in a file for `--use-list`, where the target has
 * extensions that another role owns (which the restore leaves alone); undefined where it has none.
 */
async function restoreList(
  target: PostgresTarget,
  dumpPath: string,
  {signal, tempDir}: RestoreOptions,
): Promise<string | undefined> {
  const owned = await run(
    target.tool('psql'),
    ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', EXTENSIONS_NOT_OURS, `--dbname=${target.uri}`],
    {env: target.env(), signal},
  )
  const kept = new Set(owned.split('\n').filter(Boolean))
  if (kept.size === 0) return undefined
  const list = await run(target.tool('pg_restore'), ['--list', dumpPath], {signal})
  const restored = restoreListWithout(list, kept)
  return restored === list ? undefined : writeRestoreList(tempDir, restored)
}

/** Why a restore failed, in words that say what to do; the transaction was rolled back. */
async function restoreFailure(
  target: PostgresTarget,
  error: unknown,
  watch: LockWatch | undefined,
): Promise<BackupError> {
  const waited = await watch?.outcome()
  if (waited !== undefined) {
    return new BackupError(
      'BACKUP_FAILED',
      `The restore into ${target.location} waited ${waited.seconds} s for a lock held by ${waited.holders}, and was rolled back.`,
      {
        cause: error,
        suggestion:
          'Nothing was changed in the target database. Stop what uses it (the app, its workers, a migration), then run the restore again; DIVIO_BACKUP_STALL_SECONDS sets the wait.',
      },
    )
  }

  const detail = describeToolError(error)
  const tooNew = /unsupported version \((\d+\.\d+)\) in file header/.exec(detail)
  if (tooNew) return olderThanDump(target, tooNew[1], error)
  const extension = /permission denied to create extension "([^"]+)"/.exec(detail)
  return new BackupError('BACKUP_FAILED', `The restore into ${target.location} failed and was rolled back: ${detail}`, {
    cause: error,
    suggestion: extension
      ? `Nothing was changed in the target database. The backup uses the extension ${extension[1]}, which only a superuser may create: ask an administrator to run \`CREATE EXTENSION ${quoteIdentifier(extension[1])};\` in the target database, then run the restore again.`
      : 'Nothing was changed in the target database. Fix the cause above and run the restore again.',
  })
}

/** pg_restore is older than the pg_dump that wrote the archive: which to install. */
async function olderThanDump(target: PostgresTarget, archiveVersion: string, cause: unknown): Promise<BackupError> {
  const version = await run(target.tool('pg_restore'), ['--version']).catch(() => '')
  const major = /\s(\d+)(\.\d+)*\s*$/.exec(version.trim())?.[1]
  return new BackupError(
    'BACKUP_FAILED',
    `${major === undefined ? 'This pg_restore' : `pg_restore ${major}`} cannot read the dump: a newer pg_dump wrote it (archive format ${archiveVersion}). Nothing was changed in ${target.location}.`,
    {
      cause,
      suggestion:
        'Install the PostgreSQL client of the server the backup was taken from, or newer (`divio app backup info ID` shows its version beside the engine), or point DIVIO_BACKUP_PG_BINDIR at its bin folder.',
    },
  )
}
