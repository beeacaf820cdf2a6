import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {closeSync, mkdtempSync, openSync, readFileSync, writeFileSync, writeSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {loadSqliteEngine, SQLITE_ENGINES} from '../../src/providers/database/sqlite-engine.js'
import {cli, makeProject} from '../helpers/project.js'
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
      await Promise.all([engine.backup(source, copy, {}), writer])
      database.close()

      expect(await engine.quickCheck(copy, {})).to.equal('ok')
      const [count, bytes] = rowsBySqlite3(copy).split('|').map(Number)
      expect(count).to.be.at.least(2000)
      expect(bytes).to.equal(count * 512)
      expect(execFileSync('sqlite3', [copy, 'PRAGMA integrity_check'], {encoding: 'utf8'}).trim()).to.equal('ok')
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
      await engine.backup(join(folder, 'missing.sqlite3'), copy, {}).catch((error: unknown) => {
        failure = error
      })
      expect(failure, 'a missing source must fail').to.be.instanceOf(Error)
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
