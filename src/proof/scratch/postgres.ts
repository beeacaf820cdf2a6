import {existsSync, readdirSync} from 'node:fs'
import {chmod, chown, mkdir} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import {BackupError} from '../../errors.js'
import {startReaper} from '../../lib/guards.js'
import {run} from '../../lib/process.js'
import {removeTree} from '../../lib/remove-tree.js'
import {PostgresProvider} from '../../providers/database/postgres.js'
import {ScratchDatabase} from './port.js'
import {systemUser} from './system-user.js'

/**
 * A throwaway PostgreSQL server for a drill: initdb into the drill's staging folder, listening on a
 * Unix socket in that folder only (no TCP port, so nothing else on the machine can reach it), with
 * nothing flushed to disk (initdb's sync and the server's fsync off). The dump is restored into it with
 * pg_restore, as `restore` would. A guard process stops the server and removes its folder if this
 * process is killed before it can.
 *
 * As root (containers), the server runs as the `postgres` user, as the Debian packages arrange it:
 * PostgreSQL refuses to run as root.
 */
export async function postgresScratch(
  folder: string,
  dumpPath: string,
  signal: AbortSignal,
  variables: NodeJS.ProcessEnv = process.env,
): Promise<ScratchDatabase> {
  // After a kill, the guard removes the whole staging folder of the drill: it holds the plaintext dump.
  const staging = dirname(folder)
  const binDir = serverBinDir(variables)
  const serverUser = process.getuid?.() === 0 ? await systemUser('postgres') : undefined
  const asServer = (tool: string, args: string[]) =>
    serverUser
      ? run('runuser', ['-u', 'postgres', '--', join(binDir, tool), ...args], {signal})
      : run(join(binDir, tool), args, {signal})
  const dataDir = join(folder, 'data')
  await mkdir(folder, {mode: 0o700})
  if (serverUser) {
    // The staging folder above stays closed to listing; the server's own folder is the server user's.
    await chmod(staging, 0o711)
    await chown(folder, serverUser.uid, serverUser.gid)
  }

  const pgCtl = join(binDir, 'pg_ctl')
  const guard = startReaper(
    serverUser
      ? 'runuser -u postgres -- "$3" -D "$1" -m immediate stop; rm -rf "$2"'
      : '"$3" -D "$1" -m immediate stop; rm -rf "$2"',
    [dataDir, staging, pgCtl],
  )
  const stop = async () => {
    await asServer('pg_ctl', ['-D', dataDir, '-m', 'immediate', 'stop']).catch(() => {})
    await removeTree(folder)
    // Stood down, not run: its script removes the drill's whole staging folder, which the drill still
    // uses (and removes itself); run here, it raced the drill's own removal of it.
    guard.dismiss()
  }

  try {
    // --no-sync: initdb ends by flushing each of the thousand files it wrote, which a cluster thrown
    // away after the drill does not need, as its server needs no fsync. The flush waits on the disk: on
    // an idle one it took initdb from 0.9 s to 1.2 s; once, on a disk that a test run had just written
    // to, to 131 s.
    await asServer('initdb', [
      '-D',
      dataDir,
      '-U',
      'divio_drill',
      '--auth=trust',
      '--encoding=UTF8',
      '--locale=C',
      '--no-sync',
    ])
    await asServer('pg_ctl', [
      '-D',
      dataDir,
      '-l',
      join(folder, 'server.log'),
      '-o',
      `-c listen_addresses='' -k ${folder} -p 5432 -c fsync=off -c full_page_writes=off`,
      '-w',
      '-t',
      '60',
      'start',
    ])
  } catch (error) {
    await stop()
    throw new BackupError(
      'SOURCE_UNAVAILABLE',
      `Cannot start a scratch PostgreSQL server for the drill: ${(error as Error).message}`,
      {
        cause: error,
        suggestion:
          'Check the PostgreSQL server installation (initdb, pg_ctl), or point DIVIO_BACKUP_PG_BINDIR at its bin folder.',
      },
    )
  }

  try {
    const url = (database: string) =>
      new URL(`postgresql://divio_drill@localhost:5432/${database}?host=${encodeURIComponent(folder)}`)
    await new PostgresProvider(url('postgres'), binDir).firstValue('CREATE DATABASE drill', signal)
    const provider = new PostgresProvider(url('drill'), binDir)
    await provider.restore(dumpPath, {signal, tempDir: folder})
    const version = (await run(join(binDir, 'postgres'), ['--version'])).trim()
    return {
      close: stop,
      facts: () => provider.facts(signal),
      firstValue: (sql) => provider.firstValue(sql, signal),
      async integrity() {
        const result = await provider.amcheck(signal)
        return result === undefined ? undefined : {result, tool: 'pg_amcheck'}
      },
      tools: {postgres: version},
    }
  } catch (error) {
    await stop()
    throw error
  }
}

/** DIVIO_BACKUP_PG_BINDIR, else the newest server of the Debian layout, else initdb on PATH. */
function serverBinDir(variables: NodeJS.ProcessEnv): string {
  if (variables.DIVIO_BACKUP_PG_BINDIR) return variables.DIVIO_BACKUP_PG_BINDIR
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((version) => existsSync(join(root, version, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : []
  if (versions.length > 0) return join(root, versions[0], 'bin')
  const onPath = (variables.PATH ?? '').split(':').find((folder) => existsSync(join(folder, 'initdb')))
  if (onPath) return onPath
  throw new BackupError(
    'SOURCE_UNAVAILABLE',
    'A drill of a PostgreSQL backup needs the PostgreSQL server programs (initdb, pg_ctl).',
    {
      suggestion: 'Install them (apt-get install postgresql), or point DIVIO_BACKUP_PG_BINDIR at their bin folder.',
    },
  )
}
