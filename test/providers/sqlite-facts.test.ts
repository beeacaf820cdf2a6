import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {mkdtempSync, readdirSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {schemaHash, sqliteFacts} from '../../src/providers/database/facts.js'
import {loadSqliteEngine, SQLITE_ENGINES} from '../../src/providers/database/sqlite-engine.js'
import {cli, makeProject} from '../helpers/project.js'
import {openTestDatabase} from '../helpers/sqlite.js'

const available = (await Promise.all(SQLITE_ENGINES.map((name) => loadSqliteEngine(name)))).flatMap((engine) =>
  engine ? [engine] : [],
)

/** A database with awkward table names, more tables than one compound SELECT may count, and a view. */
function awkwardDatabase(): string {
  const path = join(mkdtempSync(join(tmpdir(), 'divio-facts-')), 'app.sqlite3')
  const database = openTestDatabase(path)
  database.exec(`CREATE TABLE "we""ird name" (id INTEGER PRIMARY KEY); CREATE TABLE "ünï 文件" (x);`)
  database.exec(`INSERT INTO "we""ird name" DEFAULT VALUES; INSERT INTO "we""ird name" DEFAULT VALUES;`)
  database.exec(`CREATE VIEW everything AS SELECT * FROM "we""ird name"; CREATE INDEX i ON "ünï 文件" (x);`)
  for (let index = 0; index < 450; index++)
    database.exec(`CREATE TABLE t${index} (v); INSERT INTO t${index} VALUES (${index});`)
  database.close()
  return path
}

describe('facts recorded at backup time: SQLite', () => {
  it('every engine counts every table exactly and hashes the schema the same way', async () => {
    expect(available.length).to.be.greaterThan(0)
    const path = awkwardDatabase()
    const results = await Promise.all(available.map((engine) => sqliteFacts(engine, path, {})))
    for (const facts of results) expect(facts, 'the same facts from each engine').to.deep.equal(results[0])
    const [facts] = results
    expect(facts.counted).to.equal('exact')
    expect(Object.keys(facts.tables)).to.have.length(452)
    expect(facts.tables['we"ird name']).to.equal(2)
    expect(facts.tables['ünï 文件']).to.equal(0)
    expect(facts.tables.t449).to.equal(1)
    expect(facts.rows).to.equal(2 + 450)
    expect(facts.tables).to.not.have.property('everything')
    // The stock sqlite3 program agrees on the count of a table.
    expect(
      execFileSync('sqlite3', ['-readonly', path, 'SELECT count(*) FROM "we""ird name"'], {encoding: 'utf8'}).trim(),
    ).to.equal('2')
  })

  it('the schema hash ignores whitespace and order, and changes with the schema', () => {
    const a = schemaHash(['CREATE TABLE a (x)', 'CREATE  TABLE b\n(y)'])
    expect(schemaHash(['CREATE TABLE b (y)', '  CREATE TABLE a (x) '])).to.equal(a)
    expect(schemaHash(['CREATE TABLE a (x)', 'CREATE TABLE b (y, z)'])).to.not.equal(a)
  })

  it('a table changed between two backups shows in their manifests; countRows: false records none', async () => {
    const project = makeProject()
    expect((await cli(project, ['create', '--db-only'])).status).to.equal(0)
    const database = openTestDatabase(join(project.root, 'db.sqlite3'))
    database.exec("DELETE FROM auth_user WHERE id <= 5; INSERT INTO shop_product (name) VALUES ('new')")
    database.close()
    expect((await cli(project, ['create', '--db-only'])).status).to.equal(0)
    const manifests = () => {
      const folder = join(project.store, 'shop', 'local')
      return readdirSync(folder)
        .map(
          (id) =>
            JSON.parse(readFileSync(join(folder, id, 'manifest.json'), 'utf8')) as {
              components: {database: {facts?: {rows: number; schemaSha256: string; tables: Record<string, number>}}}
              createdAt: string
            },
        )
        .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
        .map((manifest) => manifest.components.database.facts)
    }

    const [first, second] = manifests()
    expect(first?.tables).to.deep.equal(
      Object.fromEntries([
        ['auth_user', 50],
        ['shop_product', 20],
      ]),
    )
    expect(second?.tables).to.deep.equal(
      Object.fromEntries([
        ['auth_user', 45],
        ['shop_product', 21],
      ]),
    )
    expect(second?.rows).to.equal(66)
    expect(second?.schemaSha256).to.equal(first?.schemaSha256)

    const config = {environments: {local: {countRows: false}}}
    execFileSync('mkdir', ['-p', join(project.root, '.divio')])
    execFileSync('sh', ['-c', `printf '%s' '${JSON.stringify(config)}' > .divio/backups.json`], {cwd: project.root})
    expect((await cli(project, ['create', '--db-only'])).status).to.equal(0)
    expect(manifests()[2]).to.equal(undefined)
  })
})
