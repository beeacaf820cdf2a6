import {expect} from 'chai'
import {ChildProcess, execFileSync, spawn} from 'node:child_process'
import {once} from 'node:events'
import {closeSync, mkdtempSync, openSync, readFileSync, writeFileSync, writeSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {processesHolding} from '../../src/lib/open-files.js'
import {loadSqliteEngine, SQLITE_ENGINES} from '../../src/providers/database/sqlite-engine.js'
import {until} from '../helpers/processes.js'
import {cli, cliAsync, makeProject} from '../helpers/project.js'
import {openTestDatabase} from '../helpers/sqlite.js'
import {requireTool} from '../helpers/tools.js'

/** The engines this Node.js can run; each gets the same checks. Which ones they are is itself tested below. */
const available = (await Promise.all(SQLITE_ENGINES.map((name) => loadSqliteEngine(name)))).flatMap((engine) =>
  engine ? [engine.name] : [],
)

/** Rows as the stock sqlite3 program reads them: an independent check of each engine's copy. */
function rowsBySqlite3(path: string): string {
  return execFileSync('sqlite3', ['-readonly', path, 'SELECT count(*), sum(length(data)) FROM filler'], {
    encoding: 'utf8',
  }).trim()
}

/**
 * The app, in Python's sqlite3: commits a row every 2 ms until `stop` exists, each commit waiting up to
 * 120 s for a lock; prints `writing` after its first ten, and at the end its writes and failures.
 */
const BUSY_WRITER = `
import os, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=120)
writes = failures = 0
announced = False
while not os.path.exists(sys.argv[2]):
    try:
        db.execute('INSERT INTO filler (data) VALUES (?)', (b'w' * 512,))
        db.commit()
        writes += 1
    except sqlite3.OperationalError as error:
        failures += 1
        print(error, file=sys.stderr)
    if writes == 10 and not announced:
        print('writing', flush=True)
        announced = True
    time.sleep(0.002)
print(writes, failures, flush=True)
`

/** A migration's lock, in rollback-journal mode (SQLite's default): no reader may start until stdin ends. Prints `held`. */
function holdLocked(path: string): ChildProcess {
  const hold =
    "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1], isolation_level=None)\ndb.execute('BEGIN EXCLUSIVE')\nprint('held', flush=True)\nsys.stdin.read()"
  return spawn('python3', ['-c', hold, path], {stdio: ['pipe', 'pipe', 'inherit']})
}

for (const name of available) {
  describe(`SQLite engine: ${name}`, function () {
    before(function () {
      requireTool(this, 'sqlite3', 'sqlite3')
    })

    it('copies a database that is being written to into a consistent file the sqlite3 program reads', async () => {
      const engine = (await loadSqliteEngine(name))!
      const folder = mkdtempSync(join(tmpdir(), 'divio-sqlite-engine-'))
      const source = join(folder, 'app.sqlite3')
      const database = openTestDatabase(source)
      database.exec('PRAGMA journal_mode=WAL; CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB)')
      const insert = database.prepare('INSERT INTO filler (data) VALUES (?)')
      for (let index = 0; index < 2000; index++) insert.run(Buffer.alloc(512, index % 256))
      const copy = join(folder, 'copy.sqlite3')
      writeFileSync(copy, '', {mode: 0o600})
      // Writes go on while the backup runs (a bounded number: SQLite restarts a backup whose source
      // another connection changes); the copy holds one consistent state of them.
      const writer = (async () => {
        for (let write = 0; write < 200; write++) {
          insert.run(Buffer.alloc(512, 7))

          await new Promise<void>((resolve) => {
            setImmediate(resolve)
          })
        }
      })()
      await Promise.all([engine.backup(source, copy, {busyTimeoutMs: 60_000}), writer])
      database.close()

      expect(await engine.quickCheck(copy, {})).to.equal('ok')
      const [count, bytes] = rowsBySqlite3(copy).split('|').map(Number)
      expect(count).to.be.at.least(2000)
      expect(bytes).to.equal(count * 512)
      expect(execFileSync('sqlite3', [copy, 'PRAGMA integrity_check'], {encoding: 'utf8'}).trim()).to.equal('ok')
    })

    for (const journal of ['wal', 'delete'] as const)
      it(`copies a database that the app writes to without pause (journal_mode ${journal}) in one snapshot: the copy ends, and no write of the app fails`, async () => {
        const engine = (await loadSqliteEngine(name))!
        const folder = mkdtempSync(join(tmpdir(), 'divio-sqlite-engine-'))
        const source = join(folder, 'busy.sqlite3')
        const database = openTestDatabase(source)
        database.exec(`PRAGMA journal_mode=${journal}; CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB)`)
        database.exec('BEGIN')
        const insert = database.prepare('INSERT INTO filler (data) VALUES (?)')
        // About 40 MB: a copy in steps takes far longer than the writer's pause between commits.
        for (let index = 0; index < 20_000; index++) insert.run(Buffer.alloc(2000, index % 256))
        database.exec('COMMIT')
        database.close()
        // Another process, as the app is: a commit every 2 ms, each waiting as long as it must.
        const stop = join(folder, 'stop')
        const app = spawn('python3', ['-c', BUSY_WRITER, source, stop], {stdio: ['ignore', 'pipe', 'inherit']})
        let report = ''
        app.stdout.setEncoding('utf8').on('data', (text: string) => {
          report += text
        })
        const exited = once(app, 'exit')
        while (!report.includes('writing\n')) await sleep(20)

        const copy = join(folder, 'copy.sqlite3')
        writeFileSync(copy, '', {mode: 0o600})
        // A copy that starts over at every commit never ends while the app writes: after two minutes
        // the app stops, which lets it end, and the test fails.
        let outlasted = false
        const hang = setTimeout(() => {
          outlasted = true
          writeFileSync(stop, '')
        }, 120_000)
        const outcome = await engine.backup(source, copy, {busyTimeoutMs: 60_000}).then(
          () => 'copied',
          (error: Error) => error.message,
        )
        clearTimeout(hang)
        writeFileSync(stop, '')
        await exited
        const [writes, failures] = report.trim().split('\n').at(-1)!.split(' ').map(Number)
        expect(outcome).to.equal('copied')
        expect(outlasted, 'the copy ended while the app was still writing').to.equal(false)
        expect(failures, "the app's writes all went through").to.equal(0)
        expect(writes, 'the app wrote while the copy was taken').to.be.at.least(10)
        expect(await engine.quickCheck(copy, {})).to.equal('ok')
        const [count] = rowsBySqlite3(copy).split('|').map(Number)
        expect(count).to.be.within(20_000, 20_000 + writes)
      })

    it('quick_check reports a damaged database, and a missing one fails the backup', async () => {
      const engine = (await loadSqliteEngine(name))!
      const folder = mkdtempSync(join(tmpdir(), 'divio-sqlite-engine-'))
      const path = join(folder, 'damaged.sqlite3')
      const database = openTestDatabase(path)
      database.exec('CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB); CREATE INDEX by_data ON filler (data)')
      const insert = database.prepare('INSERT INTO filler (data) VALUES (?)')
      for (let index = 0; index < 500; index++) insert.run(Buffer.alloc(300, index % 256))
      database.close()
      // Garbage over the middle pages: the header still says SQLite, the b-trees do not add up.
      const pageSize = readFileSync(path).readUInt16BE(16)
      const handle = openSync(path, 'r+')
      writeSync(handle, Buffer.alloc(pageSize * 4, 0xa5), 0, pageSize * 4, pageSize * 20)
      closeSync(handle)
      expect(await engine.quickCheck(path, {}).catch((error: Error) => error.message)).to.not.equal('ok')

      const copy = join(folder, 'copy.sqlite3')
      writeFileSync(copy, '', {mode: 0o600})
      let failure: unknown
      await engine.backup(join(folder, 'missing.sqlite3'), copy, {busyTimeoutMs: 60_000}).catch((error: unknown) => {
        failure = error
      })
      expect(failure, 'a missing source must fail').to.be.instanceOf(Error)
    })

    it('a database that another connection holds locked past the wait fails the backup as locked (exit 7), and is taken once it is free', async () => {
      const project = makeProject()
      const env = {DIVIO_BACKUP_SQLITE: name, DIVIO_BACKUP_STALL_SECONDS: '2'}
      const holder = holdLocked(join(project.root, 'db.sqlite3'))
      const [held] = (await once(holder.stdout!, 'data')) as [Buffer]
      expect(held.toString().trim()).to.equal('held')
      const locked = await cli(project, ['create', '--db-only', '--json'], env)
      holder.stdin!.end()
      await once(holder, 'exit')
      expect(locked.status, locked.stderr).to.equal(7)
      const {error} = locked.json() as {error: {code: string; message: string}}
      expect(error.code).to.equal('SOURCE_UNAVAILABLE')
      expect(error.message).to.include(
        `The SQLite database ${join(project.root, 'db.sqlite3')} stayed locked by another connection for 1 s: something held it the whole time (a migration, a VACUUM, a long transaction).`,
      )
      const taken = await cli(project, ['create', '--db-only'], env)
      expect(taken.status, taken.stderr).to.equal(0)
    })

    it('SIGTERM ends a backup that waits for a locked database at once, as an interruption', async () => {
      const project = makeProject()
      const database = join(project.root, 'db.sqlite3')
      const holder = holdLocked(database)
      const [held] = (await once(holder.stdout!, 'data')) as [Buffer]
      expect(held.toString().trim()).to.equal('held')
      try {
        project.env.DIVIO_BACKUP_SQLITE = name
        const waiting = cliAsync(project, ['create', '--db-only', '--json'])
        let stdout = ''
        waiting.stdout.setEncoding('utf8').on('data', (text: string) => {
          stdout += text
        })
        const ended = once(waiting, 'exit')
        // Waiting: the database is open in the command, or in its sqlite3, besides the holder.
        await until(
          () => processesHolding([database]).some(({pid}) => pid !== holder.pid),
          'the backup has the database open',
        )
        waiting.kill('SIGTERM')
        const [code] = (await ended) as [null | number]
        // Not "still running 10 s later": a wait that no signal ends held the command for the whole grace.
        const {error} = JSON.parse(stdout) as {error: {code: string; exitCode: number; message: string}}
        expect(error).to.deep.include({code: 'INTERRUPTED', exitCode: 130})
        expect(error.message).to.match(/^Interrupted: backup \S+ was not committed\./)
        expect(code).to.equal(130)
      } finally {
        holder.stdin!.end()
        await once(holder, 'exit')
      }
    })

    it('create, download and restore through the CLI with DIVIO_BACKUP_SQLITE=' + name, async () => {
      const project = makeProject()
      const env = {DIVIO_BACKUP_SQLITE: name}
      const created = await cli(project, ['create', '--db-only', '--json', '--verbose'], env)
      expect(created.status, created.stderr).to.equal(0)
      // Only the sqlite3 program is a program: --verbose names it exactly when it is the engine.
      expect(created.stderr.includes('verbose: run sqlite3 -batch -bail -readonly ')).to.equal(name === 'cli')
      expect(created.stderr).to.match(/^verbose: stage database: \d+\.\d\d s$/m)
      const {id} = created.json() as {id: string}
      const out = join(project.root, 'out')
      expect((await cli(project, ['download', id, '-o', out], env)).status).to.equal(0)
      const query = 'SELECT count(*), group_concat(username) FROM auth_user'
      const expected = execFileSync('sqlite3', [join(project.root, 'db.sqlite3'), query], {encoding: 'utf8'})
      expect(execFileSync('sqlite3', [join(out, 'database.sqlite3'), query], {encoding: 'utf8'})).to.equal(expected)

      execFileSync('sqlite3', [join(project.root, 'db.sqlite3'), 'DELETE FROM auth_user'])
      const restored = await cli(project, ['restore', id, '--db-only', '--confirm', 'local', '--no-safety-backup'], env)
      expect(restored.status, restored.stderr).to.equal(0)
      expect(execFileSync('sqlite3', [join(project.root, 'db.sqlite3'), query], {encoding: 'utf8'})).to.equal(expected)
    })
  })
}

describe('SQLite engine choice', () => {
  it('node:sqlite is used exactly where Node.js has its backup API (22.16+), and the sqlite3 program always works', () => {
    const [major, minor] = process.versions.node.split('.').map(Number)
    expect(available.includes('node'), `node:sqlite on ${process.version}`).to.equal(
      major > 22 || (major === 22 && minor >= 16),
    )
    expect(available, 'the compiler-free fallback').to.include('cli')
    expect(available.length).to.be.at.least(2)
  })

  it('DIVIO_BACKUP_SQLITE naming no engine is a config error that lists the engines', async () => {
    const project = makeProject()
    const result = await cli(project, ['create', '--db-only'], {DIVIO_BACKUP_SQLITE: 'postgres'})
    expect(result.status).to.equal(2)
    expect(result.stderr).to.match(
      /\nError: Backup \S+ failed and was not committed: DIVIO_BACKUP_SQLITE is "postgres", which is no SQLite engine\.\n/,
    )
    expect(result.stderr).to.match(
      /\nTry this: Set it to one of node, better-sqlite3, cli, or unset it to use the first that works\. Nothing was left in the store\.\n$/,
    )
  })
})
