import {rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {PassThrough, Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {redactDsn} from '../../config/dsn.js'
import {BackupError} from '../../errors.js'
import {run, streamFrom} from '../../lib/process.js'
import {describeToolError, dumpStream} from './dump-stream.js'
import {DatabaseProvider, DatabaseSnapshot} from './port.js'

/**
 * MySQL and MariaDB through their own tools: `mariadb-dump` (or `mysqldump`) writes a SQL script that the
 * `mariadb`/`mysql` client replays. Credentials go into a 0600 `--defaults-extra-file`, removed afterwards,
 * never into argv.
 */
export class MysqlProvider implements DatabaseProvider {
  readonly engine = 'mysql'
  readonly location: string

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

  /** Replays a SQL dump into the database; the client stops at the first error. */
  async restore(sql: Readable, options: {signal?: AbortSignal; tempDir: string}): Promise<void> {
    const defaults = await this.writeDefaults(options.tempDir)
    try {
      const client = await this.pickTool(['mariadb', 'mysql'])
      const {stream} = streamFrom(
        client,
        [`--defaults-extra-file=${defaults}`, '--batch', '--default-character-set=utf8mb4', this.database],
        {signal: options.signal, stdin: sql},
      )
      await pipeline(stream, new PassThrough().resume())
    } catch (error) {
      throw new BackupError(
        'BACKUP_FAILED',
        `The restore into ${this.location} stopped at the first error: ${describeToolError(error)}`,
        {
          cause: error,
          suggestion:
            'Statements before the failing one were applied; restore into an empty database, or fix the cause and run it again.',
        },
      )
    } finally {
      await rm(defaults, {force: true})
    }
  }

  async snapshot({signal, tempDir}: {signal: AbortSignal; tempDir: string}): Promise<DatabaseSnapshot> {
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

    const dumper = await this.pickTool(['mariadb-dump', 'mysqldump'])
    const {stream} = streamFrom(
      dumper,
      [
        `--defaults-extra-file=${defaults}`,
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
    return {
      async cleanup() {
        if (!stream.destroyed) stream.destroy()
        await rm(defaults, {force: true})
      },
      compression: 'zstd',
      extension: 'sql.zst',
      format: 'sql',
      serverVersion: version,
      stream: dumpStream(stream),
    }
  }

  private async pickTool(names: string[]): Promise<string> {
    for (const name of names) {
      const path = this.binDir ? join(this.binDir, name) : name
      if (
        await run(path, ['--version']).then(
          () => true,
          () => false,
        )
      )
        return path
    }

    throw new BackupError('SOURCE_UNAVAILABLE', `Neither ${names.join(' nor ')} is installed.`, {
      suggestion: 'Install the MariaDB or MySQL client tools (apt-get install mariadb-client).',
    })
  }

  /** The client options file: the only place the password is written, readable by this user alone. */
  private async writeDefaults(tempDir: string): Promise<string> {
    const path = join(tempDir, `mysql-client-${process.pid}-${Date.now()}.cnf`)
    const lines = [
      '[client]',
      `host=${quote(this.url.hostname || 'localhost')}`,
      ...(this.url.port ? [`port=${this.url.port}`] : []),
      ...(this.url.username ? [`user=${quote(decodeURIComponent(this.url.username))}`] : []),
      ...(this.url.password ? [`password=${quote(decodeURIComponent(this.url.password))}`] : []),
    ]
    const ssl = this.url.searchParams.get('ssl-mode') ?? this.url.searchParams.get('ssl_mode')
    if (ssl) lines.push(`ssl-mode=${ssl}`)
    await writeFile(path, `${lines.join('\n')}\n`, {flag: 'wx', mode: 0o600})
    return path
  }
}

/** A value for a MySQL option file: double-quoted, with backslashes and quotes escaped. */
function quote(value: string): string {
  return `"${value.replaceAll('\\', '\\\\').replaceAll('"', String.raw`\"`)}"`
}
