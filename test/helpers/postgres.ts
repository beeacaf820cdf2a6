import {ChildProcess, execFileSync, spawn, spawnSync} from 'node:child_process'
import {once} from 'node:events'
import {chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

/** The newest PostgreSQL server's bin folder (Debian layout), or undefined when no server is installed. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root)
    .filter((version) => existsSync(join(root, version, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a))
  return versions.length > 0 ? join(root, versions[0], 'bin') : undefined
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0))
    })
  })
}

/**
 * A throwaway PostgreSQL server on a free loopback port in a temp folder, with password (SCRAM)
 * authentication, started and stopped by the tests themselves. As root, the server runs as the
 * `postgres` user, which the Debian package creates.
 */
export class TestPostgres {
  readonly password = 'pw-Z3b!9#x'
  readonly user = 'backup_admin'

  private constructor(
    readonly binDir: string,
    readonly dataDir: string,
    readonly port: number,
  ) {}

  static async start(binDir: string): Promise<TestPostgres> {
    const root = mkdtempSync(join(tmpdir(), 'pg-test-'))
    const server = new TestPostgres(binDir, join(root, 'data'), await freePort())
    const passwordFile = join(root, 'password')
    writeFileSync(passwordFile, server.password)
    if (process.getuid?.() === 0) {
      const [uid, gid] = ['-u', '-g'].map((flag) => Number(execFileSync('id', [flag, 'postgres']).toString().trim()))
      chownSync(root, uid, gid)
      chownSync(passwordFile, uid, gid)
    }

    chmodSync(passwordFile, 0o600)
    server.asServer('initdb', [
      '-D',
      server.dataDir,
      '-U',
      server.user,
      `--pwfile=${passwordFile}`,
      '--auth=scram-sha-256',
      '--encoding=UTF8',
      '--locale=C.UTF-8',
      // Thrown away after the run, as its server runs with fsync off: initdb need not flush its files.
      '--no-sync',
    ])
    server.start()
    return server
  }

  /**
   * A session of the admin user that has run `sql` in an open transaction, and holds what it took (a
   * lock) until `end()` rolls it back: the app's connection, as a restore meets it.
   */
  async holding(database: string, sql: string): Promise<HeldSession> {
    const session = spawn(
      join(this.binDir, 'psql'),
      ['-XAtq', '-v', 'ON_ERROR_STOP=1', `--dbname=${this.url(database, false)}`],
      {
        env: {...process.env, PGPASSWORD: this.password},
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    )
    return holdingSession(session, `BEGIN;\n${sql};\nSELECT 'held';\n`, 'ROLLBACK;\n')
  }

  /** Kills the server at once, as a crash or an operator would. */
  kill(): void {
    this.asServer('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', 'stop'], true)
  }

  /** psql as the admin user; returns stdout. */
  psql(database: string, sql: string): string {
    return execFileSync(
      join(this.binDir, 'psql'),
      ['-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', sql, `--dbname=${this.url(database, false)}`],
      {
        env: {...process.env, PGPASSWORD: this.password},
        maxBuffer: 1 << 28,
      },
    ).toString()
  }

  /** Starts the server (again, after kill or stop), and waits until it accepts connections. */
  start(): void {
    const root = dirname(this.dataDir)
    this.asServer('pg_ctl', [
      '-D',
      this.dataDir,
      '-l',
      join(root, 'server.log'),
      '-o',
      `-p ${this.port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off`,
      '-w',
      'start',
    ])
  }

  /** Stops the server for good, and removes its folder: the bench's is in the temp folder, not a test run's. */
  stop(): void {
    this.asServer('pg_ctl', ['-D', this.dataDir, '-m', 'fast', 'stop'], true)
    rmSync(dirname(this.dataDir), {force: true, recursive: true})
  }

  url(database: string, withPassword = true): string {
    const password = withPassword ? `:${encodeURIComponent(this.password)}` : ''
    return `postgres://${this.user}${password}@127.0.0.1:${this.port}/${database}`
  }

  private asServer(tool: string, args: string[], tolerateFailure = false): void {
    const command = join(this.binDir, tool)
    const [program, argv] =
      process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args]
    const result = spawnSync(program, argv, {encoding: 'utf8'})
    if (result.status !== 0 && !tolerateFailure) throw new Error(`${tool} failed: ${result.stderr || result.stdout}`)
  }
}

/** A session that holds what it took: `end` rolls back and waits; `kill` drops it (its server is gone). */
export interface HeldSession {
  end(): Promise<void>
  kill(): void
}

/** Runs `sql` in `session`, waits for the 'held' it ends with, and gives the ways to end it. */
export async function holdingSession(session: ChildProcess, sql: string, ending: string): Promise<HeldSession> {
  let output = ''
  session.stdout!.setEncoding('utf8').on('data', (text: string) => {
    output += text
  })
  const exited = once(session, 'exit')
  session.stdin!.write(sql)
  const deadline = Date.now() + 30_000
  while (!output.includes('held')) {
    if (Date.now() > deadline || session.exitCode !== null) throw new Error(`the session did not hold: ${output}`)
    await new Promise((resolve) => {
      setTimeout(resolve, 20)
    })
  }

  return {
    async end() {
      session.stdin!.end(ending)
      await exited
    },
    kill() {
      session.kill()
    },
  }
}
