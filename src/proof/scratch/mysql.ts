import {createReadStream, existsSync} from 'node:fs'
import {chmod, chown, mkdir} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {BackupError} from '../../errors.js'
import {startReaper} from '../../lib/guards.js'
import {run, startServer} from '../../lib/process.js'
import {removeTree} from '../../lib/remove-tree.js'
import {definersIn} from '../../providers/database/mysql-definers.js'
import {MysqlProvider} from '../../providers/database/mysql.js'
import {ScratchDatabase} from './port.js'
import {systemUser} from './system-user.js'

/** How long the scratch server may take to accept connections. */
const START_TIMEOUT_MS = 60_000

/**
 * A throwaway MariaDB server for a drill: mariadb-install-db into the drill's staging folder, and
 * mariadbd with networking off, on a Unix socket in that folder. The dump is replayed into it with the
 * client, as `restore` would. A guard kills the server and removes the folder if this process is
 * killed before it can. As root, the server runs as the `mysql` user, as the Debian packages arrange it.
 */
export async function mysqlScratch(folder: string, dumpPath: string, signal: AbortSignal): Promise<ScratchDatabase> {
  const staging = dirname(folder)
  const serverUser = process.getuid?.() === 0 ? await systemUser('mysql') : undefined
  const dataDir = join(folder, 'data')
  const socket = join(folder, 'mysqld.sock')
  await mkdir(dataDir, {mode: 0o700, recursive: true})
  if (serverUser) {
    await chmod(staging, 0o711)
    await chown(folder, serverUser.uid, serverUser.gid)
    await chown(dataDir, serverUser.uid, serverUser.gid)
  }

  const asUser = serverUser ? ['--user=mysql'] : []
  const pidFile = join(folder, 'mysqld.pid')
  // Started first: a kill at any point leaves the guard to stop the server (by its pid file, which it
  // waits a moment for, in case the server was just starting) and to remove the staging folder.
  const guard = startReaper(
    'for _ in 1 2 3 4; do [ -f "$1" ] && kill -KILL "$(cat "$1")" 2>/dev/null; sleep 0.5; done; rm -rf "$2"',
    [pidFile, staging],
  )
  try {
    await run(
      sbin('mariadb-install-db'),
      [...asUser, `--datadir=${dataDir}`, '--auth-root-authentication-method=normal', '--skip-test-db'],
      {env: {PATH: `${process.env.PATH}:/usr/sbin`, TMPDIR: folder}, signal},
    )
  } catch (error) {
    await removeTree(folder)
    // Stood down: its script removes the drill's whole staging folder (see stop).
    guard.dismiss()
    throw unavailable(error)
  }

  const server = startServer(sbin('mariadbd'), [
    '--no-defaults',
    ...asUser,
    `--datadir=${dataDir}`,
    '--skip-networking',
    `--socket=${socket}`,
    `--pid-file=${pidFile}`,
    `--log-error=${join(folder, 'error.log')}`,
    `--tmpdir=${folder}`,
    '--innodb-buffer-pool-size=64M',
    '--skip-log-bin',
  ])
  const stop = async () => {
    await server.stop()
    await removeTree(folder)
    // Stood down, not run: its script removes the drill's whole staging folder, which the drill still
    // uses (and removes itself); run here, it raced the drill's own removal of it.
    guard.dismiss()
  }

  try {
    const url = (database: string) => new URL(`mysql://root@localhost/${database}?socket=${encodeURIComponent(socket)}`)
    const admin = new MysqlProvider(url(''))
    for (let waited = 0; ; waited += 100) {
      signal.throwIfAborted()
      if (existsSync(socket) && (await admin.firstValue('SELECT 1', folder).catch(() => {})) === '1') break
      if (waited > START_TIMEOUT_MS)
        throw new Error(`it did not accept connections within ${START_TIMEOUT_MS / 1000} s`)
      await sleep(100)
    }

    await admin.firstValue('CREATE DATABASE drill CHARACTER SET utf8mb4', folder, signal)
    // The accounts the dump names as definers, locked, so that its views and routines work here as they
    // did where it was taken: a view whose definer does not exist can be neither read nor dumped.
    for (const account of await definersIn(createReadStream(dumpPath))) {
      const user = /^`(?:[^`]|``)*`@`(?:[^`]|``)*`$/.test(account)
      const create = user ? `CREATE USER IF NOT EXISTS ${account} ACCOUNT LOCK` : `CREATE ROLE IF NOT EXISTS ${account}`
      await admin.firstValue(`${create}; GRANT ALL ON drill.* TO ${account}`, folder, signal)
    }

    const provider = new MysqlProvider(url('drill'))
    await provider.restore(dumpPath, {keepDefiners: true, signal, tempDir: folder})
    const version = (await admin.firstValue('SELECT VERSION()', folder, signal)) ?? 'unknown'
    return {
      close: stop,
      facts: () => provider.facts(folder, signal),
      firstValue: (sql) => provider.firstValue(sql, folder, signal),
      async integrity() {
        return {result: await provider.check(folder, signal), tool: 'mariadb-check'}
      },
      tools: {mariadb: version},
    }
  } catch (error) {
    await stop()
    if (signal.aborted || error instanceof BackupError) throw error
    throw unavailable(error)
  }
}

/** Debian installs the server programs in /usr/sbin, which an ordinary user's PATH may not hold. */
function sbin(name: string): string {
  return existsSync(`/usr/sbin/${name}`) ? `/usr/sbin/${name}` : name
}

function unavailable(error: unknown): BackupError {
  return new BackupError(
    'SOURCE_UNAVAILABLE',
    `Cannot start a scratch MariaDB server for the drill: ${(error as Error).message}`,
    {
      cause: error,
      suggestion:
        'Check the MariaDB server installation (mariadb-install-db, mariadbd: apt-get install mariadb-server).',
    },
  )
}
