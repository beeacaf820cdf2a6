import {join} from 'node:path'

import {DatabaseComponent} from '../../domain/manifest.js'
import {BackupError} from '../../errors.js'
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
      throw cannotDrill(database.engine)
    }

    case 'postgres': {
      return postgresScratch(join(paths.scratch, 'postgres'), paths.dumpPath, signal)
    }

    case 'sqlite': {
      return sqliteScratch(paths.dumpPath, signal)
    }
  }
}

/** Whether a drill can restore this engine's dumps: checked before anything is downloaded. */
export function assertDrillable(database: DatabaseComponent | undefined): void {
  if (database?.engine === 'mysql') throw cannotDrill(database.engine)
}

function cannotDrill(engine: string): BackupError {
  return new BackupError(
    'USAGE',
    `drill cannot restore a ${engine === 'mysql' ? 'MySQL/MariaDB' : engine} backup yet.`,
    {
      suggestion: 'Check it with `divio app backup verify`, which reads every byte against the signed manifest.',
    },
  )
}
