import {join} from 'node:path'

import {DatabaseComponent} from '../../domain/manifest.js'
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
): Promise<ScratchDatabase> {
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
