import {join} from 'node:path'
import {PassThrough, Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {redactDsn} from '../../config/dsn.js'
import {BackupError} from '../../errors.js'
import {run, streamFrom} from '../../lib/process.js'
import {describeToolError, dumpStream} from './dump-stream.js'
import {DatabaseProvider, DatabaseSnapshot} from './port.js'

const CONNECT_TIMEOUT_SECONDS = '10'

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

  /** Restores a custom-format dump into the database, in one transaction: all of it, or nothing. */
  async restore(dump: Readable, options: {signal?: AbortSignal; tempDir?: string} = {}): Promise<void> {
    const {stream} = streamFrom(
      this.tool('pg_restore'),
      [
        '--clean',
        '--if-exists',
        '--no-owner',
        '--no-privileges',
        '--single-transaction',
        '--exit-on-error',
        `--dbname=${this.uri}`,
      ],
      {env: this.env(), signal: options.signal, stdin: dump},
    )
    try {
      await pipeline(stream, new PassThrough().resume())
    } catch (error) {
      throw new BackupError(
        'BACKUP_FAILED',
        `The restore into ${this.location} failed and was rolled back: ${describeToolError(error)}`,
        {
          cause: error,
          suggestion: 'Nothing was changed in the target database. Fix the cause above and run the restore again.',
        },
      )
    }
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
      throw new BackupError(
        'SOURCE_UNAVAILABLE',
        `Cannot connect to the PostgreSQL database ${this.location}: ${describeToolError(error)}`,
        {
          cause: error,
          suggestion:
            'Check that the server is running and reachable, and the user, password and database name in the DSN.',
        },
      )
    }

    return Math.floor(Number(output.trim()) / 10_000)
  }

  async snapshot({signal}: {signal: AbortSignal; tempDir: string}): Promise<DatabaseSnapshot> {
    const server = await this.serverMajorVersion(signal)
    const client = await this.dumpMajorVersion()
    if (client < server) {
      throw new BackupError(
        'SOURCE_UNAVAILABLE',
        `pg_dump ${client} cannot dump a PostgreSQL ${server} server: pg_dump ${server} or newer is needed.`,
        {
          suggestion: `Install postgresql-client-${server} (or newer), or point DIVIO_BACKUP_PG_BINDIR at its bin folder.`,
        },
      )
    }

    const {stream} = streamFrom(this.tool('pg_dump'), ['--format=custom', '--no-password', `--dbname=${this.uri}`], {
      env: this.env(),
      signal,
    })
    return {
      async cleanup() {
        if (!stream.destroyed) stream.destroy()
      },
      compression: 'none',
      extension: 'dump',
      format: 'custom',
      serverVersion: String(server),
      stream: dumpStream(stream),
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

  private tool(name: string): string {
    return this.binDir ? join(this.binDir, name) : name
  }
}
