import {DatabaseSource, redactDsn} from '../../config/dsn.js'
import {BackupError} from '../../errors.js'
import {DatabaseProvider} from './port.js'
import {PostgresProvider} from './postgres.js'
import {SqliteProvider} from './sqlite.js'

export function databaseProviderFor(source: DatabaseSource): DatabaseProvider {
  switch (source.engine) {
    case 'postgres': {
      return new PostgresProvider(source.url, process.env.DIVIO_BACKUP_PG_BINDIR || undefined)
    }

    case 'sqlite': {
      return new SqliteProvider(source.path)
    }

    default: {
      throw new BackupError(
        'CONFIG_INVALID',
        `${source.engine} databases (${redactDsn(source.url.href)}) are not supported by this version.`,
        {
          suggestion: 'Use an SQLite database for now, or back up media only with --media-only.',
        },
      )
    }
  }
}
