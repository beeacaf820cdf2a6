import {join} from 'node:path'

import {redactDsn} from '../../config/dsn.js'
import {DatabaseFacts} from '../../domain/manifest.js'
import {BackupError} from '../../errors.js'
import {run, Session, session, streamFrom} from '../../lib/process.js'
import {describeToolError, dumpStream} from './dump-stream.js'
import {factsOf, postgresSchemaStatements} from './facts.js'
import {DatabaseProvider, DatabaseSnapshot, RestorableOptions, RestoreOptions, SnapshotOptions} from './port.js'
import {quoteIdentifier, restoreDump} from './postgres-restore.js'

const CONNECT_TIMEOUT_SECONDS = '10'
/** How long the server may take to open the transaction and export its snapshot. */
const SNAPSHOT_TIMEOUT_MS = 30_000
/** The line psql prints after the last count. */
const END_OF_COUNTS = 'divio-backup: end of counts'

/** The transaction that holds a dump's snapshot, and the psql session it is open in. */
interface HeldSnapshot {
  id: string
  session: Session
}

/** The server's major version, and the snapshot held, or why it could not be. */
interface OpenedSnapshot {
  failure?: BackupError
  held?: HeldSnapshot
  server: number
}

/** The major version in `server_version_num` (150004 is 15). */
function majorVersion(versionNumber: string): number {
  return Math.floor(Number(versionNumber.trim()) / 10_000)
}

/** The value of a settled promise, or its reason thrown. */
function fulfilled<T>(result: PromiseSettledResult<T>): T {
  if (result.status === 'rejected') throw result.reason
  return result.value
}

/**
 * PostgreSQL through its own tools: `pg_dump --format=custom`, which `pg_restore` reads without us.
 * The password travels in PGPASSWORD, never in argv; the rest of the DSN, query parameters such as
 * sslmode included, is passed to libpq as a URI without the password.
 */
export class PostgresProvider implements DatabaseProvider {
  readonly engine = 'postgres'
  readonly location: string
  private readonly password: string | undefined
  private readonly uri: string

  constructor(
    url: URL,
    /** Folder holding pg_dump, pg_restore and psql; PATH when omitted. */
    private readonly binDir?: string,
  ) {
    const withoutPassword = new URL(url.href)
    withoutPassword.protocol = 'postgresql:'
    this.password = url.password === '' ? undefined : decodeURIComponent(url.password)
    withoutPassword.password = ''
    if (!withoutPassword.searchParams.has('connect_timeout')) {
      withoutPassword.searchParams.set('connect_timeout', CONNECT_TIMEOUT_SECONDS)
    }

    this.uri = withoutPassword.href
    this.location = redactDsn(url.href)
  }

  /** pg_amcheck on every table and index, where the tool is installed: 'ok', the damage, or undefined. */
  async amcheck(signal: AbortSignal): Promise<string | undefined> {
    try {
      await run(this.tool('pg_amcheck'), ['--version'])
    } catch {
      return undefined
    }

    try {
      await run(this.tool('pg_amcheck'), ['--install-missing', '--no-password', this.uri], {
        env: this.env(),
        signal,
      })
      return 'ok'
    } catch (error) {
      return describeToolError(error)
    }
  }

  /**
   * What the database holds now, by the same queries as at backup time, in one snapshot: `drill`
   * compares a restored copy with the facts its backup recorded.
   */
  async facts(signal: AbortSignal): Promise<DatabaseFacts> {
    const held = await this.holdSnapshot(signal)
    try {
      const counted = await this.countInSnapshot(held, signal)
      held.session.send('COMMIT;\n')
      await held.session.close()
      return counted
    } finally {
      held.session.kill()
    }
  }

  /** The first value of a read-only query's first row (a drill's own check), or undefined. */
  async firstValue(sql: string, signal: AbortSignal): Promise<string | undefined> {
    const output = await run(this.tool('psql'), ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', sql, `--dbname=${this.uri}`], {
      env: this.env(),
      signal,
    })
    const [first] = output.split('\n')
    return first === undefined || first === '' ? undefined : first.split('|')[0]
  }

  /**
   * The server answers, the login works, and the database exists. A restore onto a new server meets a
   * database that nobody has created yet: pg_restore would fail only after the safety backup was tried
   * and the media checked, with the server's words alone.
   */
  async restorable({signal}: RestorableOptions): Promise<void> {
    try {
      await run(this.tool('psql'), ['-XAtq', '-c', 'SELECT 1', `--dbname=${this.uri}`], {
        env: this.env(),
        signal,
        timeoutMs: 30_000,
      })
    } catch (error) {
      // Stopped by SIGINT/SIGTERM: an interruption, not a server that cannot be reached.
      signal?.throwIfAborted()
      const missing = /database "(.*)" does not exist/.exec(describeToolError(error))
      if (!missing) throw this.cannotConnect(error, 'OUTPUT_UNAVAILABLE', ' Nothing was changed.')
      const url = new URL(this.uri)
      const owner = url.username ? ` OWNER ${quoteIdentifier(decodeURIComponent(url.username))}` : ''
      throw new BackupError(
        'OUTPUT_UNAVAILABLE',
        `The database ${JSON.stringify(missing[1])} does not exist on the PostgreSQL server at ${serverAddress(url)}, so there is nothing to restore into. Nothing was changed.`,
        {
          cause: error,
          suggestion: `A restore fills a database; it does not create one. Create it as a user who may (\`CREATE DATABASE ${quoteIdentifier(missing[1])}${owner};\`), then run the restore again.`,
        },
      )
    }
  }

  /**
   * Restores a custom-format dump into the database, in one transaction: all of it, or nothing (see
   * postgres-restore).
   */
  async restore(dumpPath: string, options: RestoreOptions): Promise<void> {
    await restoreDump(
      {env: () => this.env(), location: this.location, tool: (name) => this.tool(name), uri: this.uri},
      dumpPath,
      options,
    )
  }

  /** The server's major version, e.g. 15; also proves that the server is reachable and the login works. */
  async serverMajorVersion(signal?: AbortSignal): Promise<number> {
    let output: string
    try {
      output = await run(this.tool('psql'), ['-XAtq', '-c', 'SHOW server_version_num', `--dbname=${this.uri}`], {
        env: this.env(),
        signal,
        timeoutMs: 30_000,
      })
    } catch (error) {
      throw this.cannotConnect(error, 'SOURCE_UNAVAILABLE')
    }

    return majorVersion(output)
  }

  async snapshot({countRows = true, lockWaitMs, signal}: SnapshotOptions): Promise<DatabaseSnapshot> {
    // The server (its version and, for the counts, the transaction that holds the dump's snapshot, in
    // one session) and pg_dump's version do not depend on each other: asked at once, the dump starts
    // about 70 ms sooner. What fails is named in this order, so that a server that cannot be reached
    // is reported as such, not as rows that cannot be counted.
    const [opened, client] = await Promise.allSettled([
      countRows
        ? this.openSnapshot(signal)
        : this.serverMajorVersion(signal).then((server): OpenedSnapshot => ({server})),
      this.dumpMajorVersion(),
    ])
    const held = opened.status === 'fulfilled' ? opened.value.held : undefined
    try {
      const {failure, server} = fulfilled<OpenedSnapshot>(opened)
      const clientVersion = fulfilled(client)
      if (clientVersion < server) {
        throw new BackupError(
          'SOURCE_UNAVAILABLE',
          `pg_dump ${clientVersion} cannot dump a PostgreSQL ${server} server: pg_dump ${server} or newer is needed.`,
          {
            suggestion: `Install postgresql-client-${server} (or newer), or point DIVIO_BACKUP_PG_BINDIR at its bin folder.`,
          },
        )
      }

      if (failure) throw failure
      return this.dump(server, held, {lockWaitMs, signal})
    } catch (error) {
      held?.session.kill()
      throw error
    }
  }

  /** The server cannot be reached, or refuses the login: what to check, without the password. */
  private cannotConnect(
    error: unknown,
    code: 'OUTPUT_UNAVAILABLE' | 'SOURCE_UNAVAILABLE',
    afterwards = '',
  ): BackupError {
    return new BackupError(
      code,
      `Cannot connect to the PostgreSQL database ${this.location}: ${describeToolError(error)}${afterwards}`,
      {
        cause: error,
        suggestion:
          'Check that the server is running and reachable, and the user, password and database name in the DSN.',
      },
    )
  }

  /** Every table's rows, counted in the held transaction, and the schema, dumped in its snapshot. */
  private async countInSnapshot(held: {id: string; session: Session}, signal: AbortSignal): Promise<DatabaseFacts> {
    try {
      const schema = run(
        this.tool('pg_dump'),
        [
          '--schema-only',
          '--no-owner',
          '--no-privileges',
          '--no-password',
          `--snapshot=${held.id}`,
          `--dbname=${this.uri}`,
        ],
        {env: this.env(), signal},
      )
      schema.catch(() => {})
      held.session.send(
        [
          "SELECT format('SELECT %L || ''|'' || count(*) FROM %I.%I', n.nspname || '.' || c.relname, n.nspname, c.relname)",
          'FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace',
          String.raw`WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'`,
          String.raw`ORDER BY 1 \gexec`,
          `SELECT '${END_OF_COUNTS}';`,
          '',
        ].join('\n'),
      )
      const tables: Record<string, number> = {}
      for (let line = await held.session.readLine(); line !== END_OF_COUNTS; line = await held.session.readLine()) {
        const bar = line.lastIndexOf('|')
        if (bar > 0) tables[line.slice(0, bar)] = Number(line.slice(bar + 1))
      }

      return factsOf(tables, postgresSchemaStatements(await schema), 'exact')
    } catch (error) {
      held.session.kill()
      throw this.factsFailure(error)
    }
  }

  /** The dump itself, in the held snapshot if there is one, with the rows counted beside it. */
  private dump(
    server: number,
    held: HeldSnapshot | undefined,
    {lockWaitMs, signal}: Pick<SnapshotOptions, 'lockWaitMs' | 'signal'>,
  ): DatabaseSnapshot {
    const snapshotArgs = held ? [`--snapshot=${held.id}`] : []
    const {stream} = streamFrom(
      this.tool('pg_dump'),
      [
        '--format=custom',
        '--no-password',
        // pg_dump locks every table it dumps first: one held exclusively fails it, named, in this time.
        ...(lockWaitMs === undefined ? [] : [`--lock-wait-timeout=${wholeSeconds(lockWaitMs)}s`]),
        ...snapshotArgs,
        `--dbname=${this.uri}`,
      ],
      {env: this.env(), signal},
    )
    // Counted while the dump runs, in the transaction whose snapshot the dump uses: the same rows.
    // Cleanup stops whatever counting is left (a table locked by someone else holds it).
    const counting = new AbortController()
    const facts = held ? this.countInSnapshot(held, AbortSignal.any([signal, counting.signal])) : undefined
    facts?.catch(() => {})
    return {
      async cleanup() {
        if (!stream.destroyed) stream.destroy()
        counting.abort()
        held?.session.kill()
        await facts?.catch(() => {})
      },
      compression: 'none',
      extension: 'dump',
      ...(facts
        ? {
            async facts() {
              const counted = await facts
              // Only now may the transaction end: pg_dump has long imported its snapshot.
              held!.session.send('COMMIT;\n')
              await held!.session.close()
              return counted
            },
          }
        : {}),
      format: 'custom',
      serverVersion: String(server),
      stream: dumpStream(stream, (detail) => this.lockedTable(detail, lockWaitMs)),
    }
  }

  private async dumpMajorVersion(): Promise<number> {
    const output = await run(this.tool('pg_dump'), ['--version']).catch((error: unknown) => {
      throw new BackupError('SOURCE_UNAVAILABLE', `Cannot run pg_dump: ${describeToolError(error)}`, {
        suggestion: 'Install the PostgreSQL client tools (apt-get install postgresql-client).',
      })
    })
    const match = /(\d+)(?:\.\d+)?/.exec(output.replace(/^[^\d]*/, ''))
    if (!match)
      throw new BackupError('SOURCE_UNAVAILABLE', `Cannot tell the version of pg_dump from "${output.trim()}".`)
    return Number(match[1])
  }

  private env(): NodeJS.ProcessEnv {
    return {
      PGAPPNAME: 'divio-app-backup',
      PGCONNECT_TIMEOUT: CONNECT_TIMEOUT_SECONDS,
      ...(this.password === undefined ? {} : {PGPASSWORD: this.password}),
    }
  }

  private factsFailure(error: unknown): BackupError {
    return new BackupError(
      'BACKUP_FAILED',
      `Cannot count the rows of ${this.location} in the dump's snapshot: ${describeToolError(error)}`,
      {
        cause: error,
        suggestion:
          'Check that the user may read every table, or set "countRows": false for this environment to back up without the counts that drills compare.',
      },
    )
  }

  /**
   * Opens a read-only repeatable-read transaction in psql and exports its snapshot; the transaction
   * stays open (psql waits on its input) until the facts are read.
   */
  private async holdSnapshot(signal: AbortSignal): Promise<HeldSnapshot> {
    const {failure, held} = await this.openSnapshot(signal)
    if (failure) throw failure
    return held!
  }

  /** A dump that gave up on a table's lock (pg_dump --lock-wait-timeout), named, or undefined. */
  private lockedTable(detail: string, lockWaitMs: number | undefined): BackupError | undefined {
    const table = /Query was: LOCK TABLE (\S+) IN ACCESS SHARE MODE/.exec(detail)?.[1]
    if (table === undefined || !/canceling statement due to statement timeout/.test(detail)) return undefined
    return new BackupError(
      'SOURCE_UNAVAILABLE',
      `pg_dump waited ${wholeSeconds(lockWaitMs ?? 0)} s to read table ${table} of ${this.location}, which another session holds exclusively (a migration's ALTER TABLE, a VACUUM FULL, a LOCK TABLE).`,
      {
        suggestion:
          'Take the backup once that session has ended; `SELECT pid, application_name, query FROM pg_stat_activity` shows it. DIVIO_BACKUP_STALL_SECONDS (twice the wait) sets how long a backup waits.',
      },
    )
  }

  /**
   * What holdSnapshot opens, with the server's major version asked first in the same session: one login
   * for both. Rejects when the server cannot be reached or refuses the login; when only the snapshot
   * cannot be had, resolves with the failure, for the caller to name after what it checks first.
   */
  private async openSnapshot(signal: AbortSignal): Promise<OpenedSnapshot> {
    const opened = session(this.tool('psql'), ['-XAtq', '-v', 'ON_ERROR_STOP=1', `--dbname=${this.uri}`], {
      env: this.env(),
      signal,
    })
    opened.send(
      'SHOW server_version_num;\nBEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSELECT pg_export_snapshot();\n',
    )
    let server: number
    try {
      server = majorVersion(await withTimeout(opened.readLine(), SNAPSHOT_TIMEOUT_MS, 'no answer within 30 s'))
    } catch (error) {
      opened.kill()
      throw this.cannotConnect(error, 'SOURCE_UNAVAILABLE')
    }

    try {
      const id = (await withTimeout(opened.readLine(), SNAPSHOT_TIMEOUT_MS, 'no snapshot within 30 s')).trim()
      if (!/^[\dA-F-]+$/i.test(id)) throw new Error(`psql answered "${id}" for a snapshot`)
      return {held: {id, session: opened}, server}
    } catch (error) {
      opened.kill()
      return {failure: this.factsFailure(error), server}
    }
  }

  /**
   * A pg_restore older than the pg_dump that wrote the dump reads nothing of it, and says only that
   * the archive's version is unsupported: name both, and what to install.
   */
  private tool(name: string): string {
    return this.binDir ? join(this.binDir, name) : name
  }
}

async function withTimeout<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      work,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(message)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** Whole seconds, at least 1: what PostgreSQL's timeouts are given in here, and what messages say. */
function wholeSeconds(ms: number): number {
  return Math.max(1, Math.round(ms / 1000))
}

/** An SQL identifier in double quotes, as a user would type it into psql. */

/** host:port for messages; "this machine's socket" where the DSN names no host. */
function serverAddress(url: URL): string {
  const socket = url.searchParams.get('host')
  if (url.hostname === '') return socket ? `the socket in ${socket}` : "this machine's socket"
  return `${url.hostname}:${url.port || '5432'}`
}
