import {expect} from 'chai'
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {chmodSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {DEFINERS_SED} from '../../src/providers/database/mysql-definers.js'
import {MysqlProvider} from '../../src/providers/database/mysql.js'
import {backedUpLive, backedUpWithStall, refusedRestore, restoredOverLive} from '../helpers/live-and-test.js'
import {hasMariadbServer, TestMariadb} from '../helpers/mariadb.js'
import {freePort} from '../helpers/postgres.js'
import {drillStoppedOnceItsServerRuns, waitForProcess, watch} from '../helpers/processes.js'
import {cli, cliAsync, cliWithin, listFiles, makeProject, Project, runJs, writeConfig} from '../helpers/project.js'

const TABLES = ['customers', 'files', 'audit']

function configure(project: Project): void {
  writeConfig(project, {database: '${DATABASE_URL}', store: './.divio/backups'})
}

function seed(db: TestMariadb, database: string): void {
  db.asRoot(`CREATE DATABASE ${database} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`)
  db.asRoot(
    `
    CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(200) NOT NULL, updated INT NOT NULL DEFAULT 0) ENGINE=InnoDB;
    CREATE TABLE files (id INT AUTO_INCREMENT PRIMARY KEY, body LONGBLOB) ENGINE=InnoDB;
    CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, customer INT, note VARCHAR(100)) ENGINE=InnoDB;
    CREATE TRIGGER customers_audit AFTER INSERT ON customers FOR EACH ROW INSERT INTO audit (customer, note) VALUES (NEW.id, CONCAT('new ', NEW.name));
    CREATE FUNCTION double_it (x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
    INSERT INTO customers (name) VALUES ('Zoë 🦊 Ünïcødé 文件'), ('O''Brien'), ('back\\\\slash');
    INSERT INTO customers (name) SELECT CONCAT('customer ', seq) FROM seq_1_to_3000;
    INSERT INTO files (body) SELECT UNHEX(REPEAT(MD5(seq), 64)) FROM seq_1_to_2000;
    INSERT INTO files (body) VALUES (0x00FF00FE), ('');
    `,
    database,
  )
}

function checksums(db: TestMariadb, database: string): string {
  return db
    .asRoot(`CHECKSUM TABLE ${TABLES.map((table) => `${database}.${table}`).join(', ')}`, database)
    .replaceAll(`${database}.`, '')
}

describe('MySQL/MariaDB (real server)', function () {
  let db: TestMariadb

  before(async function () {
    if (!hasMariadbServer()) {
      console.log('      skipped: no MariaDB server is installed (apt-get install mariadb-server)')
      this.skip()
    }

    db = await TestMariadb.start()
    seed(db, 'shop')
  })

  after(() => db?.stop())

  it('round trip: the zstd-compressed SQL dump restores with equal CHECKSUM TABLE, trigger and routine', async () => {
    const project = makeProject()
    configure(project)
    const env = {DATABASE_URL: db.url('shop')}
    const created = await cli(project, ['create', '--json'], env)
    expect(created.status, created.stderr).to.equal(0)
    const {components, id} = created.json() as {components: {database: {engine: string; format: string}}; id: string}
    expect(components.database).to.include({engine: 'mysql', format: 'sql'})
    expect(readdirSync(join(project.store, 'shop', 'live', id))).to.include('database.sql.zst.age')
    expect((await cli(project, ['verify'], env)).status).to.equal(0)

    const out = join(project.root, 'out')
    const download = await cli(project, ['download', '-o', out], env)
    expect(download.status, download.stderr).to.equal(0)
    const sql = readFileSync(join(out, 'database.sql'), 'utf8')
    expect(sql).to.include('CREATE TABLE `customers`')
    expect(sql).to.include('0x00FF00FE')

    db.asRoot('CREATE DATABASE restored CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci')
    await new MysqlProvider(new URL(db.url('restored'))).restore(join(out, 'database.sql'), {
      tempDir: mkdtempSync(join(tmpdir(), 'mysql-restore-')),
    })
    expect(checksums(db, 'restored')).to.equal(checksums(db, 'shop'))
    expect(db.asRoot('SELECT double_it(21)', 'restored').trim()).to.equal('42')
    expect(
      db.asRoot("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'restored'").trim(),
    ).to.equal('1')
    expect(db.asRoot('SELECT name FROM customers WHERE id = 1', 'restored').trim()).to.equal('Zoë 🦊 Ünïcødé 文件')
  })

  it("records every table's rows (approximate: counted alongside the dump, in a transaction of its own) and the schema's hash", async () => {
    db.asRoot('CREATE DATABASE facts CHARACTER SET utf8mb4')
    db.asRoot(
      'CREATE TABLE `we``ird` (id INT AUTO_INCREMENT PRIMARY KEY); INSERT INTO `we``ird` () VALUES (), (), (); CREATE TABLE two (x INT); INSERT INTO two VALUES (1), (2);',
      'facts',
    )
    const project = makeProject()
    configure(project)
    const env = {DATABASE_URL: db.url('facts')}
    const facts = () =>
      readdirSync(join(project.store, 'shop', 'live'))
        .map(
          (id) =>
            JSON.parse(readFileSync(join(project.store, 'shop', 'live', id, 'manifest.json'), 'utf8')) as {
              components: {database: {facts: {counted: string; schemaSha256: string; tables: Record<string, number>}}}
              createdAt: string
            },
        )
        .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
        .map((manifest) => manifest.components.database.facts)
    expect((await cli(project, ['create', '--db-only'], env)).status).to.equal(0)
    db.asRoot('DELETE FROM two WHERE x = 1; INSERT INTO `we``ird` () VALUES ()', 'facts')
    expect((await cli(project, ['create', '--db-only'], env)).status).to.equal(0)
    const [first, second] = facts()
    expect(first.counted).to.equal('approximate')
    expect(first.tables).to.deep.equal(
      Object.fromEntries([
        ['two', 2],
        ['we`ird', 3],
      ]),
    )
    expect(second.tables).to.deep.equal(
      Object.fromEntries([
        ['two', 1],
        ['we`ird', 4],
      ]),
    )
    // A new AUTO_INCREMENT value is data, not schema.
    expect(second.schemaSha256).to.equal(first.schemaSha256)
  })

  it('a restore stops at the first error', async () => {
    db.asRoot('CREATE DATABASE broken')
    const scriptFile = join(mkdtempSync(join(tmpdir(), 'mysql-restore-')), 'database.sql')
    writeFileSync(scriptFile, 'CREATE TABLE one (x INT);\nINSERT INTO nowhere VALUES (1);\nCREATE TABLE two (x INT);\n')
    const error = await new MysqlProvider(new URL(db.url('broken')))
      .restore(scriptFile, {tempDir: dirname(scriptFile)})
      .catch((error_: Error) => error_)
    expect(error?.message).to.match(/stopped at the first error: .*nowhere/)
    expect(
      db.asRoot("SELECT GROUP_CONCAT(TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'broken'").trim(),
    ).to.equal('one')
  })

  it("restores with MySQL's own client, which stops at the sandbox line that mariadb-dump writes first", async () => {
    const project = makeProject()
    configure(project)
    const env = {DATABASE_URL: db.url('shop')}
    const created = await cli(project, ['create', '--json'], env)
    expect(created.status, created.stderr).to.equal(0)
    const out = join(project.root, 'out')
    expect((await cli(project, ['download', '-o', out], env)).status).to.equal(0)
    expect(readFileSync(join(out, 'database.sql'), 'utf8').split('\n')[0]).to.match(
      /^\/\*M!999999\\- enable the sandbox mode \*\/ *$/,
    )

    // MySQL's client, as far as this goes: its --version, and "Unknown command" for the sandbox line,
    // which the real one reads as a client command before anything reaches the server.
    const mysqlBin = mkdtempSync(join(tmpdir(), 'mysql-client-'))
    writeFileSync(
      join(mysqlBin, 'mysql'),
      [
        '#!/bin/sh',
        'if [ "$1" = --version ]; then echo "mysql  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)"; exit 0; fi',
        'IFS= read -r first',
        String.raw`case "$first" in *'enable the sandbox mode'*) echo "ERROR at line 1: Unknown command '\-'." >&2; exit 1;; esac`,
        `{ printf '%s\\n' "$first"; cat; } | exec mariadb "$@"`,
        '',
      ].join('\n'),
      {mode: 0o755},
    )
    db.asRoot('CREATE DATABASE by_mysql CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci')
    await new MysqlProvider(new URL(db.url('by_mysql')), mysqlBin).restore(join(out, 'database.sql'), {
      tempDir: mkdtempSync(join(tmpdir(), 'mysql-restore-')),
    })
    expect(checksums(db, 'by_mysql')).to.equal(checksums(db, 'shop'))
  })

  it("backs up with MySQL's own mysqldump: no GTIDs in the dump, and no column statistics from a server without them", async () => {
    // MySQL's mysqldump 8, as far as this goes: its --version, and its two options, which it checks
    // and takes out before MariaDB's dump tool does the rest.
    const bin = mkdtempSync(join(tmpdir(), 'mysqldump-'))
    const seen = join(bin, 'options')
    writeFileSync(
      join(bin, 'mysqldump'),
      [
        '#!/bin/sh',
        'if [ "$1" = --version ]; then echo "mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)"; exit 0; fi',
        'for arg; do shift; case "$arg" in --set-gtid-purged=OFF|--column-statistics=0) echo "$arg" >> ' +
          JSON.stringify(seen) +
          ';; *) set -- "$@" "$arg";; esac; done',
        'exec mariadb-dump "$@"',
        '',
      ].join('\n'),
      {mode: 0o755},
    )
    symlinkSync(execFileSync('sh', ['-c', 'command -v mariadb']).toString().trim(), join(bin, 'mariadb'))
    const project = makeProject()
    configure(project)
    const env = {DATABASE_URL: db.url('shop'), DIVIO_BACKUP_MYSQL_BINDIR: bin}
    const created = await cli(project, ['create', '--db-only', '--json'], env)
    expect(created.status, created.stderr).to.equal(0)
    // Once for the dump, once for the schema the facts record.
    expect(readFileSync(seen, 'utf8')).to.equal('--set-gtid-purged=OFF\n--column-statistics=0\n'.repeat(2))
    const drilled = await cli(project, ['drill', '--json'], env)
    expect(drilled.status, drilled.stdout + drilled.stderr).to.equal(0)
  })

  it("a backup locks no table: the app's open transaction neither holds it up nor waits for it", async () => {
    const project = makeProject()
    configure(project)
    const env = {DATABASE_URL: db.url('shop'), DIVIO_BACKUP_STALL_SECONDS: '5'}
    // The app in the middle of a transaction that wrote to a table: a lock for reading the whole table
    // (LOCK TABLES ... READ) waits for it, and every write after it waits behind that.
    const session = await db.holding('shop', 'UPDATE customers SET updated = updated + 1 WHERE id = 1')
    try {
      const created = await cliWithin(60_000, project, ['create', '--db-only', '--json'], env)
      expect(created.status, created.stderr).to.equal(0)
      const {id} = created.json() as {id: string}
      const manifest = JSON.parse(readFileSync(join(project.store, 'shop', 'live', id, 'manifest.json'), 'utf8')) as {
        components: {database: {facts: {tables: Record<string, number>}}}
      }
      expect(manifest.components.database.facts.tables).to.have.property('customers', 3003)
    } finally {
      await session.end()
    }
  })

  it("a restore that waits for a lock the app's session holds fails after the stall timeout, naming it", async () => {
    const project = makeProject()
    configure(project)
    const {env, id} = await backedUpWithStall(project, db.url('shop'), 2)
    const before = checksums(db, 'shop')
    // A transaction that has read the first table of the dump holds its metadata lock: DROP TABLE waits.
    const session = await db.holding('shop', 'SELECT count(*) FROM audit')
    try {
      const restored = await restoredOverLive(project, id, env)
      expect(restored.status).to.equal(1)
      expect(restored.stderr).to.match(/stopped at the first error: .*Lock wait timeout exceeded/)
      expect(restored.stderr).to.include('Another session held a lock on the target for 2 s')
    } finally {
      await session.end()
    }

    expect(checksums(db, 'shop')).to.equal(before)
  })

  it('restore live → test through the CLI gives equal tables, after a safety backup of test, and drops what a migration added', async () => {
    const project = makeProject()
    db.asRoot('CREATE DATABASE shop_test')
    db.asRoot(
      "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(20)); INSERT INTO customers VALUES (1, 'test only')",
      'shop_test',
    )
    const id = await backedUpLive(project, {live: db.url('shop'), test: db.url('shop_test')})

    const restored = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test', '--json'])
    expect(restored.status, restored.stderr).to.equal(0)
    expect(checksums(db, 'shop_test')).to.equal(checksums(db, 'shop'))
    expect(restored.stdout + restored.stderr).to.not.include(db.password)
    const {safetyBackup} = restored.json() as {safetyBackup: string}
    const listed = (await cli(project, ['list', '-e', 'test', '--json'])).json() as Array<{id: string; note: string}>
    expect(listed.map((backup) => [backup.id, backup.note])).to.deep.equal([[safetyBackup, `before restore of ${id}`]])

    // A migration after the backup: a table that refers to a restored one, a view, a sequence, a column.
    // Replaying the dump alone left all but the column, and Django's migrate then found them there.
    db.asRoot(
      `CREATE TABLE loyalty (id INT PRIMARY KEY, customer INT NOT NULL, FOREIGN KEY (customer) REFERENCES customers (id));
       INSERT INTO loyalty VALUES (1, 1); CREATE VIEW loyal AS SELECT customer FROM loyalty;
       CREATE SEQUENCE \`we\`\`ird 文件\`; ALTER TABLE customers ADD COLUMN tier INT`,
      'shop_test',
    )
    const tables = (database: string) =>
      db.asRoot(
        `SELECT GROUP_CONCAT(table_name, ':', table_type ORDER BY table_name) FROM information_schema.tables WHERE table_schema = '${database}'`,
      )
    const again = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test', '--no-safety-backup'])
    expect(again.status, again.stderr).to.equal(0)
    expect(tables('shop_test')).to.equal(tables('shop'))
    expect(checksums(db, 'shop_test')).to.equal(checksums(db, 'shop'))
    expect(db.asRoot('SHOW CREATE TABLE customers', 'shop_test')).to.not.include('tier')
  })

  it("restore live → test, each with a user of its own: the test user becomes the definer of live's triggers, views, routines and events", async () => {
    const project = makeProject()
    const users = {live: 'own_live', recipe: 'own_recipe', test: 'own_test'}
    for (const name of Object.values(users)) {
      db.asRoot(
        `CREATE DATABASE ${name} CHARACTER SET utf8mb4; CREATE USER '${name}'@'127.0.0.1' IDENTIFIED BY '${name}-pw'; GRANT ALL ON ${name}.* TO '${name}'@'127.0.0.1'`,
      )
    }

    // Made by the app's own user, as a migration would; root names it as their definer.
    const definer = "DEFINER = 'own_live'@'127.0.0.1'"
    db.asRoot(
      `
      CREATE TABLE t (id INT PRIMARY KEY, note VARCHAR(100)); CREATE TABLE a (id INT);
      CREATE ${definer} TRIGGER t_audit AFTER INSERT ON t FOR EACH ROW INSERT INTO a VALUES (NEW.id);
      CREATE ${definer} SQL SECURITY DEFINER VIEW v AS SELECT id FROM t;
      CREATE ${definer} FUNCTION twice (x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
      CREATE ${definer} PROCEDURE count_t () SELECT COUNT(*) FROM t;
      CREATE ${definer} EVENT nightly ON SCHEDULE EVERY 1 DAY DO DELETE FROM a;
      INSERT INTO t VALUES (1, '/*!50017 DEFINER=\`x\`@\`y\`*/'), (2, 'CREATE DEFINER=\`x\`@\`y\` FUNCTION');
      `,
      users.live,
    )
    const url = (name: string) => `mysql://${name}:${name}-pw@127.0.0.1:${db.port}/${name}`
    const id = await backedUpLive(project, {live: url(users.live), test: url(users.test)})

    const restored = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test', '--json'])
    expect(restored.status, restored.stdout + restored.stderr).to.equal(0)
    const definers = (name: string) =>
      db
        .asRoot(
          `SELECT DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '${name}'
           UNION ALL SELECT DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '${name}'
           UNION ALL SELECT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '${name}'
           UNION ALL SELECT DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '${name}'`,
        )
        .trim()
        .split('\n')
    expect(definers(users.test)).to.deep.equal(Array.from({length: 5}, () => 'own_test@127.0.0.1'))
    // Each object works in test with test's user: a view of live's user would be refused its table.
    db.asRoot('INSERT INTO t VALUES (3, NULL)', users.test)
    expect(db.asRoot('SELECT GROUP_CONCAT(id ORDER BY id) FROM a', users.test).trim()).to.equal('1,2,3')
    expect(db.asRoot('SELECT COUNT(*) FROM v', users.test).trim()).to.equal('3')
    expect(db.asRoot('SELECT twice(21)', users.test).trim()).to.equal('42')
    // Rows that read like a definer are data, and stay as they were.
    expect(db.asRoot('SELECT note FROM t WHERE id < 3 ORDER BY id', users.test)).to.equal(
      db.asRoot('SELECT note FROM t ORDER BY id', users.live),
    )

    // A drill makes live's user on its scratch server, where the views, routines and facts need it.
    const drilled = await cli(project, ['drill', id, '--json'])
    expect(drilled.status, drilled.stdout + drilled.stderr).to.equal(0)
    expect((drilled.json() as {passed: boolean}).passed).to.equal(true)

    // By hand, with the export recipe's sed and the stock client, as a third user.
    const out = join(project.root, 'out')
    expect((await cli(project, ['download', id, '-e', 'live', '-o', out])).status).to.equal(0)
    const recipe = spawnSync(
      'sh',
      [
        '-c',
        `${DEFINERS_SED} database.sql | mariadb --no-defaults -h 127.0.0.1 -P ${db.port} -u ${users.recipe} ${users.recipe}`,
      ],
      {cwd: out, env: {...process.env, MYSQL_PWD: `${users.recipe}-pw`}},
    )
    expect(recipe.status, recipe.stderr.toString()).to.equal(0)
    expect(definers(users.recipe)).to.deep.equal(Array.from({length: 5}, () => 'own_recipe@127.0.0.1'))
  })

  it('a restore into a database that does not exist yet (a new server) says to create it, before anything is taken', async () => {
    const project = makeProject()
    const id = await backedUpLive(project, {live: db.url('shop'), test: db.url('shop_new_server')})

    for (const flags of [[], ['--no-safety-backup']]) {
      const error = await refusedRestore(project, id, flags, db.password)
      expect(error.code).to.equal('OUTPUT_UNAVAILABLE')
      expect(error.message).to.match(
        /^The database "shop_new_server" does not exist on the MySQL server at 127\.0\.0\.1:\d+, so there is nothing to restore into\. Nothing was changed\.$/,
      )
      expect(error.suggestion).to.include(
        "CREATE DATABASE `shop_new_server` CHARACTER SET utf8mb4;`) and give the DSN's user (backup_admin)",
      )
    }

    expect((await cli(project, ['list', '-e', 'test', '--json'])).json()).to.deep.equal([])
    project.env.TEST_URL = `mysql://backup_admin:s3cret@127.0.0.1:${await freePort()}/shop`
    const error = await refusedRestore(project, id, [], 's3cret')
    expect(error.message).to.match(
      /^Cannot connect to the MySQL database mysql:\/\/backup_admin:\*\*\*@127\.0\.0\.1:\d+\/shop: .*Can't connect.* Nothing was changed\.$/,
    )
    expect(error.message + error.suggestion).to.not.include('safety backup')

    db.asRoot('CREATE DATABASE `shop_new_server` CHARACTER SET utf8mb4')
    project.env.TEST_URL = db.url('shop_new_server')
    const restored = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test'])
    expect(restored.status, restored.stderr).to.equal(0)
    expect(checksums(db, 'shop_new_server')).to.equal(checksums(db, 'shop'))
  })

  it('keeps the password out of argv and output, and fails cleanly when the server dies mid-dump', async () => {
    const project = makeProject()
    configure(project)
    project.env.DATABASE_URL = db.url('shop')
    // A write lock held by another session makes the dump wait inside the server: it can then be killed.
    const locker = await db.holding('shop', 'LOCK TABLES files WRITE')

    const run = watch(cliAsync(project, ['create', '--json']))
    const dump = await waitForProcess(
      run.pid,
      (argv) => /(mariadb-dump|mysqldump)$/.test(argv[0]) && argv.includes('--single-transaction'),
    )
    const cmdline = dump?.argv.join(' ')
    expect(cmdline, 'the dump never started').to.be.a('string')
    expect(cmdline).to.match(/--defaults-extra-file=\S+\.cnf/)
    expect(cmdline).to.not.include(db.password)
    expect(cmdline).to.not.include(encodeURIComponent(db.password))

    db.kill()
    locker.kill()
    try {
      expect(await run.exited).to.equal(1)
      const {stderr, stdout} = run.output()
      const {error} = JSON.parse(stdout) as {error: {code: string; message: string}}
      expect(error.code).to.equal('BACKUP_FAILED')
      expect(error.message, error.message).to.match(
        // Killed at some moments (between the handshake and the first query), mariadb-dump exits 2 without a word.
        /The database dump did not finish: mariadb-dump exited with status \d+(: .+| without an error message)\./,
      )
      for (const text of [stdout, stderr]) expect(text).to.not.include(db.password)
      expect(listFiles(project.store).filter((path) => path.endsWith('manifest.json'))).to.deep.equal([])
    } finally {
      // The next tests need a server: start a new one even when an assertion above failed.
      db = await TestMariadb.start()
      seed(db, 'shop')
    }
  })

  it('a wrong password fails fast with a clear error and no stack trace', async () => {
    const project = makeProject()
    configure(project)
    const wrong = new URL(db.url('shop'))
    wrong.password = 'nope-nope'
    const started = Date.now()
    const result = await cli(project, ['create'], {DATABASE_URL: wrong.href})
    expect(result.status).to.equal(7)
    expect(result.stderr, result.stderr).to.match(
      /^Error: .*Cannot connect to the MySQL database mysql:\/\/backup_admin:\*\*\*@127\.0\.0\.1:\d+\/shop: .*Access denied/m,
    )
    expect(result.stderr).to.not.include('nope-nope')
    expect(result.stderr).to.not.match(/\n\s+at .+:\d+:\d+/)
    expect(Date.now() - started).to.be.lessThan(30_000)
  })

  it('an unreachable server fails fast with a clear error', async () => {
    const project = makeProject()
    configure(project)
    const started = Date.now()
    const result = await cli(project, ['create', '--json'], {
      DATABASE_URL: `mysql://backup_admin:s3cret@127.0.0.1:${await freePort()}/shop`,
    })
    expect(result.status).to.equal(7)
    const {error} = result.json() as {error: {code: string; message: string}}
    expect(error.code).to.equal('SOURCE_UNAVAILABLE')
    expect(error.message).to.match(
      /Cannot connect to the MySQL database mysql:\/\/backup_admin:\*\*\*@127\.0\.0\.1:\d+\/shop: .*Can't connect/,
    )
    expect(result.stdout).to.not.include('s3cret')
    expect(Date.now() - started).to.be.lessThan(30_000)
  })

  it("a server with a binary log lets only SUPER create functions: the restore as the app's user says what the administrator can do, and after it the restore goes through", async () => {
    const logging = await TestMariadb.start(undefined, {binaryLog: true})
    try {
      const project = makeProject()
      for (const name of ['logged_live', 'logged_test'])
        logging.asRoot(
          `CREATE DATABASE ${name}; CREATE USER '${name}'@'127.0.0.1' IDENTIFIED BY '${name}-pw'; GRANT ALL ON ${name}.* TO '${name}'@'127.0.0.1'`,
        )
      // Made by an administrator: while the server keeps a binary log, only SUPER may create a function.
      logging.asRoot(
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1); CREATE DEFINER = 'logged_live'@'127.0.0.1' FUNCTION twice (x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
        'logged_live',
      )
      const url = (name: string) => `mysql://${name}:${name}-pw@127.0.0.1:${logging.port}/${name}`
      const id = await backedUpLive(project, {live: url('logged_live'), test: url('logged_test')})
      const restore = ['restore', id, '--to-env', 'test', '--confirm', 'test', '--no-safety-backup', '--json']

      const refused = await cli(project, restore)
      expect(refused.status, refused.stdout + refused.stderr).to.equal(1)
      const {error} = refused.json() as {error: {message: string; suggestion: string}}
      expect(error.message).to.include('ERROR 1419')
      expect(error.suggestion).to.include('`SET GLOBAL log_bin_trust_function_creators = 1`')
      // The suggestion, followed.
      logging.asRoot('SET GLOBAL log_bin_trust_function_creators = 1')
      const restored = await cli(project, restore)
      expect(restored.status, restored.stdout + restored.stderr).to.equal(0)
      expect(logging.asRoot('SELECT twice(21), COUNT(*) FROM t', 'logged_test').trim()).to.equal('42\t1')
    } finally {
      await logging.stop()
    }
  })

  describe("a DSN that asks for TLS (ssl-mode), with MariaDB's client tools", () => {
    let tlsDb: TestMariadb
    let cert: string

    before(async () => {
      const folder = mkdtempSync(join(tmpdir(), 'mariadb-tls-'))
      chmodSync(folder, 0o755)
      cert = join(folder, 'cert.pem')
      const key = join(folder, 'key.pem')
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-keyout',
          key,
          '-out',
          cert,
          '-days',
          '30',
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
        ],
        {stdio: 'ignore'},
      )
      chmodSync(key, 0o644)
      tlsDb = await TestMariadb.start({cert, key})
      // A user the server lets in over TLS alone.
      tlsDb.asRoot(
        "CREATE DATABASE shop; CREATE USER 'tls_only'@'127.0.0.1' IDENTIFIED BY 'tls-pw' REQUIRE SSL; GRANT ALL ON shop.* TO 'tls_only'@'127.0.0.1'",
      )
      tlsDb.asRoot('CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2)', 'shop')
    })

    after(() => tlsDb?.stop())

    it('backs up and restores over TLS, checking the certificate against the ssl-ca it names', async () => {
      const project = makeProject()
      configure(project)
      const env = {
        DATABASE_URL: `mysql://tls_only:tls-pw@127.0.0.1:${tlsDb.port}/shop?ssl-mode=REQUIRED&ssl-ca=${encodeURIComponent(cert)}`,
      }
      const created = await cli(project, ['create', '--db-only', '--json'], env)
      expect(created.status, created.stdout + created.stderr).to.equal(0)
      tlsDb.asRoot('INSERT INTO t VALUES (3)', 'shop')
      const restored = await cli(project, ['restore', 'latest', '--confirm', 'live', '--no-safety-backup'], env)
      expect(restored.status, restored.stderr).to.equal(0)
      expect(tlsDb.asRoot('SELECT GROUP_CONCAT(id ORDER BY id) FROM t', 'shop').trim()).to.equal('1,2')
    })

    it('refuses a connection it cannot check, or one in the clear, rather than making it', async () => {
      const project = makeProject()
      configure(project)
      const cases = [
        [`mysql://tls_only:tls-pw@127.0.0.1:${tlsDb.port}/shop?ssl-mode=REQUIRED`, /self-signed certificate/],
        [`${db.url('shop')}?ssl-mode=VERIFY_CA`, /SSL is required, but the server does not support it/],
      ] as const
      for (const [url, why] of cases) {
        const refused = await cli(project, ['create', '--db-only', '--json'], {DATABASE_URL: url})
        expect(refused.status, refused.stdout).to.equal(7)
        const {error} = refused.json() as {error: {message: string}}
        expect(error.message, error.message).to.match(/Cannot connect to the MySQL database /)
        expect(error.message).to.match(why)
      }

      // In the clear, where the DSN allows it.
      for (const mode of ['PREFERRED', 'DISABLED']) {
        const created = await cli(project, ['create', '--db-only'], {
          DATABASE_URL: `${db.url('shop')}?ssl-mode=${mode}`,
        })
        expect(created.status, created.stderr).to.equal(0)
      }
    })
  })

  describe('drill: restored into a throwaway server the command starts itself', () => {
    it('passes on a good backup: mariadb-check, and the tables and schema as recorded', async () => {
      const project = makeProject()
      configure(project)
      const env = {DATABASE_URL: db.url('shop')}
      expect((await cli(project, ['create', '--db-only'], env)).status).to.equal(0)
      const drilled = await cli(project, ['drill', '--json'], env)
      expect(drilled.status, drilled.stderr).to.equal(0)
      const result = drilled.json() as {
        checks: Array<{detail: string; name: string; ok: boolean}>
        database: {engine: string; tables: number}
        passed: boolean
      }
      expect(result.passed, JSON.stringify(result.checks)).to.equal(true)
      expect(result.checks.find(({name}) => name === 'integrity')?.detail).to.equal('mariadb-check: ok')
      expect(result.checks.find(({name}) => name === 'row counts')?.detail).to.match(/\(approximately\)$/)
      expect(result.database).to.deep.include({engine: 'mysql', tables: 3})
    })

    it('leaves no scratch server and no scratch file after SIGKILL', async () => {
      const project = makeProject()
      configure(project)
      const tmp = mkdtempSync(join(tmpdir(), 'divio-drill-tmp-'))
      const env = {...project.env, DATABASE_URL: db.url('shop'), DIVIO_BACKUP_TMPDIR: tmp}
      expect((await cli(project, ['create', '--db-only'], env)).status).to.equal(0)
      await drillStoppedOnceItsServerRuns(
        () => spawn(process.execPath, [runJs, 'app', 'backup', 'drill'], {cwd: project.root, env, stdio: 'ignore'}),
        tmp,
        'SIGKILL',
      )
    })
  })
})
