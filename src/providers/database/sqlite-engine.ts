import {createRequire} from 'node:module'
import {basename, dirname, resolve} from 'node:path'
import {performance} from 'node:perf_hooks'
import {setTimeout as sleep} from 'node:timers/promises'

import {BackupError} from '../../errors.js'
import {ProcessError, run} from '../../lib/process.js'

/**
 * What the SQLite provider needs from an SQLite implementation: an online backup (a consistent copy
 * while the app writes) and an integrity check. Three implementations, so that no compiler is needed:
 * - `node`: node:sqlite, built into Node.js from 22.16 (its `backup()` is SQLite's online backup API);
 * - `better-sqlite3`: the optional native module, where it is installed and built for this Node.js;
 * - `cli`: the stock `sqlite3` program's `.backup`, which uses the same online backup API.
 * The first that works on this machine is used; `DIVIO_BACKUP_SQLITE` names one to force it.
 */
export interface SqliteEngine {
  /**
   * Copies the database at `source` into `destination`, an existing empty file (created beforehand so
   * that its mode is the caller's). Rejects with the engine's error; `isWriteFailure` tells whether
   * the destination, rather than the source, was at fault.
   */
  backup(source: string, destination: string, options: BackupOptions): Promise<void>
  /** Whether a failure of `backup` was in writing the copy (a full or unwritable folder). */
  isWriteFailure(error: unknown): boolean
  readonly name: SqliteEngineName
  /** `PRAGMA quick_check` on a database file: 'ok', or SQLite's description of the damage. Opens it read-only. */
  quickCheck(path: string, options: {signal?: AbortSignal}): Promise<string>
  /** The rows of one read-only query, each as column → value (numbers as numbers, text as text). */
  rows(path: string, sql: string, options: {signal?: AbortSignal}): Promise<Record<string, unknown>[]>
}

export interface BackupOptions {
  /**
   * How long the copy waits for a lock that the app holds (its commits, in rollback-journal mode),
   * before it fails with SQLite's "database is locked" (see isLocked): the app's commits take
   * milliseconds; only something that holds the database longer (a migration, a VACUUM) makes it wait.
   */
  busyTimeoutMs: number
  signal?: AbortSignal
}

/** Whether a failure of `backup` was SQLite's: another connection held the database past the busy timeout. */
export function isLocked(error: unknown): boolean {
  return /database is locked|SQLITE_BUSY/i.test(error instanceof Error ? error.message : String(error))
}

export type SqliteEngineName = 'better-sqlite3' | 'cli' | 'node'

export const SQLITE_ENGINES: readonly SqliteEngineName[] = ['node', 'better-sqlite3', 'cli']

const require = createRequire(import.meta.url)

/**
 * The whole copy is taken in one read transaction, opened on the connection that copies. SQLite's
 * online backup, run in steps outside one, starts over whenever another connection commits: a database
 * that the app writes to more often than a copy takes (a few times a second, for a few hundred MB) was
 * copied again and again, for good; and in rollback-journal mode a step that met a commit failed the
 * backup as locked. In one read transaction the copy is one snapshot: in WAL mode the app's writes go
 * on beside it; in rollback-journal mode they wait for it, as for any reader.
 */
const SNAPSHOT_READ = 'SELECT count(*) FROM sqlite_master'
/** How often an in-process engine tries again for a lock that another connection holds. */
const LOCK_POLL_MS = 25

/**
 * Opens the copy's read transaction on an in-process connection. The lock is waited for here, between
 * tries, and not by SQLite's busy handler, which sleeps inside the call: on this thread, a wait of a
 * minute that no signal could end.
 */
async function beginSnapshot(
  database: {exec(sql: string): void; prepare(sql: string): {all(): unknown[]}},
  {busyTimeoutMs, signal}: BackupOptions,
): Promise<void> {
  database.exec('PRAGMA busy_timeout = 0; BEGIN')
  const deadline = performance.now() + busyTimeoutMs
  for (;;) {
    try {
      // Prepared each time: preparing reads the schema, which takes the lock too.
      database.prepare(SNAPSHOT_READ).all()
      return
    } catch (error) {
      if (!isLocked(error) || performance.now() >= deadline) throw error
    }

    await sleep(LOCK_POLL_MS, undefined, {signal})
  }
}

/** The same for the sqlite3 program, whose busy handler may wait: it is a process of its own, which a signal stops. */
function snapshotCommands(busyTimeoutMs: number): string[] {
  const sql = `PRAGMA busy_timeout = ${Math.round(busyTimeoutMs)}; BEGIN; ${SNAPSHOT_READ};`
  return ['-cmd', '.output /dev/null', '-cmd', sql, '-cmd', '.output']
}

/** SQLite's codes for a copy it could not write: the destination's fault, not the database's. */
const WRITE_FAILURE_CODES = new Set([
  'ENOSPC',
  'SQLITE_CANTOPEN',
  'SQLITE_FULL',
  'SQLITE_IOERR_FSYNC',
  'SQLITE_IOERR_WRITE',
])

interface NodeSqlite {
  backup(source: NodeSqliteDatabase, path: string): Promise<number>
  DatabaseSync: new (path: string, options?: {readOnly?: boolean}) => NodeSqliteDatabase
}
interface NodeSqliteDatabase {
  close(): void
  exec(sql: string): void
  prepare(sql: string): {all(): Record<string, unknown>[]; get(): Record<string, unknown> | undefined}
}

function nodeEngine(): SqliteEngine | undefined {
  const sqlite = loadQuietly<NodeSqlite>('node:sqlite')
  if (typeof sqlite?.backup !== 'function') return undefined
  return {
    async backup(source, destination, options) {
      const database = new sqlite.DatabaseSync(source, {readOnly: true})
      try {
        await beginSnapshot(database, options)
        await sqlite.backup(database, destination)
      } finally {
        database.close()
      }
    },
    isWriteFailure: (error) =>
      isWriteCode(error) || /disk is full|unable to open database file/i.test(messageOf(error)),
    name: 'node',
    async quickCheck(path) {
      const database = new sqlite.DatabaseSync(path, {readOnly: true})
      try {
        return String(Object.values(database.prepare('PRAGMA quick_check').get() ?? {})[0])
      } finally {
        database.close()
      }
    },
    async rows(path, sql) {
      const database = new sqlite.DatabaseSync(path, {readOnly: true})
      try {
        return database.prepare(sql).all()
      } finally {
        database.close()
      }
    },
  }
}

interface BetterSqlite3 {
  new (
    path: string,
    options?: {fileMustExist?: boolean; readonly?: boolean},
  ): {
    backup(path: string): Promise<unknown>
    close(): void
    exec(sql: string): void
    pragma(source: string, options: {simple: true}): unknown
    prepare(sql: string): {all(): Record<string, unknown>[]}
  }
}

function betterSqlite3Engine(): SqliteEngine | undefined {
  const Database = loadQuietly<BetterSqlite3>('better-sqlite3')
  if (Database === undefined) return undefined
  try {
    // Loading the package does not load its compiled part; opening a database does, and fails when it
    // was built for another Node.js (NODE_MODULE_VERSION) or not at all.
    new Database(':memory:').close()
  } catch {
    return undefined
  }

  return {
    async backup(source, destination, options) {
      const database = new Database(source, {fileMustExist: true, readonly: true})
      try {
        await beginSnapshot(database, options)
        await database.backup(destination)
      } finally {
        database.close()
      }
    },
    isWriteFailure: isWriteCode,
    name: 'better-sqlite3',
    async quickCheck(path) {
      const database = new Database(path, {fileMustExist: true, readonly: true})
      try {
        return String(database.pragma('quick_check', {simple: true}))
      } finally {
        database.close()
      }
    },
    async rows(path, sql) {
      const database = new Database(path, {fileMustExist: true, readonly: true})
      try {
        return database.prepare(sql).all()
      } finally {
        database.close()
      }
    },
  }
}

async function cliEngine(): Promise<SqliteEngine | undefined> {
  try {
    await run('sqlite3', ['-version'], {timeoutMs: 10_000})
  } catch {
    return undefined
  }

  return {
    async backup(source, destination, {busyTimeoutMs, signal}) {
      // The destination is named relative to its folder, so that no path needs quoting in a dot-command.
      const snapshot = snapshotCommands(busyTimeoutMs)
      await run(
        'sqlite3',
        ['-batch', '-bail', '-readonly', ...snapshot, resolve(source), `.backup ${basename(destination)}`],
        {cwd: dirname(destination), signal},
      )
    },
    isWriteFailure: (error) =>
      error instanceof ProcessError &&
      /disk is full|disk I\/O error|cannot open "|unable to open database "/i.test(error.message),
    name: 'cli',
    async quickCheck(path, {signal}) {
      return (await run('sqlite3', ['-batch', '-readonly', resolve(path), 'PRAGMA quick_check'], {signal})).trim()
    },
    async rows(path, sql, {signal}) {
      // -json prints nothing at all for no rows, and an array of objects otherwise.
      const output = await run('sqlite3', ['-batch', '-bail', '-readonly', '-json', resolve(path), sql], {signal})
      return output.trim() === '' ? [] : (JSON.parse(output) as Record<string, unknown>[])
    },
  }
}

/**
 * The engines chosen in this process, by the value of `DIVIO_BACKUP_SQLITE` they were chosen for: a
 * host runs many commands in one process, each with its own variables. A failed choice is not kept.
 */
const chosen = new Map<string, Promise<SqliteEngine>>()

/** The SQLite engine of this process: the one `DIVIO_BACKUP_SQLITE` names, else the first that works here. */
export async function sqliteEngine(variables: NodeJS.ProcessEnv = process.env): Promise<SqliteEngine> {
  const forced = variables.DIVIO_BACKUP_SQLITE ?? ''
  let engine = chosen.get(forced)
  if (engine === undefined) {
    engine = chooseEngine(forced || undefined)
    chosen.set(forced, engine)
    engine.catch(() => chosen.delete(forced))
  }

  return engine
}

/** The engine called `name`, or undefined where this machine cannot run it. For tests and `sqliteEngine`. */
export async function loadSqliteEngine(name: SqliteEngineName): Promise<SqliteEngine | undefined> {
  switch (name) {
    case 'better-sqlite3': {
      return betterSqlite3Engine()
    }

    case 'cli': {
      return cliEngine()
    }

    case 'node': {
      return nodeEngine()
    }
  }
}

async function chooseEngine(forced: string | undefined): Promise<SqliteEngine> {
  if (forced) {
    if (!(SQLITE_ENGINES as readonly string[]).includes(forced)) {
      throw new BackupError('CONFIG_INVALID', `DIVIO_BACKUP_SQLITE is "${forced}", which is no SQLite engine.`, {
        suggestion: `Set it to one of ${SQLITE_ENGINES.join(', ')}, or unset it to use the first that works.`,
      })
    }

    const engine = await loadSqliteEngine(forced as SqliteEngineName)
    if (engine) return engine
    throw unavailable(`DIVIO_BACKUP_SQLITE asks for "${forced}", which does not work on this machine.`)
  }

  for (const name of SQLITE_ENGINES) {
    const engine = await loadSqliteEngine(name)
    if (engine) return engine
  }

  throw unavailable('No SQLite engine is available to copy the database.')
}

function unavailable(message: string): BackupError {
  return new BackupError('SOURCE_UNAVAILABLE', message, {
    suggestion:
      'Install the sqlite3 program (apt-get install -y sqlite3), or run on Node.js 22.16 or later, which has SQLite built in.',
  })
}

/**
 * require() that keeps a module's ExperimentalWarning (node:sqlite prints one on Node 22) off the
 * user's terminal, and answers undefined for a module that is not there or does not load.
 */
function loadQuietly<T>(id: string): T | undefined {
  const {emitWarning} = process
  process.emitWarning = ((warning: unknown, ...rest: unknown[]) => {
    const type = typeof rest[0] === 'string' ? rest[0] : (rest[0] as undefined | {type?: string})?.type
    if (type === 'ExperimentalWarning' || (warning as Error)?.name === 'ExperimentalWarning') return
    return (emitWarning as (...args: unknown[]) => void).call(process, warning, ...rest)
  }) as typeof process.emitWarning
  try {
    const loaded = require(id) as T & {default?: T}
    return loaded
  } catch {
    return undefined
  } finally {
    process.emitWarning = emitWarning
  }
}

function isWriteCode(error: unknown): boolean {
  return WRITE_FAILURE_CODES.has(String((error as {code?: unknown}).code ?? ''))
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
