import {expect} from 'chai'
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {PostgresProvider} from '../../src/providers/database/postgres.js'
import {backedUpLive, backedUpWithStall, refusedRestore, restoredOverLive} from '../helpers/live-and-test.js'
import {freePort, postgresBinDir, TestPostgres} from '../helpers/postgres.js'
import {drillStoppedOnceItsServerRuns, waitForProcess, watch} from '../helpers/processes.js'
import {cli, cliAsync, cliWithin, listFiles, makeProject, Project, runJs, writeConfig} from '../helpers/project.js'

const TABLES = ['customers', 'documents', 'events', 'bulk']

function configure(project: Project): void {
  writeConfig(project, {database: '${DATABASE_URL}', store: './.divio/backups'})
}

function seed(pg: TestPostgres, database: string): void {
  pg.psql('postgres', `CREATE DATABASE ${database}`)
  pg.psql(
    database,
    `
    CREATE SEQUENCE invoice_numbers START 1000;
    CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, invoice bigint DEFAULT nextval('invoice_numbers'));
    CREATE INDEX customers_name ON customers (name);
    INSERT INTO customers (name) SELECT 'Zoë Ünïcødé 文件 ' || g FROM generate_series(1, 500) g;
    CREATE TABLE documents (id serial PRIMARY KEY, payload bytea, meta jsonb);
    INSERT INTO documents (payload, meta) SELECT decode(md5(g::text) || md5((g * 7)::text), 'hex'), jsonb_build_object('n', g, 'tags', jsonb_build_array('a', 'ß')) FROM generate_series(1, 2000) g;
    CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), kind text);
    INSERT INTO events (kind) SELECT 'kind-' || (g % 13) FROM generate_series(1, 5000) g;
    CREATE VIEW recent_customers AS SELECT id, name FROM customers WHERE id > 400;
    CREATE TABLE bulk (id serial PRIMARY KEY, body text);
    INSERT INTO bulk (body) SELECT repeat(md5(g::text), 6) || g FROM generate_series(1, 120000) g;
    SELECT setval('invoice_numbers', 4242);
    `,
  )
}

function checksums(pg: TestPostgres, database: string): Record<string, string> {
  return Object.fromEntries(
    TABLES.map((table) => [
      table,
      pg.psql(database, `SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY id)) FROM ${table} t`).trim(),
    ]),
  )
}

function schema(binDir: string, pg: TestPostgres, database: string): string {
  // Newer pg_dump releases wrap the script in \restrict/\unrestrict with a random key: not schema.
  return execFileSync(join(binDir, 'pg_dump'), ['--schema-only', '--no-owner', `--dbname=${pg.url(database, false)}`], {
    env: {...process.env, PGPASSWORD: pg.password},
  })
    .toString()
    .replaceAll(/^\\(un)?restrict .*$/gm, '')
}

describe('PostgreSQL (real server)', function () {
  let binDir: string
  let pg: TestPostgres

  before(async function () {
    const found = postgresBinDir()
    if (found === undefined) {
      console.log('      skipped: no PostgreSQL server is installed (apt-get install postgresql)')
      this.skip()
    }

    binDir = found!
    pg = await TestPostgres.start(binDir)
    seed(pg, 'shop')
  })

  after(() => pg?.stop())

  it('round trip: the dump restores into a fresh database with equal schema and data, and pg_restore -l reads it', async () => {
    expect(Number(pg.psql('shop', "SELECT pg_total_relation_size('bulk')"))).to.be.greaterThan(20 * 1024 * 1024)
    const project = makeProject()
    configure(project)
    const env = {DATABASE_URL: pg.url('shop')}
    const created = await cli(project, ['create', '--json', '--verbose'], env)
    expect(created.status, created.stderr).to.equal(0)
    const backup = created.json() as {components: {database: {engine: string; format: string}}; id: string}
    expect(backup.components.database).to.include({engine: 'postgres', format: 'custom'})
    // --verbose: every program with its arguments, each stage with its time; never the password.
    const verbose = created.stderr.split('\n').filter((line) => line.startsWith('verbose: '))
    expect(
      verbose.some((line) => /^verbose: run \S*pg_dump .*--format=custom/.test(line)),
      created.stderr,
    ).to.equal(true)
    expect(verbose.some((line) => /^verbose: run \S*pg_dump .*shop/.test(line))).to.equal(true)
    for (const stage of ['database', String.raw`commit \(manifest\.json\)`, 'retention']) {
      expect(
        verbose.some((line) => new RegExp(`^verbose: stage ${stage}: \\d+\\.\\d\\d s$`).test(line)),
        stage,
      ).to.equal(true)
    }

    expect(created.stderr).to.not.include(pg.password)
    expect(created.stderr).to.not.include(encodeURIComponent(pg.password))
    expect((await cli(project, ['create', '--db-only'], env)).stderr, 'quiet without --verbose').to.not.include(
      'verbose:',
    )

    const out = join(project.root, 'out')
    const download = await cli(project, ['download', '-o', out], env)
    expect(download.status, download.stderr).to.equal(0)
    expect(readdirSync(out).sort()).to.deep.equal(['database.dump', 'manifest.json'])
    const listing = execFileSync(join(binDir, 'pg_restore'), ['-l', join(out, 'database.dump')]).toString()
    for (const name of [
      'TABLE public bulk',
      'VIEW public recent_customers',
      'SEQUENCE public invoice_numbers',
      'INDEX public customers_name',
    ]) {
      expect(listing).to.include(name)
    }

    pg.psql('postgres', 'CREATE DATABASE restored')
    await new PostgresProvider(new URL(pg.url('restored')), binDir).restore(join(out, 'database.dump'), {
      tempDir: out,
    })
    expect(checksums(pg, 'restored')).to.deep.equal(checksums(pg, 'shop'))
    expect(pg.psql('restored', 'SELECT last_value FROM invoice_numbers').trim()).to.equal('4242')
    expect(schema(binDir, pg, 'restored')).to.equal(schema(binDir, pg, 'shop'))
  })

  it("records every table's rows and the schema hash, counted in the dump's own snapshot while writes go on", async () => {
    pg.psql('postgres', 'CREATE DATABASE facts')
    pg.psql(
      'facts',
      `CREATE SCHEMA "Other";
       CREATE TABLE "Other"."we|ird ""name""" (id int);
       INSERT INTO "Other"."we|ird ""name""" SELECT generate_series(1, 3);
       CREATE TABLE busy (id bigserial PRIMARY KEY, body text);
       INSERT INTO busy (body) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 150000) g;`,
    )
    const project = makeProject()
    configure(project)
    const env = {...project.env, DATABASE_URL: pg.url('facts')}
    // Rows are added all through the dump: the counts must be those of the dump's snapshot, not of any
    // moment of the counting.
    const writes = {on: true}
    const writer = (async () => {
      while (writes.on) {
        pg.psql('facts', "INSERT INTO busy (body) SELECT 'late' FROM generate_series(1, 50)")
        await sleep(5)
      }
    })()
    const created = await new Promise<{code: null | number; stdout: string}>((resolve) => {
      const child = spawn(process.execPath, [runJs, 'app', 'backup', 'create', '--db-only', '--json'], {
        cwd: project.root,
        env,
        stdio: ['ignore', 'pipe', 'ignore'],
      })
      let stdout = ''
      child.stdout.setEncoding('utf8').on('data', (text: string) => {
        stdout += text
      })
      child.on('close', (code) => resolve({code, stdout}))
    })
    writes.on = false
    await writer
    expect(created.code).to.equal(0)
    const {id} = JSON.parse(created.stdout) as {id: string}
    const facts = () =>
      readdirSync(join(project.store, 'shop', 'live'))
        .map(
          (name) =>
            JSON.parse(readFileSync(join(project.store, 'shop', 'live', name, 'manifest.json'), 'utf8')) as {
              components: {
                database: {facts: {counted: string; rows: number; schemaSha256: string; tables: Record<string, number>}}
              }
              createdAt: string
              id: string
            },
        )
        .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
        .map((manifest) => ({id: manifest.id, ...manifest.components.database.facts}))
    const [first] = facts()
    expect(first.id).to.equal(id)
    expect(first.counted).to.equal('exact')
    expect(Object.keys(first.tables)).to.deep.equal(['Other.we|ird "name"', 'public.busy'])
    expect(first.tables['Other.we|ird "name"']).to.equal(3)

    // What the dump holds is what was counted.
    const out = join(project.root, 'out')
    expect((await cli(project, ['download', '-o', out], env)).status).to.equal(0)
    pg.psql('postgres', 'CREATE DATABASE facts_restored')
    await new PostgresProvider(new URL(pg.url('facts_restored')), binDir).restore(join(out, 'database.dump'), {
      tempDir: out,
    })
    expect(Number(pg.psql('facts_restored', 'SELECT count(*) FROM busy'))).to.equal(first.tables['public.busy'])
    expect(Number(pg.psql('facts', 'SELECT count(*) FROM busy')), 'writes went on during the dump').to.be.greaterThan(
      first.tables['public.busy'],
    )

    // A changed table shows in the next backup's counts; a changed schema in its hash.
    pg.psql('facts', 'DELETE FROM "Other"."we|ird ""name""" WHERE id = 1')
    expect((await cli(project, ['create', '--db-only'], env)).status).to.equal(0)
    pg.psql('facts', 'ALTER TABLE busy ADD COLUMN extra int')
    expect((await cli(project, ['create', '--db-only'], env)).status).to.equal(0)
    const [, second, third] = facts()
    expect(second.tables['Other.we|ird "name"']).to.equal(2)
    expect(second.schemaSha256).to.equal(first.schemaSha256)
    expect(third.schemaSha256).to.not.equal(first.schemaSha256)
  })

  it('a restore that fails part-way is rolled back whole', async () => {
    const dumpDir = mkdtempSync(join(tmpdir(), 'pg-dump-'))
    const dumpFile = join(dumpDir, 'shop.dump')
    execFileSync(
      join(binDir, 'pg_dump'),
      ['--format=custom', `--file=${dumpFile}`, `--dbname=${pg.url('shop', false)}`],
      {env: {...process.env, PGPASSWORD: pg.password}},
    )
    pg.psql('postgres', 'CREATE DATABASE half')
    // A conflicting object makes the restore fail after it has already created other tables.
    pg.psql(
      'half',
      'CREATE TABLE keepme (x int); INSERT INTO keepme VALUES (1); CREATE FUNCTION customers() RETURNS int LANGUAGE sql AS $$SELECT 1$$; CREATE TYPE events AS (a int)',
    )
    const error = await new PostgresProvider(new URL(pg.url('half')), binDir)
      .restore(dumpFile, {tempDir: dirname(dumpFile)})
      .catch((error_: Error) => error_)
    expect(error?.message).to.match(/failed and was rolled back/)
    expect(
      pg
        .psql('half', "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")
        .trim(),
    ).to.equal('keepme')
  })

  it("with a pg_restore older than the one that restricts psql, restores the archive's way: the backup's tables only", async () => {
    // pg_restore before CVE-2025-8714's fix, as far as this goes: its script has no \restrict line.
    const olderBin = mkdtempSync(join(tmpdir(), 'pg-older-'))
    for (const tool of readdirSync(binDir)) symlinkSync(join(binDir, tool), join(olderBin, tool))
    rmSync(join(olderBin, 'pg_restore'))
    writeFileSync(
      join(olderBin, 'pg_restore'),
      [
        '#!/bin/sh',
        `case " $* " in *" --file=- "*) ;; *) exec ${JSON.stringify(join(binDir, 'pg_restore'))} "$@";; esac`,
        `out=$(mktemp) && ${JSON.stringify(join(binDir, 'pg_restore'))} "$@" > "$out" || exit $?`,
        String.raw`grep -v '^\\\(un\)\?restrict ' "$out"; rm -f "$out"`,
        '',
      ].join('\n'),
      {mode: 0o755},
    )
    const dumpFile = join(mkdtempSync(join(tmpdir(), 'pg-dump-')), 'shop.dump')
    execFileSync(
      join(binDir, 'pg_dump'),
      ['--format=custom', `--file=${dumpFile}`, `--dbname=${pg.url('shop', false)}`],
      {
        env: {...process.env, PGPASSWORD: pg.password},
      },
    )
    pg.psql('postgres', 'CREATE DATABASE older_tools')
    pg.psql('older_tools', 'CREATE TABLE added_later (x int)')
    await new PostgresProvider(new URL(pg.url('older_tools')), olderBin).restore(dumpFile, {tempDir: dirname(dumpFile)})
    expect(checksums(pg, 'older_tools')).to.deep.equal(checksums(pg, 'shop'))
    expect(pg.psql('older_tools', "SELECT to_regclass('added_later') IS NOT NULL").trim()).to.equal('t')
  })

  it('keeps the password out of argv, output, errors and --json, and fails cleanly when the server dies mid-dump', async () => {
    const project = makeProject()
    configure(project)
    project.env.DATABASE_URL = pg.url('shop')
    // Hold a lock so that pg_dump waits inside the dump: the server can then be killed while it runs.
    const locker = await pg.holding('shop', 'LOCK TABLE bulk IN ACCESS EXCLUSIVE MODE')

    const run = watch(cliAsync(project, ['create', '--json']))
    const dump = await waitForProcess(
      run.pid,
      (argv) => argv[0].endsWith('pg_dump') && argv.some((arg) => arg.includes(`:${pg.port}/shop`)),
    )
    const cmdline = dump?.argv.join(' ')
    const environ = dump?.environ ?? ''
    expect(cmdline, 'pg_dump never started').to.be.a('string')
    expect(cmdline).to.not.include(pg.password)
    expect(cmdline).to.not.include(encodeURIComponent(pg.password))
    expect(environ).to.include(`PGPASSWORD=${pg.password}`)

    pg.kill()
    locker.kill()
    try {
      expect(await run.exited).to.equal(1)
      const {stderr, stdout} = run.output()
      const {error} = JSON.parse(stdout) as {error: {code: string; message: string}}
      expect(error.code).to.equal('BACKUP_FAILED')
      expect(error.message).to.match(/The database dump did not finish: pg_dump exited with status 1: pg_dump: .+/)
      for (const text of [stdout, stderr]) {
        expect(text).to.not.include(pg.password)
        expect(text).to.not.include(encodeURIComponent(pg.password))
      }

      expect(listFiles(project.store).filter((path) => path.endsWith('manifest.json'))).to.deep.equal([])
    } finally {
      // The next tests need the server, even when an assertion above failed.
      pg.start()
    }
  })

  it('restore live → test through the CLI: equal data, a safety backup, what a migration added replaced, and a failure rolled back', async () => {
    const project = makeProject()
    pg.psql('postgres', 'CREATE DATABASE shop_test')
    pg.psql(
      'shop_test',
      "CREATE TABLE customers (id serial PRIMARY KEY, name text); INSERT INTO customers (name) VALUES ('test only')",
    )
    const id = await backedUpLive(project, {live: pg.url('shop'), test: pg.url('shop_test')})

    const restored = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test', '--json'])
    expect(restored.status, restored.stderr).to.equal(0)
    expect(checksums(pg, 'shop_test')).to.deep.equal(checksums(pg, 'shop'))
    expect(restored.stdout + restored.stderr).to.not.include(pg.password)
    const {safetyBackup} = restored.json() as {safetyBackup: string}
    const listed = (await cli(project, ['list', '-e', 'test', '--json'])).json() as Array<{id: string; note: string}>
    expect(listed).to.have.length(1)
    expect(listed[0]).to.include({id: safetyBackup, note: `before restore of ${id}`})

    // A migration after the backup: a table that refers to a restored one, a view over both, a column.
    // pg_restore --clean alone could drop none of the backup's tables around them, and failed whole.
    pg.psql(
      'shop_test',
      `CREATE TABLE loyalty (id serial PRIMARY KEY, customer int NOT NULL REFERENCES customers (id));
       INSERT INTO loyalty (customer) VALUES (1);
       CREATE VIEW blocker AS SELECT count(*) AS n FROM bulk JOIN loyalty ON true;
       ALTER TABLE customers ADD COLUMN tier int; UPDATE customers SET name = 'changed in test' WHERE id = 1`,
    )
    const tables = (database: string) =>
      pg.psql(
        database,
        "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public'",
      )
    const again = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test', '--no-safety-backup'])
    expect(again.status, again.stderr).to.equal(0)
    expect(tables('shop_test')).to.equal(tables('shop'))
    expect(schema(binDir, pg, 'shop_test')).to.equal(schema(binDir, pg, 'shop'))
    expect(checksums(pg, 'shop_test')).to.deep.equal(checksums(pg, 'shop'))

    // A failure at the restore's end (an event trigger refuses its last index) rolls back all of it,
    // the drops first: test is as it was.
    pg.psql(
      'shop_test',
      `CREATE TABLE loyalty (id serial PRIMARY KEY, customer int NOT NULL REFERENCES customers (id));
       INSERT INTO loyalty (customer) VALUES (1); UPDATE customers SET name = 'changed in test' WHERE id = 1;
       CREATE FUNCTION no_index() RETURNS event_trigger LANGUAGE plpgsql AS
         $$BEGIN IF (SELECT count(*) FROM pg_indexes WHERE indexname = 'customers_name') > 0 THEN RAISE 'no more indexes'; END IF; END$$;
       CREATE EVENT TRIGGER no_index ON ddl_command_end WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION no_index()`,
    )
    const before = checksums(pg, 'shop_test')
    const failed = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test', '--no-safety-backup'])
    expect(failed.status).to.equal(1)
    expect(failed.stderr).to.match(
      /^Error: The restore into postgres(ql)?:\/\/backup_admin:\*\*\*@\S+ failed and was rolled back: psql exited with status 3: .*no more indexes/m,
    )
    expect(checksums(pg, 'shop_test')).to.deep.equal(before)
    expect(pg.psql('shop_test', 'SELECT count(*) FROM loyalty').trim()).to.equal('1')
    pg.psql('shop_test', 'DROP EVENT TRIGGER no_index')

    // Leaving: the exported database.dump goes back with the stock pg_restore alone.
    const out = join(project.root, 'export')
    expect((await cli(project, ['export', '--latest', '-o', out])).status).to.equal(0)
    pg.psql('postgres', 'CREATE DATABASE shop_by_hand')
    execFileSync(
      join(binDir, 'pg_restore'),
      [
        '--no-owner',
        '--no-privileges',
        '--single-transaction',
        `--dbname=${pg.url('shop_by_hand', false)}`,
        join(out, 'live', id, 'database.dump'),
      ],
      {env: {...process.env, PGPASSWORD: pg.password}},
    )
    expect(checksums(pg, 'shop_by_hand')).to.deep.equal(checksums(pg, 'shop'))
  })

  it('restore live → test, each with a user of its own: extensions an administrator made in test stay, and one test lacks is named', async () => {
    const project = makeProject()
    const url = (name: string) => `postgres://${name}:${name}-pw@127.0.0.1:${pg.port}/${name}`
    for (const name of ['ext_live', 'ext_test']) {
      pg.psql('postgres', `CREATE ROLE ${name} LOGIN PASSWORD '${name}-pw'`)
      pg.psql('postgres', `CREATE DATABASE ${name} OWNER ${name}`)
    }

    // The platform's administrator made the extensions in test; live's user made its own (trusted) one.
    pg.psql('ext_test', 'CREATE EXTENSION pg_trgm; CREATE EXTENSION citext; CREATE EXTENSION "uuid-ossp"')
    execFileSync(
      join(binDir, 'psql'),
      [
        '-XAtq',
        '-v',
        'ON_ERROR_STOP=1',
        '-c',
        `CREATE EXTENSION pg_trgm; CREATE EXTENSION citext; CREATE EXTENSION "uuid-ossp";
         CREATE TABLE tags (id int PRIMARY KEY, name citext NOT NULL, uuid uuid DEFAULT uuid_generate_v4());
         CREATE INDEX tags_name_trgm ON tags USING gin ((name::text) gin_trgm_ops);
         INSERT INTO tags SELECT n, 'Tag ' || n FROM generate_series(1, 500) n;`,
        `--dbname=${url('ext_live')}`,
      ],
      {env: {...process.env, PGPASSWORD: undefined}},
    )
    const id = await backedUpLive(project, {live: url('ext_live'), test: url('ext_test')})

    const restored = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test', '--json'])
    expect(restored.status, restored.stdout + restored.stderr).to.equal(0)
    expect(pg.psql('ext_test', "SELECT count(*) FROM tags WHERE name = 'TAG 7'").trim()).to.equal('1')
    expect(pg.psql('ext_test', "SELECT indexname FROM pg_indexes WHERE tablename = 'tags' ORDER BY 1").trim()).to.equal(
      'tags_name_trgm\ntags_pkey',
    )
    expect(
      pg.psql('ext_test', "SELECT extname, extowner::regrole FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1"),
    ).to.equal('citext|backup_admin\npg_trgm|backup_admin\nuuid-ossp|backup_admin\n')

    // An extension only a superuser may create, which test lacks: named, with the statement to run.
    pg.psql('ext_live', 'CREATE EXTENSION pageinspect')
    const id2 = (await cli(project, ['create', '--env', 'live', '--db-only', '--json'])).json() as {id: string}
    const refused = await cli(project, [
      'restore',
      id2.id,
      '--to-env',
      'test',
      '--confirm',
      'test',
      '--no-safety-backup',
      '--json',
    ])
    expect(refused.status).to.equal(1)
    const {error} = refused.json() as {error: {message: string; suggestion: string}}
    expect(error.message).to.match(/failed and was rolled back: .*permission denied to create extension "pageinspect"/)
    expect(error.suggestion).to.include(
      'ask an administrator to run `CREATE EXTENSION "pageinspect";` in the target database',
    )
    pg.psql('ext_test', 'CREATE EXTENSION pageinspect')
    const again = await cli(project, ['restore', id2.id, '--to-env', 'test', '--confirm', 'test', '--no-safety-backup'])
    expect(again.status, again.stderr).to.equal(0)

    // By hand, as docs/restore.md says, with the stock tools.
    const out = join(project.root, 'out')
    expect((await cli(project, ['download', id2.id, '-e', 'live', '--db-only', '-o', out])).status).to.equal(0)
    const recipe = readFileSync('docs/restore.md', 'utf8')
      .split('\n')
      .filter((line) => /^pg_restore (-l|.*--use-list)/.test(line))
    expect(recipe).to.have.length(2)
    const byHand = spawnSync('sh', ['-ec', recipe.join('\n')], {
      cwd: out,
      env: {...process.env, DATABASE_URL: url('ext_test'), PATH: `${binDir}:${process.env.PATH}`},
    })
    expect(byHand.status, byHand.stderr.toString()).to.equal(0)
  })

  it('a restore into a database that does not exist yet (a new server) says to create it, before anything is taken or changed', async () => {
    const project = makeProject()
    writeFileSync(join(project.root, 'media', 'kept.txt'), 'the target media')
    const id = await backedUpLive(project, {live: pg.url('shop'), test: pg.url('shop_new_server')}, './media')

    for (const flags of [[], ['--no-safety-backup']]) {
      const error = await refusedRestore(project, id, flags, pg.password)
      expect(error.code).to.equal('OUTPUT_UNAVAILABLE')
      expect(error.message).to.match(
        /^The database "shop_new_server" does not exist on the PostgreSQL server at 127\.0\.0\.1:\d+, so there is nothing to restore into\. Nothing was changed\.$/,
      )
      expect(error.suggestion).to.include('CREATE DATABASE "shop_new_server" OWNER "backup_admin";')
      expect(error.suggestion).to.not.include('--no-safety-backup')
    }

    // No safety backup was attempted, and the media was not touched.
    expect((await cli(project, ['list', '-e', 'test', '--json'])).json()).to.deep.equal([])
    expect(readFileSync(join(project.root, 'media', 'kept.txt'), 'utf8')).to.equal('the target media')

    // The server itself unreachable: named as such, before any safety backup.
    project.env.TEST_URL = `postgres://backup_admin:s3cret@127.0.0.1:${await freePort()}/shop`
    const error = await refusedRestore(project, id, [], 's3cret')
    expect(error.message).to.match(
      /^Cannot connect to the PostgreSQL database postgres:\/\/backup_admin:\*\*\*@127\.0\.0\.1:\d+\/shop: .*Connection refused/,
    )
    expect(error.message + error.suggestion).to.not.include('safety backup')

    // Created as the suggestion says, the same restore goes through.
    pg.psql('postgres', 'CREATE DATABASE "shop_new_server" OWNER "backup_admin";')
    project.env.TEST_URL = pg.url('shop_new_server')
    const restored = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test', '--db-only'])
    expect(restored.status, restored.stderr).to.equal(0)
    expect(checksums(pg, 'shop_new_server')).to.deep.equal(checksums(pg, 'shop'))
  })

  it('a wrong password and an unreachable server each fail fast with a clear error and no stack trace', async () => {
    const project = makeProject()
    configure(project)
    const wrong = new URL(pg.url('shop'))
    wrong.password = 'not-the-password'
    const started = Date.now()
    const denied = await cli(project, ['create'], {DATABASE_URL: wrong.href})
    expect(denied.status).to.equal(7)
    expect(denied.stderr).to.match(
      /^Error: .*Cannot connect to the PostgreSQL database postgres:\/\/backup_admin:\*\*\*@127\.0\.0\.1:\d+\/shop.*password authentication failed/m,
    )
    expect(denied.stderr).to.match(/^Try this: /m)
    expect(denied.stderr).to.not.include('not-the-password')
    expect(denied.stderr).to.not.match(/\n\s+at .+:\d+:\d+/)

    const closed = `postgres://backup_admin:secret@127.0.0.1:${await freePort()}/shop`
    const refused = await cli(project, ['create', '--json'], {DATABASE_URL: closed})
    expect(refused.status).to.equal(7)
    expect((refused.json() as {error: {code: string; message: string}}).error.message).to.match(
      /Cannot connect to the PostgreSQL database postgres:\/\/backup_admin:\*\*\*@127\.0\.0\.1:\d+\/shop: psql exited with status 2: .*Connection refused\./,
    )
    expect(refused.stdout).to.not.include('secret')
    expect(Date.now() - started).to.be.lessThan(30_000)
  })

  it('a dump larger than every buffer, to an S3 store on a closed port: exit 7 naming the cause, never a silent exit', async () => {
    const project = makeProject()
    writeConfig(project, {
      database: '${DATABASE_URL}',
      store: 's3://backups/shop?endpoint=http%3A%2F%2F127.0.0.1%3A1&forcePathStyle=true&region=us-east-1',
    })
    const env = {AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', DATABASE_URL: pg.url('shop')}
    // --json, since an unsettled pipeline used to end with exit 13 and not a byte on stdout.
    const result = await cli(project, ['create', '--db-only', '--json'], env)
    expect(result.status, result.stdout + result.stderr).to.equal(7)
    const {error} = result.json() as {error: {message: string}}
    expect(error.message).to.match(/no response from S3: ECONNREFUSED/)
    expect(result.stdout + result.stderr).to.not.include(pg.password)
  })

  it('a dump that sends nothing fails as a stall of the database, with exit 7', async () => {
    const project = makeProject()
    configure(project)
    // A pg_dump that connects to nothing and writes nothing (a server that stopped answering, seen from
    // here); its version, and the schema the row counts hash, come from the real one.
    const stuckBin = mkdtempSync(join(tmpdir(), 'stuck-pg-dump-'))
    writeFileSync(
      join(stuckBin, 'pg_dump'),
      `#!/bin/sh\ncase "$*" in *--version*|*--schema-only*) exec '${join(binDir, 'pg_dump')}' "$@";; esac\nexec sleep 600\n`,
      {mode: 0o755},
    )
    symlinkSync(join(binDir, 'psql'), join(stuckBin, 'psql'))
    const started = Date.now()
    const result = await cli(project, ['create', '--db-only'], {
      DATABASE_URL: pg.url('shop'),
      DIVIO_BACKUP_PG_BINDIR: stuckBin,
      DIVIO_BACKUP_STALL_SECONDS: '2',
    })
    expect(result.status, result.stderr).to.equal(7)
    expect(result.stderr).to.match(
      /Stalled: the postgres database postgres:\/\/backup_admin:\*\*\*@127\.0\.0\.1:\d+\/shop sent no data for \d+ s/,
    )
    expect(Date.now() - started).to.be.lessThan(30_000)
    expect(listFiles(project.store).filter((path) => path.endsWith('manifest.json'))).to.deep.equal([])
  })

  it('refuses a pg_dump older than the server, naming the version needed', async () => {
    const fakeBin = mkdtempSync(join(tmpdir(), 'old-pg-dump-'))
    writeFileSync(join(fakeBin, 'pg_dump'), '#!/bin/sh\necho "pg_dump (PostgreSQL) 9.6.24"\n', {mode: 0o755})
    symlinkSync(join(binDir, 'psql'), join(fakeBin, 'psql'))
    const project = makeProject()
    configure(project)
    const server = Number(pg.psql('postgres', 'SHOW server_version_num')) / 10_000
    const result = await cli(project, ['create'], {DATABASE_URL: pg.url('shop'), DIVIO_BACKUP_PG_BINDIR: fakeBin})
    expect(result.status, result.stderr).to.equal(7)
    expect(result.stderr).to.include(
      `pg_dump 9 cannot dump a PostgreSQL ${Math.floor(server)} server: pg_dump ${Math.floor(server)} or newer is needed.`,
    )
    expect(result.stderr).to.include(`postgresql-client-${Math.floor(server)}`)
    // The transaction that holds the dump's snapshot is opened beside the version checks: refused, it
    // is closed, and no session of the command's is left on the server.
    const sessions = () =>
      pg.psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'divio-app-backup'").trim()
    for (let waited = 0; sessions() !== '0' && waited < 5000; waited += 50) await sleep(50)
    expect(sessions()).to.equal('0')
  })

  it('names a pg_restore older than the pg_dump that wrote the backup, and what to install; the target is unchanged', async () => {
    const project = makeProject()
    configure(project)
    const env = {DATABASE_URL: pg.url('shop')}
    const created = await cli(project, ['create', '--db-only', '--json'], env)
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    const server = String(Math.floor(Number(pg.psql('postgres', 'SHOW server_version_num')) / 10_000))
    const info = await cli(project, ['info', id], env)
    expect(info.stdout).to.match(new RegExp(`^Database +postgres ${server} \\(custom\\)$`, 'm'))

    // What a distribution's older client prints: nothing of the dump read, the header refused.
    const oldBin = mkdtempSync(join(tmpdir(), 'old-pg-restore-'))
    writeFileSync(
      join(oldBin, 'pg_restore'),
      '#!/bin/sh\nif [ "$1" = --version ]; then echo "pg_restore (PostgreSQL) 9.6.24"; exit 0; fi\ncat >/dev/null\necho "pg_restore: [archiver] unsupported version (1.16) in file header" >&2\nexit 1\n',
      {mode: 0o755},
    )
    for (const tool of ['psql', 'pg_dump']) symlinkSync(join(binDir, tool), join(oldBin, tool))
    const before = checksums(pg, 'shop')
    const restored = await cli(project, ['restore', id, '--db-only', '--confirm', 'live', '--no-safety-backup'], {
      ...env,
      DIVIO_BACKUP_PG_BINDIR: oldBin,
    })
    expect(restored.status).to.equal(1)
    expect(restored.stderr).to.match(
      /^Error: pg_restore 9 cannot read the dump: a newer pg_dump wrote it \(archive format 1\.16\)\. Nothing was changed in postgres/m,
    )
    expect(restored.stderr).to.include('DIVIO_BACKUP_PG_BINDIR')
    expect(checksums(pg, 'shop')).to.deep.equal(before)
  })

  it("a restore that waits for a lock the app's session holds fails after the stall timeout, and changes nothing", async () => {
    const project = makeProject()
    configure(project)
    const {env, id} = await backedUpWithStall(project, pg.url('shop'), 2)
    const before = checksums(pg, 'shop')
    // What an app in the middle of a transaction holds: DROP TABLE waits for it. Again where the
    // database sets a lock timeout of its own, as platforms do for apps: the restore's wait is its own.
    for (const lockTimeout of ['0', '100ms']) {
      pg.psql('postgres', `ALTER DATABASE shop SET lock_timeout = '${lockTimeout}'`)
      const session = await pg.holding('shop', 'SELECT count(*) FROM customers')
      try {
        const restored = await restoredOverLive(project, id, env)
        expect(restored.status).to.equal(1)
        expect(restored.stderr, `lock_timeout ${lockTimeout}`).to.match(
          /waited [2-9] s for a lock held by \d+ \(psql, from 127\.0\.0\.1, idle in transaction\), and was rolled back\./,
        )
        expect(restored.stderr).to.include('Stop what uses it')
      } finally {
        await session.end()
        pg.psql('postgres', 'ALTER DATABASE shop RESET lock_timeout')
      }

      expect(checksums(pg, 'shop')).to.deep.equal(before)
    }
  })

  it('a backup that waits for a table a migration holds exclusively fails in half the stall timeout, naming the table (exit 7)', async () => {
    const project = makeProject()
    configure(project)
    const env = {DATABASE_URL: pg.url('shop'), DIVIO_BACKUP_STALL_SECONDS: '4'}
    // What ALTER TABLE holds until its migration commits: pg_dump's own lock on the table waits for it.
    const migration = await pg.holding('shop', 'LOCK TABLE documents IN ACCESS EXCLUSIVE MODE')
    try {
      const created = await cliWithin(120_000, project, ['create', '--db-only'], env)
      expect(created.status).to.equal(7)
      expect(created.stderr).to.match(
        /^Error: Backup \S+ failed and was not committed: pg_dump waited 2 s to read table public\.documents of postgres\S+, which another session holds exclusively/m,
      )
      expect(created.stderr).to.not.match(/Stalled/)
    } finally {
      await migration.end()
    }

    expect(listFiles(project.store).filter((path) => path.endsWith('manifest.json'))).to.deep.equal([])
  })

  describe('drill: restored into a throwaway server the command starts itself', () => {
    it('passes on a good backup: pg_amcheck, every row count and the schema as recorded; its cluster made without a flush (initdb --no-sync)', async () => {
      const project = makeProject()
      configure(project)
      const env = {DATABASE_URL: pg.url('shop')}
      const created = await cli(project, ['create', '--db-only'], env)
      expect(created.status, created.stderr).to.equal(0)
      // The server's programs, with an initdb that notes its arguments: a throwaway cluster is not
      // flushed to disk (--no-sync), which on a busy disk costs a wait behind everyone's writes. As root
      // the scratch server's programs run as the postgres user, who must read the folder and the note.
      const recordingBin = mkdtempSync(join(tmpdir(), 'recording-pg-bin-'))
      chmodSync(recordingBin, 0o755)
      const initdbArguments = join(recordingBin, 'initdb.args')
      writeFileSync(initdbArguments, '', {mode: 0o666})
      chmodSync(initdbArguments, 0o666)
      for (const program of readdirSync(binDir)) symlinkSync(join(binDir, program), join(recordingBin, program))
      rmSync(join(recordingBin, 'initdb'))
      writeFileSync(
        join(recordingBin, 'initdb'),
        `#!/bin/sh\necho "$*" >> '${initdbArguments}'\nexec '${join(binDir, 'initdb')}' "$@"\n`,
        {mode: 0o755},
      )
      const drilled = await cli(project, ['drill', '--json'], {...env, DIVIO_BACKUP_PG_BINDIR: recordingBin})
      // With --json the error is on stdout: both, so that a failure names its cause.
      expect(drilled.status, drilled.stdout + drilled.stderr).to.equal(0)
      const result = drilled.json() as {
        checks: Array<{detail: string; name: string; ok: boolean}>
        database: {engine: string; rows: number; tables: number}
        passed: boolean
        tools: Record<string, string>
      }
      expect(result.passed).to.equal(true)
      expect(result.checks.find(({name}) => name === 'integrity')?.detail).to.equal('pg_amcheck: ok')
      expect(result.database).to.deep.equal({engine: 'postgres', rows: 500 + 2000 + 5000 + 120_000, tables: 4})
      expect(result.tools.postgres).to.match(/^postgres \(PostgreSQL\) \d+/)
      expect((await cli(project, ['info'], env)).stdout).to.match(
        /^Drill {7}drilled \S+: 4 tables, 127,500 rows match$/m,
      )
      const initdbRuns = readFileSync(initdbArguments, 'utf8').trim().split('\n')
      expect(initdbRuns).to.have.length(1)
      expect(initdbRuns[0].split(' ')).to.include('--no-sync')
      rmSync(recordingBin, {force: true, recursive: true})
    })

    it("--scratch-url restores into a database of the user's, and refuses the environment's own", async () => {
      const project = makeProject()
      configure(project)
      const env = {DATABASE_URL: pg.url('shop')}
      expect((await cli(project, ['create', '--db-only'], env)).status).to.equal(0)
      pg.psql('postgres', 'CREATE DATABASE given_scratch')
      const drilled = await cli(project, ['drill', '--scratch-url', pg.url('given_scratch'), '--json'], env)
      expect(drilled.status, drilled.stderr).to.equal(0)
      expect((drilled.json() as {passed: boolean}).passed).to.equal(true)
      expect(Number(pg.psql('given_scratch', 'SELECT count(*) FROM customers'))).to.equal(500)

      const refused = await cli(project, ['drill', '--scratch-url', pg.url('shop')], env)
      expect(refused.status).to.equal(2)
      expect(refused.stderr).to.match(/^Error: --scratch-url names the environment's own database/)
      expect(refused.stderr).to.not.include(pg.password)
    })

    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      it(`leaves no scratch server and no scratch file after ${signal}`, async () => {
        const project = makeProject()
        configure(project)
        const tmp = mkdtempSync(join(tmpdir(), 'divio-drill-tmp-'))
        const env = {...project.env, DATABASE_URL: pg.url('shop'), DIVIO_BACKUP_TMPDIR: tmp}
        expect((await cli(project, ['create', '--db-only'], env)).status).to.equal(0)
        const code = await drillStoppedOnceItsServerRuns(
          () => spawn(process.execPath, [runJs, 'app', 'backup', 'drill'], {cwd: project.root, env, stdio: 'ignore'}),
          tmp,
          signal,
        )
        if (signal === 'SIGTERM') expect(code).to.equal(130)
      })
    }
  })
})
