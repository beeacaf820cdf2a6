import {createReadStream} from 'node:fs'
import {rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {PassThrough, Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {redactDsn} from '../../config/dsn.js'
import {DatabaseFacts} from '../../domain/manifest.js'
import {BackupError} from '../../errors.js'
import {run, streamFrom} from '../../lib/process.js'
import {mapSchemaLines} from './dump-schema-lines.js'
import {describeToolError, dumpStream} from './dump-stream.js'
import {factsOf, mysqlSchemaStatements} from './facts.js'
import {definerAsCurrentUser} from './mysql-definers.js'
import {mysqldumpOptions} from './mysql-dump-options.js'
import {ClientFamily, clientOptions} from './mysql-options-file.js'
import {readsSandboxLine, withoutSandboxLine} from './mysql-sandbox.js'
import {dropStatement, dumpedName} from './mysql-tables.js'
import {DatabaseProvider, DatabaseSnapshot, RestorableOptions, RestoreOptions, SnapshotOptions} from './port.js'

/**
 * MySQL and MariaDB through their own tools: `mariadb-dump` (or `mysqldump`) writes a SQL script that the
 * `mariadb`/`mysql` client replays. Credentials go into a 0600 `--defaults-extra-file`, removed afterwards,
 * never into argv.
 */
export class MysqlProvider implements DatabaseProvider {
  readonly engine = 'mysql'
  readonly location: string
  /** Whose client tools are installed, which the options file is written for. */
  private family: Promise<ClientFamily> | undefined
  /** The programs found, by the names they were asked by (pickToolVersion). */
  private readonly picked = new Map<string, Promise<{path: string; version: string}>>()

  constructor(
    private readonly url: URL,
    /** Folder holding the client tools; PATH when omitted. */
    private readonly binDir?: string,
  ) {
    this.location = redactDsn(url.href)
  }

  private get database(): string {
    return decodeURIComponent(this.url.pathname.replace(/^\//, ''))
  }

  /** `mariadb-check` of every table: 'ok', or the first table it does not call OK. */
  async check(tempDir: string, signal?: AbortSignal): Promise<string> {
    const defaults = await this.writeDefaults(tempDir)
    try {
      const checker = await this.pickTool(['mariadb-check', 'mysqlcheck'])
      const output = await run(checker, [`--defaults-extra-file=${defaults}`, this.database], {signal})
      const bad = output.split('\n').find((line) => line.trim() !== '' && !/\s+OK$/.test(line))
      return bad === undefined ? 'ok' : bad.trim()
    } finally {
      await rm(defaults, {force: true})
    }
  }

  /**
   * Every base table's rows, in a consistent-snapshot transaction of its own, and the schema
   * (`--no-data`): the same queries at backup time and in a drill's scratch server. Marked approximate:
   * mariadb-dump opens its own transaction, which no client can share, so rows written while both
   * start may differ.
   */
  async facts(tempDir: string, signal?: AbortSignal): Promise<DatabaseFacts> {
    const defaults = await this.writeDefaults(tempDir)
    try {
      const client = await this.pickTool(['mariadb', 'mysql'])
      const query = (sql: string) =>
        run(
          client,
          [`--defaults-extra-file=${defaults}`, '--batch', '--skip-column-names', '--raw', '-e', sql, this.database],
          {
            signal,
          },
        )
      const names = (
        await query(
          `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY table_name`,
        )
      )
        .split('\n')
        .filter(Boolean)
      const tables: Record<string, number> = {}
      if (names.length > 0) {
        const counts = names
          .map((name, index) => `SELECT ${index}, COUNT(*) FROM ${quoteIdentifier(name)}`)
          .join(' UNION ALL ')
        const output = await query(`START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY; ${counts}; COMMIT`)
        for (const line of output.split('\n').filter(Boolean)) {
          const [index, count] = line.split('\t')
          tables[names[Number(index)]] = Number(count)
        }
      }

      const dumper = await this.dumpTool((await query('SELECT VERSION()')).trim())
      const schema = await run(
        dumper.path,
        [
          `--defaults-extra-file=${defaults}`,
          ...dumper.options,
          '--no-data',
          '--single-transaction',
          '--skip-comments',
          '--skip-dump-date',
          '--routines',
          '--triggers',
          '--events',
          this.database,
        ],
        {signal},
      )
      return factsOf(tables, mysqlSchemaStatements(schema), 'approximate')
    } catch (error) {
      throw new BackupError('BACKUP_FAILED', `Cannot count the rows of ${this.location}: ${describeToolError(error)}`, {
        cause: error,
        suggestion:
          'Check that the user may read every table, or set "countRows": false for this environment to back up without the counts that drills compare.',
      })
    } finally {
      await rm(defaults, {force: true})
    }
  }

  /** The first value of a query's first row (a drill's own check), or undefined. */
  async firstValue(sql: string, tempDir: string, signal?: AbortSignal): Promise<string | undefined> {
    const defaults = await this.writeDefaults(tempDir)
    try {
      const client = await this.pickTool(['mariadb', 'mysql'])
      const output = await run(
        client,
        [`--defaults-extra-file=${defaults}`, '--batch', '--skip-column-names', '--raw', '-e', sql, this.database],
        {signal},
      )
      const [first] = output.split('\n')
      const value = first?.split('\t')[0]
      return value === undefined || value === '' || value === 'NULL' ? undefined : value
    } finally {
      await rm(defaults, {force: true})
    }
  }

  /**
   * The server answers, the login works, and the database exists (see PostgreSQL's): the client would
   * fail on it only after the safety backup was tried and the media checked.
   */
  async restorable({signal, tempDir}: RestorableOptions): Promise<void> {
    const defaults = await this.writeDefaults(tempDir)
    try {
      const client = await this.pickTool(['mariadb', 'mysql'])
      await run(
        client,
        [`--defaults-extra-file=${defaults}`, '--connect-timeout=10', '-e', 'SELECT 1', this.database],
        {
          signal,
          timeoutMs: 30_000,
        },
      )
    } catch (error) {
      // Stopped by SIGINT/SIGTERM: an interruption, not a server that cannot be reached.
      signal?.throwIfAborted()
      if (error instanceof BackupError) throw error
      const detail = describeToolError(error)
      if (!/ERROR 1049 /.test(detail)) {
        throw new BackupError(
          'OUTPUT_UNAVAILABLE',
          `Cannot connect to the MySQL database ${this.location}: ${detail} Nothing was changed.`,
          {
            cause: error,
            suggestion:
              'Check that the server is running and reachable, and the user, password and database name in the DSN.',
          },
        )
      }

      const user = this.url.username ? ` (${decodeURIComponent(this.url.username)})` : ''
      throw new BackupError(
        'OUTPUT_UNAVAILABLE',
        `The database ${JSON.stringify(this.database)} does not exist on the MySQL server at ${this.url.hostname || 'localhost'}:${this.url.port || '3306'}, so there is nothing to restore into. Nothing was changed.`,
        {
          cause: error,
          suggestion: `A restore fills a database; it does not create one. Create it as a user who may (\`CREATE DATABASE ${quoteIdentifier(this.database)} CHARACTER SET utf8mb4;\`) and give the DSN's user${user} every privilege on it, then run the restore again.`,
        },
      )
    } finally {
      await rm(defaults, {force: true})
    }
  }

  /** Replays a SQL dump into the database; the client stops at the first error. */
  async restore(dumpPath: string, options: RestoreOptions): Promise<void> {
    const defaults = await this.writeDefaults(options.tempDir)
    const waits =
      options.lockWaitMs === undefined
        ? []
        : // Table locks (DROP TABLE waits for the app's open transactions) and InnoDB's row locks.
          [
            `--init-command=SET SESSION lock_wait_timeout=${seconds(options.lockWaitMs)}, innodb_lock_wait_timeout=${seconds(options.lockWaitMs)}`,
          ]
    try {
      const client = await this.pickToolVersion(['mariadb', 'mysql'])
      const dumped = new Set<string>()
      const script = Readable.from(
        mapSchemaLines(createReadStream(dumpPath), (line) => {
          const name = dumpedName(line)
          if (name !== undefined) dumped.add(name)
          return options.keepDefiners ? line : definerAsCurrentUser(line)
        }),
        {objectMode: false},
      )
      const {stream} = streamFrom(
        client.path,
        [`--defaults-extra-file=${defaults}`, '--batch', '--default-character-set=utf8mb4', ...waits, this.database],
        {signal: options.signal, stdin: readsSandboxLine(client.version) ? script : withoutSandboxLine(script)},
      )
      await pipeline(stream, new PassThrough().resume())
      await this.dropTablesBesides(dumped, {client: client.path, defaults, signal: options.signal, waits})
    } catch (error) {
      if (error instanceof BackupError) throw error
      const detail = describeToolError(error)
      throw new BackupError(
        'BACKUP_FAILED',
        `The restore into ${this.location} stopped at the first error: ${detail}`,
        {
          cause: error,
          suggestion: restoreFailureSuggestion(detail, options.lockWaitMs),
        },
      )
    } finally {
      await rm(defaults, {force: true})
    }
  }

  async snapshot({countRows = true, signal, tempDir}: SnapshotOptions): Promise<DatabaseSnapshot> {
    // Which dump program runs is asked while the server is: its answer is needed only after the
    // server's, and a missing one is still named after a server that cannot be reached.
    this.pickToolVersion(['mariadb-dump', 'mysqldump']).catch(() => {})
    const defaults = await this.writeDefaults(tempDir)
    let version: string
    try {
      const client = await this.pickTool(['mariadb', 'mysql'])
      const query = [
        `--defaults-extra-file=${defaults}`,
        '--connect-timeout=10',
        '--batch',
        '--skip-column-names',
        '-e',
        'SELECT VERSION()',
      ]
      version = (await run(client, [...query, this.database], {signal, timeoutMs: 30_000})).trim()
    } catch (error) {
      await rm(defaults, {force: true})
      throw new BackupError(
        'SOURCE_UNAVAILABLE',
        `Cannot connect to the MySQL database ${this.location}: ${describeToolError(error)}`,
        {
          cause: error,
          suggestion:
            'Check that the server is running and reachable, and the user, password and database name in the DSN.',
        },
      )
    }

    const dumper = await this.dumpTool(version)
    const {stream} = streamFrom(
      dumper.path,
      [
        `--defaults-extra-file=${defaults}`,
        ...dumper.options,
        '--single-transaction',
        '--routines',
        '--triggers',
        '--events',
        '--hex-blob',
        '--default-character-set=utf8mb4',
        this.database,
      ],
      {signal},
    )
    // Counted alongside the dump, in a transaction of its own (see facts). A table locked by someone
    // else holds both; the dump's stall watchdog reports it, and cleanup stops the counting.
    const counting = new AbortController()
    const facts = countRows ? this.facts(tempDir, AbortSignal.any([signal, counting.signal])) : undefined
    facts?.catch(() => {})
    return {
      async cleanup() {
        if (!stream.destroyed) stream.destroy()
        counting.abort()
        await facts?.catch(() => {})
        await rm(defaults, {force: true})
      },
      compression: 'zstd',
      extension: 'sql.zst',
      ...(facts ? {facts: () => facts} : {}),
      format: 'sql',
      serverVersion: version,
      stream: dumpStream(stream),
    }
  }

  /**
   * Drops the tables, views and sequences that are not the replayed dump's (see mysql-tables): what a
   * migration added since the backup. Only once the whole dump is in.
   */
  private async dropTablesBesides(
    dumped: ReadonlySet<string>,
    session: {client: string; defaults: string; signal?: AbortSignal; waits: string[]},
  ): Promise<void> {
    const login = [`--defaults-extra-file=${session.defaults}`, '--batch', '--skip-column-names']
    let extra: Array<{name: string; type: string}> = []
    try {
      const listed = await run(
        session.client,
        [
          ...login,
          '-e',
          'SELECT HEX(table_name), table_type FROM information_schema.tables WHERE table_schema = DATABASE()',
          this.database,
        ],
        {signal: session.signal},
      )
      extra = listed
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [hex, type] = line.split('\t')
          return {name: Buffer.from(hex, 'hex').toString(), type}
        })
        .filter(({name}) => !dumped.has(name))
      if (extra.length > 0)
        await run(session.client, [...login, ...session.waits, '-e', dropStatement(extra), this.database], {
          signal: session.signal,
        })
    } catch (error) {
      // Stopped by SIGINT/SIGTERM: an interruption, not a drop that failed.
      session.signal?.throwIfAborted()
      const names = extra.map(({name}) => JSON.stringify(name)).join(', ')
      throw new BackupError(
        'BACKUP_FAILED',
        `The backup was restored into ${this.location}, but the tables it does not hold${names ? ` (${names})` : ''} could not be dropped: ${describeToolError(error)}`,
        {
          cause: error,
          suggestion:
            'Everything the backup holds is in. Drop those tables by hand, or fix the cause and run the restore again.',
        },
      )
    }
  }

  /** mariadb-dump, or MySQL's mysqldump with the options it needs (see mysqldumpOptions). */
  private async dumpTool(serverVersion: string): Promise<{options: string[]; path: string}> {
    const {path, version} = await this.pickToolVersion(['mariadb-dump', 'mysqldump'])
    return {options: mysqldumpOptions(version, serverVersion), path}
  }

  private async findTool(names: string[]): Promise<{path: string; version: string}> {
    for (const name of names) {
      const path = this.binDir ? join(this.binDir, name) : name
      const version = await run(path, ['--version']).catch(() => null)
      if (version !== null) return {path, version}
    }

    throw new BackupError('SOURCE_UNAVAILABLE', `Neither ${names.join(' nor ')} is installed.`, {
      suggestion: 'Install the MariaDB or MySQL client tools (apt-get install mariadb-client).',
    })
  }

  private async pickTool(names: string[]): Promise<string> {
    return (await this.pickToolVersion(names)).path
  }

  /**
   * The first of `names` that runs, and what its `--version` says: asked once a command (a restore, a
   * backup and its checks each ask for the client several times).
   */
  private async pickToolVersion(names: string[]): Promise<{path: string; version: string}> {
    const key = names.join(' ')
    let picked = this.picked.get(key)
    if (picked === undefined) {
      picked = this.findTool(names)
      this.picked.set(key, picked)
    }

    return picked
  }

  /** The client options file (see mysql-options-file), readable by this user alone. */
  private async writeDefaults(tempDir: string): Promise<string> {
    this.family ??= this.pickToolVersion(['mariadb', 'mysql']).then(({version}) =>
      readsSandboxLine(version) ? 'mariadb' : 'mysql',
    )
    const options = clientOptions(this.url, await this.family)
    const path = join(tempDir, `mysql-client-${process.pid}-${Date.now()}.cnf`)
    await writeFile(path, options, {flag: 'wx', mode: 0o600})
    return path
  }
}

function quoteIdentifier(name: string): string {
  return `\`${name.replaceAll('`', '``')}\``
}

/** Whole seconds, at least 1: what the servers' lock timeouts take. */
function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000))
}

/** What to do about a restore that stopped at an error of the server's, in the words of that error. */
function restoreFailureSuggestion(detail: string, lockWaitMs = 0): string {
  if (/Lock wait timeout exceeded/.test(detail))
    return `Another session held a lock on the target for ${seconds(lockWaitMs)} s (the app, a worker, a migration): stop it, then run the restore again; statements before the failing one were applied. DIVIO_BACKUP_STALL_SECONDS sets the wait.`
  // ERROR 1419 (1418 for a function that says nothing of what it reads): while the server keeps a
  // binary log, creating a function takes SUPER, unless log_bin_trust_function_creators is on; the
  // definer's rewrite cannot help.
  if (/ERROR 141[89] \(/.test(detail))
    return "The server keeps a binary log, and while `log_bin_trust_function_creators` is off, only a user with SUPER may create the backup's functions (and only those declared DETERMINISTIC, NO SQL or READS SQL DATA). Ask an administrator to run `SET GLOBAL log_bin_trust_function_creators = 1` (on Amazon RDS, in the DB parameter group), then run the restore again. Statements before the failing one were applied."
  return 'Statements before the failing one were applied; restore into an empty database, or fix the cause and run it again.'
}
