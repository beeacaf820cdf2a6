import {join} from 'node:path'

import {DatabaseSource} from '../../config/dsn.js'
import {DatabaseComponent} from '../../domain/manifest.js'
import {BackupError} from '../../errors.js'
import {givenScratch} from './given.js'
import {mysqlScratch} from './mysql.js'
import {ScratchDatabase} from './port.js'
import {postgresScratch} from './postgres.js'
import {sqliteScratch} from './sqlite.js'

/**
 * The scratch database for a backup's database component, restored from `dumpPath` (as `download`
 * wrote it into the drill's staging folder `scratch`).
 */
export async function openScratch(
  database: DatabaseComponent,
  paths: {dumpPath: string; scratch: string},
  signal: AbortSignal,
  given?: DatabaseSource,
): Promise<ScratchDatabase> {
  if (given !== undefined) {
    if (given.engine === 'sqlite' || given.engine !== database.engine) {
      throw new BackupError(
        'USAGE',
        `--scratch-url names a ${given.engine} database; the backup holds a ${database.engine} one.`,
        {
          suggestion: `Give a ${database.engine} database to restore into, or leave --scratch-url out to let the drill start its own server.`,
        },
      )
    }

    return givenScratch(given.url, given.engine, paths, signal)
  }

  switch (database.engine) {
    case 'mysql': {
      return mysqlScratch(join(paths.scratch, 'mariadb'), paths.dumpPath, signal)
    }

    case 'postgres': {
      return postgresScratch(join(paths.scratch, 'postgres'), paths.dumpPath, signal)
    }

    case 'sqlite': {
      return sqliteScratch(paths.dumpPath, signal)
    }
  }
}
