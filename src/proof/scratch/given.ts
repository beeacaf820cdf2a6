import {MysqlProvider} from '../../providers/database/mysql.js'
import {PostgresProvider} from '../../providers/database/postgres.js'
import {ScratchDatabase} from './port.js'

/**
 * A scratch database the user gives (`--scratch-url`), on a server of their own: for machines without
 * the server programs. The drill restores into it as `restore` would (PostgreSQL replaces what it
 * holds, in one transaction; MariaDB replays the dump, so it should be empty), and leaves the data
 * there, since the database is not the drill's to drop.
 */
export async function givenScratch(
  url: URL,
  engine: 'mysql' | 'postgres',
  paths: {dumpPath: string; scratch: string},
  signal: AbortSignal,
): Promise<ScratchDatabase> {
  if (engine === 'postgres') {
    const provider = new PostgresProvider(url, process.env.DIVIO_BACKUP_PG_BINDIR || undefined)
    await provider.restore(paths.dumpPath, {signal, tempDir: paths.scratch})
    return {
      async close() {},
      facts: () => provider.facts(signal),
      firstValue: (sql) => provider.firstValue(sql, signal),
      async integrity() {
        const result = await provider.amcheck(signal)
        return result === undefined ? undefined : {result, tool: 'pg_amcheck'}
      },
      tools: {postgres: `server of ${provider.location}`},
    }
  }

  const provider = new MysqlProvider(url, process.env.DIVIO_BACKUP_MYSQL_BINDIR || undefined)
  await provider.restore(paths.dumpPath, {keepDefiners: true, signal, tempDir: paths.scratch})
  return {
    async close() {},
    facts: () => provider.facts(paths.scratch, signal),
    firstValue: (sql) => provider.firstValue(sql, paths.scratch, signal),
    async integrity() {
      return {result: await provider.check(paths.scratch, signal), tool: 'mariadb-check'}
    },
    tools: {mariadb: `server of ${provider.location}`},
  }
}
