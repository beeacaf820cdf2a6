import {Readable} from 'node:stream'

import {DatabaseFacts} from '../../domain/manifest.js'

/** A consistent copy of a database, as a stream in the engine's own restorable format. */
export interface DatabaseSnapshot {
  /** The size of the stream in bytes, where it is known before streaming (an SQLite copy). */
  readonly bytes?: number
  /** Releases temp files and processes; safe to call more than once, and after a failure. */
  cleanup(): Promise<void>
  /** zstd where it pays (SQL text); custom-format dumps are compressed already. */
  readonly compression: 'none' | 'zstd'
  /** The engine's own format; `extension` names the stored object (`database.<extension>.age`). */
  readonly extension: 'dump' | 'sql.zst' | 'sqlite3' | 'sqlite3.zst'
  /**
   * What the database held, counted in the dump's own snapshot; absent where counting is off. Called
   * once the stream has ended: counting may run alongside the dump, in the same snapshot.
   */
  readonly facts?: () => Promise<DatabaseFacts>
  readonly format: 'custom' | 'sql' | 'sqlite3'
  readonly serverVersion?: string
  /**
   * The dump. It ends only when the dump is complete and verified; any failure of the engine or
   * its tool (non-zero exit, short output) makes it error instead of ending.
   */
  readonly stream: Readable
}

/**
 * Snapshots one kind of database. Contract:
 * - `snapshot` rejects with a BackupError (code SOURCE_UNAVAILABLE) when the database cannot be
 *   reached or read, with a message that names the database without its password.
 * - Credentials never appear in argv, messages or logs.
 */
export interface RestoreOptions {
  /**
   * Keeps the definers a MySQL dump names for its triggers, views, routines and events, which only a
   * user with SUPER or SET USER may do: for a drill's own scratch server, where root restores and the
   * schema is compared with the one recorded, definers included. Otherwise the user who restores
   * becomes their definer, as PostgreSQL's restore (`--no-owner`) makes it every object's owner.
   */
  keepDefiners?: boolean
  lockWaitMs?: number
  signal?: AbortSignal
  tempDir: string
}

export interface RestorableOptions {
  signal?: AbortSignal
  /** A private folder for what the check needs to write (a MySQL client's options file). */
  tempDir: string
}

export interface SnapshotOptions {
  countRows?: boolean
  /**
   * How long the dump may wait for a lock on a table that another session holds exclusively (a
   * migration's ALTER TABLE), before it fails naming the table; where the dump tool can say.
   */
  lockWaitMs?: number
  signal: AbortSignal
  tempDir: string
}

export interface DatabaseProvider {
  readonly engine: 'mysql' | 'postgres' | 'sqlite'
  /** The location with any password replaced by `***`, for messages. */
  readonly location: string
  /**
   * Refuses a target that a restore cannot fill now, before the restore takes its safety backup or
   * changes anything, with a BackupError (exit 7) that says what to do: an SQLite file that another
   * process has open (`restore` checks again); a server that cannot be reached or logged in to, or a
   * database that does not exist on it (a new server: the restore fills a database, it does not
   * create one).
   */
  restorable(options: RestorableOptions): Promise<void>
  /**
   * Replaces the database's contents with the dump at `dumpPath`, a file in this provider's format
   * (uncompressed; a file, since PostgreSQL reads its table of contents before it restores). PostgreSQL
   * applies it in one transaction and SQLite swaps the file atomically, so a failure leaves the database
   * as it was; MySQL stops at the first error (statements before it stay applied). A restore that
   * succeeds leaves the backup's tables, views and sequences, and none added since (on PostgreSQL, of
   * those the user owns). Rejects with a BackupError that says which of these happened.
   *
   * `lockWaitMs`: how long a statement may wait for a lock that another session holds (the app, a
   * worker, a migration) before the restore fails, instead of waiting with it for good.
   */
  restore(dumpPath: string, options: RestoreOptions): Promise<void>
  /** `countRows: false` leaves out the facts (config `database.facts: false`): for very large databases. */
  snapshot(options: SnapshotOptions): Promise<DatabaseSnapshot>
}
