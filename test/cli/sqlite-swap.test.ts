import {expect} from 'chai'
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {once} from 'node:events'
import {existsSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {loadSqliteEngine, SQLITE_ENGINES, SqliteEngineName} from '../../src/providers/database/sqlite-engine.js'
import {SWAP_GUARD} from '../../src/providers/database/sqlite.js'
import {cliUnderStrace} from '../helpers/kill.js'
import {until} from '../helpers/processes.js'
import {cli, makeProject, Project} from '../helpers/project.js'
import {requireRoot, requireTool} from '../helpers/tools.js'

const ROWS_BACKED_UP = 50
const ROWS_SINCE = 7

/**
 * The project's database in WAL mode with rows committed since the backup that are only in its -wal:
 * what an app killed (or still running) leaves. SQLite replays a -wal into whatever file bears its name.
 */
async function withLiveWal(database: string): Promise<void> {
  const writer = spawn('sqlite3', [database], {stdio: ['pipe', 'pipe', 'inherit']})
  const inserts = Array.from(
    {length: ROWS_SINCE},
    (_, index) => `INSERT INTO auth_user (username) VALUES ('since${index}');`,
  )
  writer.stdin.write(
    `PRAGMA journal_mode=WAL;\nPRAGMA wal_autocheckpoint=0;\n${inserts.join('\n')}\nSELECT 'written';\n`,
  )
  let output = ''
  writer.stdout.setEncoding('utf8').on('data', (text: string) => {
    output += text
  })
  await until(() => output.includes('written'), 'the rows are committed')
  // Killed with its connection open: nothing is checkpointed, and the -wal stays.
  writer.kill('SIGKILL')
  await once(writer, 'exit')
  expect(existsSync(`${database}-wal`)).to.equal(true)
}

const users = (database: string) =>
  Number(execFileSync('sqlite3', [database, 'SELECT count(*) FROM auth_user'], {encoding: 'utf8'}))
const beside = (project: Project) => readdirSync(project.root).filter((name) => name.startsWith('.db.sqlite3'))

describe('restoring an SQLite database over one with a live -wal', function () {
  let project: Project
  let id: string
  const database = () => join(project.root, 'db.sqlite3')

  before(async () => {
    project = makeProject()
    const created = await cli(project, ['create', '--db-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    id = (created.json() as {id: string}).id
  })

  it('gives the restored database, with nothing of the old -wal replayed into it', async () => {
    await withLiveWal(database())
    expect(users(database())).to.equal(ROWS_BACKED_UP + ROWS_SINCE)
    await withLiveWal(database())
    const restored = await cli(project, ['restore', id, '--db-only', '--confirm', 'local', '--no-safety-backup'])
    expect(restored.status, restored.stderr).to.equal(0)
    expect(existsSync(`${database()}-wal`)).to.equal(false)
    expect(beside(project)).to.deep.equal([])
    expect(users(database())).to.equal(ROWS_BACKED_UP)
  })

  // A kill at each step of the swap, injected by strace into the step's own system call: whatever the
  // machine's speed, the database is then the old one with its -wal, or the restored one without it.
  const kills: Array<{at: string; path: (database: string) => string; syscalls: string}> = [
    {at: "the first call on the old -wal's name", path: (file) => `${file}-wal`, syscalls: 'rename,unlink'},
    {at: "the first call on the old -shm's name", path: (file) => `${file}-shm`, syscalls: 'rename,unlink'},
    {at: 'the flush of the folder before the swap', path: (file) => join(file, '..'), syscalls: 'open,openat'},
  ]
  for (const {at, path, syscalls} of kills) {
    it(`a kill at ${at} leaves the old database and its -wal, or the restored one without it`, async function () {
      requireTool(this, 'strace', 'strace')
      // Counted before the -wal is made: a count opens the database, and its close checkpoints the -wal.
      const old = users(database()) + ROWS_SINCE
      await withLiveWal(database())
      const before = statSync(database()).ino
      const traced = cliUnderStrace(project, ['restore', id, '--db-only', '--confirm', 'local', '--no-safety-backup'], {
        inject: 'signal=KILL',
        path: path(database()),
        syscalls,
      })
      // strace ends as its tracee did: by the signal.
      expect(traced.signal, `killed by the injected signal (${traced.stderr})`).to.equal('SIGKILL')
      // Its guard finishes what the kill interrupted, once the process is gone.
      await until(() => beside(project).length === 0, 'nothing left beside the database')
      const swapped = statSync(database()).ino !== before
      if (swapped) {
        expect(existsSync(`${database()}-wal`), 'no -wal beside the restored database').to.equal(false)
        expect(users(database())).to.equal(ROWS_BACKED_UP)
      } else {
        expect(existsSync(`${database()}-wal`), 'the old database keeps its -wal').to.equal(true)
        expect(users(database())).to.equal(old)
      }

      expect(execFileSync('sqlite3', [database(), 'PRAGMA integrity_check'], {encoding: 'utf8'}).trim()).to.equal('ok')
    })
  }

  it("the swap's guard: before the swap it puts the -wal and -shm back, after it removes them", () => {
    const folder = project.root
    const names = ['copy', 'wal-aside', 'wal', 'shm-aside', 'shm'].map((name) => join(folder, `guard-${name}`))
    const [copy, walAside, wal, shmAside, shm] = names
    const guard = () => spawnSync('sh', ['-c', SWAP_GUARD, 'guard', ...names], {encoding: 'utf8'})
    for (const file of [copy, walAside, shmAside]) writeFileSync(file, file)
    expect(guard().status).to.equal(0)
    expect(names.map((file) => existsSync(file))).to.deep.equal([false, false, true, false, true])

    for (const file of [wal, shm]) execFileSync('rm', ['-f', file])
    for (const file of [walAside, shmAside]) writeFileSync(file, file)
    expect(guard().status).to.equal(0)
    expect(names.map((file) => existsSync(file))).to.deep.equal([false, false, false, false, false])
  })
})

/**
 * A database file mounted over its path (a container's single-file volume, `-v ./db.sqlite3:/app/db.sqlite3`)
 * cannot be renamed over: the restore failed with EBUSY. The restored copy is now written into the
 * mounted file by SQLite's own backup, in one transaction, with every engine this machine has.
 */
describe('restoring an SQLite database file that is a mount point', function () {
  let project: Project
  let database: string
  let volume: string

  before(function () {
    requireRoot(this, 'a bind mount')
  })

  beforeEach(() => {
    project = makeProject()
    database = join(project.root, 'db.sqlite3')
    volume = join(project.root, '..', 'volume.sqlite3')
    execFileSync('cp', [database, volume])
    execFileSync('mount', ['--bind', volume, database])
  })

  afterEach(() => {
    spawnSync('umount', [database])
  })

  it('writes the backup into the mounted file, over a live -wal, with every engine here; nothing is left beside it', async () => {
    const created = await cli(project, ['create', '--db-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    // Not every engine is on every Node.js line (node:sqlite from 22.16, better-sqlite3 where built):
    // the lanes of the other lines run the rest. The sqlite3 program is on every machine that runs this.
    const engines: SqliteEngineName[] = []
    for (const engine of SQLITE_ENGINES) if (await loadSqliteEngine(engine)) engines.push(engine)
    expect(engines).to.include('cli')
    for (const engine of engines) {
      await withLiveWal(database)
      expect(users(database)).to.equal(ROWS_BACKED_UP + ROWS_SINCE)
      const restored = await cli(project, ['restore', id, '--db-only', '--confirm', 'local', '--no-safety-backup'], {
        DIVIO_BACKUP_SQLITE: engine,
      })
      expect(restored.status, `${engine}: ${restored.stderr}`).to.equal(0)
      expect(users(database), engine).to.equal(ROWS_BACKED_UP)
      expect(users(volume), `${engine}: written through the mount, into the volume`).to.equal(ROWS_BACKED_UP)
      expect(
        readFileSync('/proc/self/mountinfo', 'utf8')
          .split('\n')
          .some((line) => line.split(' ')[4] === database),
        `${engine}: the file is still mounted`,
      ).to.equal(true)
      expect(readdirSync(project.root).filter((name) => name.startsWith('.db.sqlite3.'))).to.deep.equal([])
    }
  })
})
