import Database from 'better-sqlite3'
import {open, rm, stat} from 'node:fs/promises'
import {join} from 'node:path'

import {BackupError} from '../../errors.js'
import {DatabaseProvider, DatabaseSnapshot} from './port.js'

const READ_CHUNK = 1024 * 1024

/**
 * SQLite through its online backup API: the copy is consistent even while the app writes, and it is
 * an ordinary database file that `sqlite3` opens. The copy is checked with `PRAGMA quick_check` before
 * it is streamed, so a damaged source fails the backup instead of being preserved as if it were good.
 */
export class SqliteProvider implements DatabaseProvider {
  readonly engine = 'sqlite'
  readonly location: string

  constructor(private readonly path: string) {
    this.location = path
  }

  async snapshot({tempDir}: {signal: AbortSignal; tempDir: string}): Promise<DatabaseSnapshot> {
    const info = await stat(this.path).catch(() => {})
    if (!info?.isFile()) {
      throw new BackupError('SOURCE_UNAVAILABLE', `The SQLite database ${this.path} does not exist.`, {
        suggestion: 'Check DATABASE_URL (or "database" in the config), or use --media-only.',
      })
    }

    const copyPath = join(tempDir, 'database.sqlite3')
    let source: Database.Database | undefined
    try {
      source = new Database(this.path, {fileMustExist: true, readonly: true})
      await source.backup(copyPath)
    } catch (error) {
      await rm(copyPath, {force: true})
      throw new BackupError(
        'SOURCE_UNAVAILABLE',
        `Cannot read the SQLite database ${this.path}: ${(error as Error).message}.`,
        {
          cause: error,
          suggestion: 'Check that the file is an SQLite database and readable by this user.',
        },
      )
    } finally {
      source?.close()
    }

    const check = new Database(copyPath, {readonly: true})
    try {
      const result = check.pragma('quick_check', {simple: true})
      if (result !== 'ok') {
        throw new BackupError(
          'BACKUP_FAILED',
          `The SQLite database ${this.path} failed its integrity check: ${String(result)}.`,
          {
            suggestion: 'Repair the database (for example with sqlite3 ".recover") before backing it up.',
          },
        )
      }
    } finally {
      check.close()
    }

    const handle = await open(copyPath)
    return {
      async cleanup() {
        await handle.close().catch(() => {})
        await rm(copyPath, {force: true})
      },
      compression: 'none',
      extension: 'sqlite3',
      format: 'sqlite3',
      stream: handle.createReadStream({autoClose: false, highWaterMark: READ_CHUNK}),
    }
  }
}
