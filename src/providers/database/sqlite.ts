import {randomBytes} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {open, rename, rm, stat, writeFile} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {pipeline} from 'node:stream/promises'

import {BackupError, describeCause, ExitCode, targetFailure, tempFolderFailure} from '../../errors.js'
import {createFileSink} from '../../lib/file-sink.js'
import {syncPath} from '../../lib/fsync.js'
import {startReaper} from '../../lib/guards.js'
import {isMountPoint} from '../../lib/mounts.js'
import {processesHolding} from '../../lib/open-files.js'
import {giveTo, restoredOwner} from '../../lib/owner.js'
import {restoreTarget} from '../../lib/paths.js'
import {DEFAULT_STALL_SECONDS} from '../../lib/stall.js'
import {canCompress} from '../../lib/zstd.js'
import {sqliteFacts} from './facts.js'
import {DatabaseProvider, DatabaseSnapshot, RestoreOptions, SnapshotOptions} from './port.js'
import {isLocked, sqliteEngine} from './sqlite-engine.js'

const READ_CHUNK = 1024 * 1024
/** How long a copy waits for a lock that another connection holds, where the caller does not say: as a backup's would. */
const LOCK_WAIT_MS = (DEFAULT_STALL_SECONDS * 1000) / 2

/**
 * The restore's guard (see restore): $1 the restored copy, then each companion's aside and live names.
 * The copy still there means the swap did not happen: the old database gets its -wal and -shm back.
 */
export const SWAP_GUARD = [
  'if [ -e "$1" ]; then',
  '  rm -f -- "$1"',
  '  if [ -e "$2" ]; then mv -f -- "$2" "$3"; fi',
  '  if [ -e "$4" ]; then mv -f -- "$4" "$5"; fi',
  'else',
  '  rm -f -- "$2" "$4"',
  'fi',
].join('\n')

/** Renames each companion that exists to its aside name, adding it to `moved` (also when a later one fails). */
async function moveAside<T extends {aside: string; live: string}>(companions: readonly T[], moved: T[]): Promise<void> {
  for (const companion of companions) {
    try {
      await rename(companion.live, companion.aside)
      moved.push(companion)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    }
  }
}

/**
 * An SQLite file that another process has open is not replaced: that process (the app, a worker, a
 * shell) would go on reading and writing the file it opened, which the restore renames away and
 * removes, until it reopens it; what it writes meanwhile is lost, and the app serves the old data.
 * A restore into a running PostgreSQL or MySQL server does not have this problem: the server is the
 * one process that holds the files.
 */
function refuseWhileOpen(path: string, target: string): void {
  const holders = processesHolding([target, `${target}-wal`, `${target}-shm`])
  if (holders.length === 0) return
  const named = holders
    .slice(0, 3)
    .map(({command, pid}) => `${pid} (${command})`)
    .join(', ')
  const more = holders.length > 3 ? ` and ${holders.length - 3} more` : ''
  throw new BackupError(
    'ENV_BUSY',
    `The database ${path} is open in process ${named}${more}: it would go on using the file the restore replaces, and what it writes would be lost.`,
    {
      exitCode: ExitCode.Unavailable,
      suggestion:
        'Stop the app and its workers (anything that has the database open), then run the restore again. Nothing was changed.',
    },
  )
}

/**
 * SQLite through its online backup API (node:sqlite, better-sqlite3 or the sqlite3 program; see
 * sqlite-engine.ts): the copy is consistent even while the app writes, and it is an ordinary database
 * file that `sqlite3` opens. The copy is checked with `PRAGMA quick_check` before
 * it is streamed, so a damaged source fails the backup instead of being preserved as if it were good.
 */
export class SqliteProvider implements DatabaseProvider {
  readonly engine = 'sqlite'
  readonly location: string

  constructor(private readonly path: string) {
    this.location = path
  }

  async restorable(): Promise<void> {
    refuseWhileOpen(this.path, await restoreTarget(this.path, 'The database file'))
  }

  /**
   * Writes the restored database beside the target, checks it, and renames it over the target: readers
   * see the old file or the new one, never a mix. The app should be stopped while its database is
   * replaced. Where the configured path is a symlink, the target is the file it leads to (which may
   * not exist yet), and the link stays.
   *
   * The old file's -wal and -shm belong to the old database, and SQLite replays a -wal into whatever
   * file bears its name: left beside the new file for a moment, by a kill or a power loss between the
   * swap and their removal, they would be replayed into the restored database and corrupt it. So they
   * are moved aside under names of their own before the swap, and removed after it. A guard puts them
   * back if this process dies before the swap (the restored copy is still there), and removes them if
   * it dies after.
   */
  async restore(dumpPath: string, options: RestoreOptions): Promise<void> {
    // The file itself where the path is a link (to a volume, say): SQLite keeps the -wal beside it too.
    const target = await restoreTarget(this.path, 'The database file')
    // Again: the app may have been started since the restore began.
    refuseWhileOpen(this.path, target)
    const folder = dirname(target)
    const tag = randomBytes(6).toString('hex')
    const fresh = join(folder, `.${basename(target)}.restore-${tag}`)
    // A file mounted over the database's path (a container's single-file volume) cannot be renamed
    // over: the restored copy is written into it by SQLite's own backup, in one transaction, which
    // SQLite rolls back from its journal if it is cut short. Its -wal and -shm are SQLite's to keep.
    const inPlace = await isMountPoint(target)
    const companions = (inPlace ? [] : ['-wal', '-shm']).map((suffix) => ({
      aside: join(folder, `.${basename(target)}${suffix}.replaced-${tag}`),
      live: `${target}${suffix}`,
    }))
    const mode = (await stat(target).catch(() => {}))?.mode ?? 0o644
    // A plaintext copy beside the target, which no later command sweeps: its guard removes it if this
    // process dies before the rename (SIGKILL runs no cleanup); after the rename the name is free.
    const guard = startReaper(SWAP_GUARD, [fresh, ...companions.flatMap(({aside, live}) => [aside, live])])
    const movedAside: typeof companions = []
    try {
      await pipeline(
        createReadStream(dumpPath),
        createFileSink(fresh, {flags: 'wx', mode: mode % 0o1000, syncs: true}),
        {
          signal: options.signal,
        },
      )
      // The database's owner, not root's, where root restores: the app must go on writing it.
      const owner = await restoredOwner(target)
      if (owner) await giveTo(fresh, owner)
      await syncPath(fresh)
      const result = await (await sqliteEngine()).quickCheck(fresh, {signal: options.signal})
      if (result !== 'ok') throw new Error(`quick_check says ${result}`)

      await moveAside(companions, movedAside)
      await syncPath(folder)
      await (inPlace
        ? (await sqliteEngine()).backup(fresh, target, {
            busyTimeoutMs: options.lockWaitMs ?? LOCK_WAIT_MS,
            signal: options.signal,
          })
        : rename(fresh, target))
    } catch (error) {
      const stranded: string[] = []
      for (const {aside, live} of movedAside) await rename(aside, live).catch(() => stranded.push(aside))
      await rm(fresh, {force: true})
      // A companion that could not go back keeps its name, and the guard must not remove it.
      if (stranded.length === 0) guard.release()
      else guard.dismiss()
      if (stranded.length > 0) {
        throw new BackupError(
          'BACKUP_FAILED',
          `The restore of ${this.path} failed before the swap (${describeCause(error)}), and ${stranded.join(' and ')} could not be renamed back.`,
          {
            cause: error,
            suggestion: `Rename ${stranded.join(' and ')} back (without the leading dot and the .replaced-… ending) before the app opens the database.`,
          },
        )
      }

      const failure = targetFailure(error, `the restored database beside ${target}`)
      if (failure)
        throw new BackupError(failure.code, `${failure.message} The database file was not changed.`, {
          cause: error,
          suggestion: failure.suggestion,
        })
      throw new BackupError(
        'BACKUP_FAILED',
        `The restore of ${this.path} failed before the swap: ${describeCause(error)}.`,
        {cause: error, suggestion: 'The database file was not changed. Fix the cause above and run the restore again.'},
      )
    }

    await Promise.all(movedAside.map(({aside}) => rm(aside, {force: true})))
    // Copied into the mounted file, the restored copy is left over: removed here, before the command
    // says it is done (the guard's removal would come a moment after).
    if (inPlace) await rm(fresh, {force: true})
    guard.release()
    await syncPath(folder)
  }

  async snapshot({
    countRows = true,
    lockWaitMs = LOCK_WAIT_MS,
    signal,
    tempDir,
  }: SnapshotOptions): Promise<DatabaseSnapshot> {
    const info = await stat(this.path).catch(() => {})
    if (!info?.isFile()) {
      throw new BackupError('SOURCE_UNAVAILABLE', `The SQLite database ${this.path} does not exist.`, {
        suggestion: 'Check DATABASE_URL (or "database" in the config), or use --media-only.',
      })
    }

    const copyPath = join(tempDir, 'database.sqlite3')
    // Created first, so that SQLite writes the plaintext copy into a file only its owner can read.
    await writeFile(copyPath, '', {flag: 'wx', mode: 0o600}).catch((error: unknown) => {
      throw stagingFailure(error, tempDir)
    })
    const engine = await sqliteEngine()
    try {
      await engine.backup(this.path, copyPath, {busyTimeoutMs: lockWaitMs, signal})
    } catch (error) {
      await rm(copyPath, {force: true})
      if (engine.isWriteFailure(error)) throw stagingFailure(error, tempDir)
      if (isLocked(error)) {
        throw new BackupError(
          'SOURCE_UNAVAILABLE',
          `The SQLite database ${this.path} stayed locked by another connection for ${Math.round(lockWaitMs / 1000)} s: something held it the whole time (a migration, a VACUUM, a long transaction).`,
          {
            cause: error,
            suggestion:
              "Take the backup once that is done (the app's own commits only make it wait a moment each). DIVIO_BACKUP_STALL_SECONDS (twice the wait) sets how long a backup waits.",
          },
        )
      }

      throw new BackupError(
        'SOURCE_UNAVAILABLE',
        `Cannot read the SQLite database ${this.path}: ${(error as Error).message}.`,
        {
          cause: error,
          suggestion: 'Check that the file is an SQLite database and readable by this user.',
        },
      )
    }

    const result = await engine.quickCheck(copyPath, {signal}).catch(async (error: unknown) => {
      await rm(copyPath, {force: true})
      throw error
    })
    if (result !== 'ok') {
      await rm(copyPath, {force: true})
      throw new BackupError(
        'BACKUP_FAILED',
        `The SQLite database ${this.path} failed its integrity check: ${result}.`,
        {
          suggestion: 'Repair the database (for example with sqlite3 ".recover") before backing it up.',
        },
      )
    }

    // Counted on the copy: the same state as the file that is stored, whatever the app writes meanwhile.
    const facts = countRows
      ? await sqliteFacts(engine, copyPath, {signal}).catch(async (error: unknown) => {
          await rm(copyPath, {force: true})
          throw error
        })
      : undefined
    const handle = await open(copyPath)
    return {
      bytes: (await handle.stat()).size,
      async cleanup() {
        await handle.close().catch(() => {})
        await rm(copyPath, {force: true})
      },
      // A database file is mostly free pages, indexes and text: zstd commonly halves it.
      ...(canCompress()
        ? {compression: 'zstd', extension: 'sqlite3.zst'}
        : {compression: 'none', extension: 'sqlite3'}),
      ...(facts ? {facts: async () => facts} : {}),
      format: 'sqlite3',
      stream: handle.createReadStream({autoClose: false, highWaterMark: READ_CHUNK}),
    }
  }
}

function stagingFailure(error: unknown, tempDir: string): BackupError {
  return tempFolderFailure(error, 'the database snapshot', tempDir, 'a copy of the database')
}
