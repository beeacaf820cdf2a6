import {ChildProcess, execFileSync, spawn, spawnSync} from 'node:child_process'
import {chownSync, existsSync, mkdirSync, mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {freePort, HeldSession, holdingSession} from './postgres.js'

export function hasMariadbServer(): boolean {
  return ['mariadbd', 'mariadb-install-db'].every(
    (tool) => spawnSync('sh', ['-c', `command -v ${tool} || test -x /usr/sbin/${tool}`]).status === 0,
  )
}

/**
 * A throwaway MariaDB server on a free loopback port in a temp folder, started by the tests themselves,
 * with a password-authenticated user for the code under test. As root it runs as the `mysql` user.
 */
export class TestMariadb {
  readonly password = String.raw`my-S3cret"pw\x`
  readonly user = 'backup_admin'

  private constructor(
    private readonly process: ChildProcess,
    readonly port: number,
    private readonly socket: string,
  ) {}

  /**
   * `tls`: a certificate and its key, for a server that also takes TLS connections. `binaryLog`: a
   * server that keeps one, as replicated and managed servers do (it restricts who may create routines).
   */
  static async start(tls?: {cert: string; key: string}, {binaryLog = false} = {}): Promise<TestMariadb> {
    const root = mkdtempSync(join(tmpdir(), 'mariadb-test-'))
    const dataDir = join(root, 'data')
    mkdirSync(dataDir)
    const asRoot = process.getuid?.() === 0
    if (asRoot) {
      const [uid, gid] = ['-u', '-g'].map((flag) => Number(execFileSync('id', [flag, 'mysql']).toString().trim()))
      chownSync(root, uid, gid)
      chownSync(dataDir, uid, gid)
    }

    const user = asRoot ? ['--user=mysql'] : []
    execFileSync(
      'mariadb-install-db',
      [...user, `--datadir=${dataDir}`, '--auth-root-authentication-method=normal', '--skip-test-db'],
      {
        // The server writes its temp files as the mysql user: into its own folder, not the run's.
        env: {...process.env, PATH: `${process.env.PATH}:/usr/sbin`, TMPDIR: root},
        stdio: 'ignore',
      },
    )
    const port = await freePort()
    const socket = join(root, 'mysqld.sock')
    const server = spawn(
      existsSync('/usr/sbin/mariadbd') ? '/usr/sbin/mariadbd' : 'mariadbd',
      [
        '--no-defaults',
        ...user,
        `--datadir=${dataDir}`,
        `--port=${port}`,
        '--bind-address=127.0.0.1',
        `--socket=${socket}`,
        `--pid-file=${join(root, 'mysqld.pid')}`,
        `--log-error=${join(root, 'error.log')}`,
        `--tmpdir=${root}`,
        '--innodb-buffer-pool-size=64M',
        ...(binaryLog ? [`--log-bin=${join(root, 'binlog')}`, '--server-id=1'] : ['--skip-log-bin']),
        ...(tls ? [`--ssl-cert=${tls.cert}`, `--ssl-key=${tls.key}`] : []),
      ],
      {stdio: 'ignore'},
    )
    const db = new TestMariadb(server, port, socket)
    for (let attempt = 0; attempt < 300; attempt++) {
      if (
        existsSync(socket) &&
        spawnSync('mariadb', ['--no-defaults', `--socket=${socket}`, '-uroot', '-e', 'SELECT 1']).status === 0
      )
        break
      await sleep(100)
    }

    const escaped = db.password.replaceAll('\\', '\\\\').replaceAll("'", String.raw`\'`)
    db.asRoot(
      `CREATE USER '${db.user}'@'127.0.0.1' IDENTIFIED BY '${escaped}'; GRANT ALL ON *.* TO '${db.user}'@'127.0.0.1'`,
    )
    return db
  }

  /** SQL as the server's root user over the socket; returns stdout. */
  asRoot(sql: string, database = ''): string {
    return execFileSync(
      'mariadb',
      [
        '--no-defaults',
        `--socket=${this.socket}`,
        '--default-character-set=utf8mb4',
        '-uroot',
        '--batch',
        '--skip-column-names',
        '-e',
        sql,
        ...(database ? [database] : []),
      ],
      {
        maxBuffer: 1 << 28,
      },
    ).toString()
  }

  /** Like TestPostgres.holding: a root session holding what `sql` took, in an open transaction. */
  async holding(database: string, sql: string): Promise<HeldSession> {
    const session = spawn(
      'mariadb',
      [
        '--no-defaults',
        `--socket=${this.socket}`,
        '-uroot',
        '--batch',
        '--unbuffered',
        '--skip-column-names',
        database,
      ],
      {stdio: ['pipe', 'pipe', 'inherit']},
    )
    return holdingSession(session, `BEGIN;\n${sql};\nSELECT 'held';\n`, 'ROLLBACK;\n')
  }

  kill(): void {
    this.process.kill('SIGKILL')
  }

  stop(): void {
    this.process.kill('SIGTERM')
  }

  url(database: string): string {
    return `mysql://${this.user}:${encodeURIComponent(this.password)}@127.0.0.1:${this.port}/${database}`
  }
}
