import {DatabaseSource} from '../../config/dsn.js'
import {MysqlProvider} from './mysql.js'
import {DatabaseProvider} from './port.js'
import {PostgresProvider} from './postgres.js'
import {SqliteProvider} from './sqlite.js'

export function databaseProviderFor(source: DatabaseSource): DatabaseProvider {
  switch (source.engine) {
    case 'mysql': {
      return new MysqlProvider(source.url, process.env.DIVIO_BACKUP_MYSQL_BINDIR || undefined)
    }

    case 'postgres': {
      return new PostgresProvider(source.url, process.env.DIVIO_BACKUP_PG_BINDIR || undefined)
    }

    case 'sqlite': {
      return new SqliteProvider(source.path)
    }
  }
}
