import {randomBytes} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import {join} from 'node:path'
import {Duplex, PassThrough, Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {HashingStream} from '../archive/hash.js'
import {createListingFile} from '../archive/listing.js'
import {createMediaTar} from '../archive/media-tar.js'
import {createSealStream, startSealWorker} from '../archive/seal.js'
import {BackupView} from '../domain/backup.js'
import {newBackupId} from '../domain/ids.js'
import {
  DatabaseComponent,
  Manifest,
  MANIFEST_NAME,
  MANIFEST_SCHEMA_VERSION,
  MediaComponent,
  StoredObject,
  Trigger,
} from '../domain/manifest.js'
import {BackupError, describeIoError} from '../errors.js'
import {MemoryPacer} from '../lib/memory.js'
import {through} from '../lib/process.js'
import {databaseProviderFor} from '../providers/database/index.js'
import {mediaProviderFor} from '../providers/media/index.js'
import {objectKey} from './catalog.js'
import {BackupContext, Progress} from './context.js'
import {listBackups} from './list.js'
import {putSmallObject} from './objects.js'
import {PruneDecision, retentionAfterCreate} from './retention.js'

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
  const {env, reporter, signal, store} = context
  const wantDatabase = options.database && env.database !== undefined
  const wantMedia = options.media && env.media !== undefined
  if (!wantDatabase && !wantMedia) throw nothingToBackUp(context, options)
  // Only stores that take data at disk speed encrypt on a second thread (see Store.local).
  if (store.local) startSealWorker()

  const recipients = await context.keys.recipients(context.now(), (path, recipient) => {
    reporter.notice(
      [
        '',
        '!!! A new encryption key was created for your backups.',
        `!!! Secret key: ${path} (mode 0600). Public key: ${recipient}`,
        '!!! Without this file the backups cannot be decrypted. Copy it somewhere safe now,',
        '!!! away from this machine, for example into a password manager.',
        '',
      ].join('\n'),
    )
  })

  const createdAt = context.now()
  const id = newBackupId(createdAt, randomBytes(6))
  const written: string[] = []
  const tempDir = await mkdtemp(join(context.tempRoot, 'divio-backup-'))
  const key = (name: string) => objectKey(env.app, env.name, id, name)
  const put = async (
    name: string,
    source: Readable,
    progress: Progress,
    compression: 'none' | 'zstd' = 'none',
  ): Promise<{object: StoredObject; plaintext: {bytes: number; sha256: string}}> => {
    const pacer = new MemoryPacer()
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        progress.advance(chunk.length)
        pacer.advance(chunk.length)
        callback(null, chunk)
      },
    })
    written.push(key(name))
    // Compressed data is hashed before it leaves for zstd; otherwise the seal stream hashes its input.
    const plain = compression === 'zstd' ? new HashingStream() : undefined
    const seal = createSealStream(recipients.publicKeys, {
      hashPlaintext: plain === undefined,
      offThread: store.local,
    })
    const output = new PassThrough({highWaterMark: 256 * 1024})
    const [piped, stored] = await Promise.allSettled([
      plain ? pipeline(source, plain, meter, compressor(), seal, output) : pipeline(source, meter, seal, output),
      store.put(key(name), output, {signal}),
    ])
    // A failing side makes the other report only a premature close: report the error that is the cause.
    const errors = [stored, piped].flatMap((result) => (result.status === 'rejected' ? [result.reason as unknown] : []))
    if (errors.length > 0 || stored.status === 'rejected')
      throw errors.find((error) => !isPrematureClose(error)) ?? errors[0]
    const sealed = await seal.result
    const {bytes} = stored.value
    progress.done()
    if (bytes !== sealed.sealed.bytes)
      throw new Error(`${name}: the store accepted ${bytes} bytes of ${sealed.sealed.bytes}`)
    const plaintext = plain ? {bytes: plain.bytes, sha256: plain.sha256} : sealed.plaintext
    return {
      object: {bytes, name, sha256: sealed.sealed.sha256},
      plaintext: {bytes: plaintext.bytes, sha256: plaintext.sha256!},
    }
  }

  try {
    const components: Manifest['components'] = {}
    if (wantDatabase) components.database = await backUpDatabase(context, tempDir, put)
    if (wantMedia) components.media = await backUpMedia(context, tempDir, put)
    signal.throwIfAborted()
    const manifest: Manifest = {
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
    // The commit point: before this write the backup does not exist; after it, it is complete.
    await putSmallObject(store, key(MANIFEST_NAME), `${JSON.stringify(manifest, null, 2)}\n`)
    const backups = await listBackups(context, {all: false})
    const view = backups.find((backup) => backup.id === id)
    if (view === undefined)
      throw new BackupError('STORE_UNAVAILABLE', `Backup ${id} was written but cannot be listed back.`)
    return view
  } catch (error) {
    const leftovers = await removeObjects(context, written)
    throw failure(error, id, leftovers, signal)
  } finally {
    await rm(tempDir, {force: true, recursive: true})
  }
}

type Put = (
  name: string,
  source: Readable,
  progress: Progress,
  compression?: 'none' | 'zstd',
) => Promise<{object: StoredObject; plaintext: {bytes: number; sha256: string}}>

async function backUpDatabase(context: BackupContext, tempDir: string, put: Put): Promise<DatabaseComponent> {
  const provider = databaseProviderFor(context.env.database!)
  const snapshot = await provider.snapshot({signal: context.signal, tempDir})
  try {
    const stored = await put(
      `database.${snapshot.extension}.age`,
      snapshot.stream,
      context.reporter.progress('database'),
      snapshot.compression,
    )
    return {
      compression: snapshot.compression,
      engine: provider.engine,
      format: snapshot.format,
      ...stored,
      ...(snapshot.serverVersion ? {serverVersion: snapshot.serverVersion} : {}),
    }
  } finally {
    await snapshot.cleanup()
  }
}

async function backUpMedia(context: BackupContext, tempDir: string, put: Put): Promise<MediaComponent> {
  const provider = mediaProviderFor(context.env.media!)
  const listingSink = createListingFile(tempDir)
  const entries = provider.entries({
    onSkip: (path, why) => context.reporter.notice(`warning: media ${JSON.stringify(path)} skipped: ${why}`),
    signal: context.signal,
  })
  const {stream, summary} = createMediaTar(entries, listingSink)
  const archive = await put('media.tar.age', stream, context.reporter.progress('media'))
  const {files, totalFileBytes} = await summary
  const listing = await put(
    'media.manifest.json.age',
    createReadStream(join(tempDir, 'MANIFEST.json')),
    context.reporter.progress('media listing'),
  )
  return {compression: 'none', files, listing, ...archive, source: provider.kind, totalFileBytes}
}

async function removeObjects(context: BackupContext, keys: readonly string[]): Promise<string[]> {
  const leftovers: string[] = []
  for (const key of keys) {
    try {
      await context.store.delete(key)
    } catch {
      leftovers.push(key)
    }
  }

  return leftovers
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

/** zstd level 3 (its default), through the system binary: the output is a standard .zst that `zstd -d` reads. */
function compressor(): Duplex {
  return through('zstd', ['-q', '-c', '-3', '-T1'])
}

function isPrematureClose(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ERR_STREAM_PREMATURE_CLOSE'
}

/** `create` --json: the backup object, plus what the trigger's retention policy removed afterwards. */
export interface TakeBackupResult extends BackupView {
  removedByRetention: PruneDecision[]
}

/** Takes a backup and then, only because it succeeded, applies the retention policy of its trigger. */
export async function takeBackup(context: BackupContext, options: CreateOptions): Promise<TakeBackupResult> {
  const view = await createBackup(context, options)
  try {
    return {...view, removedByRetention: await retentionAfterCreate(context, options.trigger)}
  } catch (error) {
    throw new BackupError(
      'BACKUP_FAILED',
      `Backup ${view.id} is complete, but applying retention afterwards failed: ${(error as Error).message}`,
      {
        cause: error,
        suggestion:
          'The new backup is safe. Run `divio app backup prune --dry-run` to see what retention would do, then prune.',
      },
    )
  }
}
