import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {generateIdentity} from '../../src/archive/age-keys.js'
import {cli, listFiles, makeProject, Project, snapshotTree, writeSignedManifest} from '../helpers/project.js'
import {openTestDatabase} from '../helpers/sqlite.js'
import {requireTool} from '../helpers/tools.js'

const ID = /^\d{8}T\d{6}Z-[a-z2-7]{6}$/
const SHA = /^[0-9a-f]{64}$/
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/

describe('end to end on the embedded default (SQLite + media folder + local store)', function () {
  let project: Project
  let created: Record<string, unknown>

  before(async function () {
    requireTool(this, 'age', 'age')
    requireTool(this, 'sqlite3', 'sqlite3')
    project = makeProject()
    const result = await cli(project, ['create', '--json', '--note', 'first'])
    expect(result.status, result.stderr).to.equal(0)
    created = result.json() as Record<string, unknown>
  })

  it('says once, on stderr, where the generated identity is, and writes it with mode 0600', async () => {
    expect(statSync(project.identityFile).mode & 0o777).to.equal(0o600)
    const second = await cli(project, ['create', '--db-only'])
    expect(second.status, second.stderr).to.equal(0)
    expect(second.stderr).to.not.include('new encryption key')
  })

  it('create --json returns one backup object of the --json contract (docs/output.md)', () => {
    expect(Object.keys(created).sort()).to.deep.equal(
      [
        'app',
        'completedAt',
        'components',
        'createdAt',
        'drill',
        'environment',
        'id',
        'note',
        'pinned',
        'removedByRetention',
        'retention',
        'status',
        'tier',
        'trigger',
        'writer',
      ].sort(),
    )
    expect(created.id).to.match(ID)
    expect(created).to.include({
      app: 'shop',
      environment: 'local',
      note: 'first',
      pinned: false,
      status: 'complete',
      tier: 'on-demand',
      trigger: 'on-demand',
    })
    expect(created.createdAt).to.match(ISO)
    expect(created.completedAt).to.match(ISO)
    const createdAt = new Date(String(created.createdAt))
    const agesOut = new Date(createdAt.getTime() + 30 * 86_400_000).toISOString()
    expect(created.retention).to.deep.equal({
      expiresAt: null,
      expiry: `younger than 30 days until ${agesOut.slice(0, 10)} ${agesOut.slice(11, 16)} UTC; after that, kept while among the 3 newest older on-demand backups`,
      keep: true,
      keptAtLeastUntil: agesOut,
      reason: 'on-demand, younger than 30 days',
    })
    const components = created.components as {database: Record<string, unknown>; media: Record<string, unknown>}
    expect(components.database).to.include({engine: 'sqlite', format: 'sqlite3'})
    expect(components.database.sha256).to.match(SHA)
    expect(components.database.bytes).to.be.greaterThan(0)
    expect(components.media).to.include({files: 4})
    expect(components.media.sha256).to.match(SHA)
  })

  it('list --json returns backup objects newest first; list prints a table', async () => {
    const listed = await cli(project, ['list', '--json'])
    expect(listed.status).to.equal(0)
    const backups = listed.json() as {createdAt: string; id: string; status: string}[]
    expect(backups.length).to.be.at.least(1)
    const instants = backups.map((backup) => Date.parse(backup.createdAt))
    expect(instants).to.deep.equal([...instants].sort((a, b) => b - a))
    const {removedByRetention, ...backup} = created
    expect(removedByRetention).to.deep.equal([])
    expect(backups.find((listed) => listed.id === created.id)).to.deep.equal(backup)
    const table = await cli(project, ['list'])
    expect(table.stdout.split('\n')[0]).to.match(/^ID\s+TIER\s+SIZE\s+KEPT UNTIL\s+NOTE$/)
    expect(table.stdout).to.include(String(created.id))
  })

  it("verify --json reports every object as authenticated, and the archive's members as listed", async () => {
    const result = await cli(project, ['verify', String(created.id), '--json'])
    expect(result.status, result.stderr).to.equal(0)
    expect(result.json()).to.deep.include({id: created.id, ok: true})
    const {objects} = result.json() as {objects: {detail: string; name: string; ok: boolean}[]}
    expect(objects.map((object) => object.name)).to.deep.equal([
      'manifest.json',
      'database.sqlite3.zst.age',
      'media.tar.age',
      'media.tar.age (members)',
      'media.manifest.json.age',
    ])
    expect(objects.every((object) => object.ok)).to.equal(true)
    expect(objects[3].detail).to.match(/^4 files \(.+\) match its MANIFEST\.json$/)
  })

  it('round trip: download gives a sound database, identical media, and a tar that lists MANIFEST.json', async () => {
    const out = join(project.root, 'restore-check')
    const result = await cli(project, ['download', String(created.id), '-o', out, '--json'])
    expect(result.status, result.stderr).to.equal(0)
    const {files} = result.json() as {files: {path: string; sha256: string}[]}
    expect(files.map((file) => file.path)).to.deep.equal(
      ['database.sqlite3', 'media.tar', 'manifest.json'].map((name) => join(out, name)),
    )

    const check = execFileSync('sqlite3', [join(out, 'database.sqlite3'), 'PRAGMA integrity_check;'])
      .toString()
      .trim()
    expect(check).to.equal('ok')
    const original = openTestDatabase(join(project.root, 'db.sqlite3'), {readonly: true})
    const copy = openTestDatabase(join(out, 'database.sqlite3'), {readonly: true})
    for (const table of ['auth_user', 'shop_product']) {
      const query = `SELECT count(*) AS n, group_concat(id || name, ',') AS rows FROM ${table}`.replace(
        'name',
        table === 'auth_user' ? 'username' : 'name',
      )
      expect(copy.prepare(query).get()).to.deep.equal(original.prepare(query).get())
    }

    original.close()
    copy.close()

    const members = execFileSync('tar', ['-tf', join(out, 'media.tar')])
      .toString()
      .trim()
      .split('\n')
    expect(members.at(-1)).to.equal('MANIFEST.json')
    const extracted = join(project.root, 'extracted')
    mkdirSync(extracted)
    execFileSync('tar', ['-xf', join(out, 'media.tar'), '-C', extracted])
    expect(snapshotTree(join(extracted, 'media'))).to.deep.equal(snapshotTree(join(project.root, 'media')))

    const listing = JSON.parse(readFileSync(join(extracted, 'MANIFEST.json'), 'utf8')) as {
      files: {path: string; sha256?: string; type: string}[]
    }
    const photo = listing.files.find((file) => file.path.endsWith('photo.bin'))
    expect(photo?.sha256).to.match(SHA)
    expect(listing.files.find((file) => file.path === 'latest-readme')).to.include({
      linkTarget: 'uploads/readme.txt',
      type: 'symlink',
    })
  })

  it('the stored objects decrypt with the stock age CLI', () => {
    const folder = join(project.store, 'shop', 'local', String(created.id))
    const compressed = execFileSync('age', ['-d', '-i', project.identityFile, join(folder, 'database.sqlite3.zst.age')])
    const database = execFileSync('zstd', ['-dcq'], {input: compressed, maxBuffer: 1 << 28})
    const out = join(project.root, 'restore-check')
    expect(database.equals(readFileSync(join(out, 'database.sqlite3')))).to.equal(true)
    const media = execFileSync('age', ['-d', '-i', project.identityFile, join(folder, 'media.tar.age')], {
      maxBuffer: 1 << 28,
    })
    expect(media.equals(readFileSync(join(out, 'media.tar')))).to.equal(true)
    const manifest = JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf8')) as {
      encryption: {recipients: string[]}
    }
    expect(manifest.encryption.recipients).to.deep.equal([
      execFileSync('age-keygen', ['-y', project.identityFile]).toString().trim(),
    ])
  })

  it('download never overwrites an existing file and writes nothing when a name is taken', async () => {
    const out = join(project.root, 'taken')
    mkdirSync(out)
    writeFileSync(join(out, 'media.tar'), 'mine')
    const result = await cli(project, ['download', String(created.id), '-o', out])
    expect(result.status).to.equal(6)
    expect(readFileSync(join(out, 'media.tar'), 'utf8')).to.equal('mine')
    expect(readdirSync(out)).to.deep.equal(['media.tar'])
  })

  it('backups of the same second: list, latest and retention agree on which is newest (by instant, not by id)', async () => {
    const same = makeProject()
    const first = await cli(same, ['create', '--json'])
    expect(first.status, first.stderr).to.equal(0)
    const {createdAt, id} = first.json() as {createdAt: string; id: string}
    const folder = join(same.store, 'shop', 'local')
    const manifest = JSON.parse(readFileSync(join(folder, id, 'manifest.json'), 'utf8')) as Record<string, unknown>
    // Eight backups in one second, whose random suffixes sort in another order than their instants.
    const suffixes = ['qqqqqq', 'bbbbbb', 'zzzzzz', 'aaaaaa', 'mmmmmm', 'cccccc', 'yyyyyy', 'dddddd']
    const copies = suffixes.map((suffix, index) => ({
      createdAt: `${createdAt.slice(0, 19)}.${String(100 + index * 100).padStart(3, '0')}Z`,
      id: `${id.slice(0, 16)}-${suffix}`,
    }))
    for (const copy of copies) {
      execFileSync('cp', ['-R', join(folder, id), join(folder, copy.id)])
      writeSignedManifest(same, join(folder, copy.id, 'manifest.json'), {...manifest, ...copy})
    }

    rmSync(join(folder, id), {recursive: true})
    const newestFirst = copies.map((copy) => copy.id).reverse()
    const listed = (await cli(same, ['list', '--json'])).json() as {id: string}[]
    expect(listed.map((backup) => backup.id)).to.deep.equal(newestFirst)
    expect((await cli(same, ['info', '--json'])).json()).to.include({id: newestFirst[0]})
    const plan = (await cli(same, ['prune', '--dry-run', '--json'])).json() as {keep: {id: string; reason: string}[]}
    expect(plan.keep.map((decision) => decision.id)).to.have.members(newestFirst)
  })

  it('info without an id shows the latest backup', async () => {
    const [latest] = (await cli(project, ['list', '--json'])).json() as {id: string}[]
    const result = await cli(project, ['info', '--json'])
    expect(result.status, result.stderr).to.equal(0)
    expect(result.json()).to.include({id: latest.id})
  })

  it('info shows components, checksums and recipients', async () => {
    const result = await cli(project, ['info', String(created.id)])
    expect(result.status).to.equal(0)
    expect(result.stdout).to.match(/^Backup {6}\d{8}T\d{6}Z-[a-z2-7]{6}$/m)
    expect(result.stdout).to.match(/Encryption {2}age v1 to age1[a-z0-9]+/)
    expect(result.stdout).to.include('media.tar.age')
  })
})

describe('integrity: one flipped byte in any stored object', function () {
  for (const name of ['database.sqlite3.zst.age', 'media.tar.age', 'media.manifest.json.age', 'manifest.json']) {
    it(`in ${name}: verify exits non-zero naming it, and download leaves no files`, async function () {
      requireTool(this, 'age', 'age')
      const project = makeProject()
      const created = await cli(project, ['create', '--json'])
      expect(created.status, created.stderr).to.equal(0)
      const {id} = created.json() as {id: string}
      const path = join(project.store, 'shop', 'local', id, name)
      const bytes = readFileSync(path)
      // For the manifest, corrupt a checksum it records; elsewhere, a byte in the middle of the ciphertext.
      const offset = name === 'manifest.json' ? bytes.indexOf('"sha256": "') + 12 : Math.floor(bytes.length / 2)
      bytes[offset] = bytes[offset] === 0x61 ? 0x62 : 0x61
      writeFileSync(path, bytes)

      const verify = await cli(project, ['verify', id])
      expect(verify.status).to.equal(4)
      // An edited manifest fails its signature before anything it names is read.
      const named = name
      expect(verify.stdout).to.match(new RegExp(`BAD +${named.replaceAll('.', String.raw`\.`)}:`))
      expect(verify.stderr).to.include(`${id}/${named}`)

      const verifyJson = await cli(project, ['verify', id, '--json'])
      expect(verifyJson.status).to.equal(4)
      expect((verifyJson.json() as {ok: boolean}).ok).to.equal(false)

      const out = join(project.root, 'out')
      const download = await cli(project, ['download', id, '-o', out])
      expect(download.status).to.equal(4)
      expect(download.stderr).to.include('No files were written')
      expect(existsSync(out)).to.equal(false)
    })
  }
})

describe('integrity: content that authenticates but does not decompress', () => {
  it('verify names the object instead of failing with an unexpected error', async function () {
    requireTool(this, 'zstd', 'zstd')
    const project = makeProject()
    const {id} = (await cli(project, ['create', '--db-only', '--json'])).json() as {id: string}
    const folder = join(project.store, 'shop', 'local', id)
    const path = join(folder, 'manifest.json')
    const manifest = JSON.parse(readFileSync(path, 'utf8')) as {
      components: {database: {compression: string; object: {bytes: number; name: string; sha256: string}}}
    }
    const {database} = manifest.components
    expect(database.compression).to.equal('zstd')
    // The snapshot sealed again without its compression, to the same key, and signed for.
    const objectPath = join(folder, database.object.name)
    const compressed = execFileSync('age', ['-d', '-i', project.identityFile, objectPath])
    const plain = execFileSync('zstd', ['-dcq'], {input: compressed, maxBuffer: 1 << 30})
    const recipient = execFileSync('age-keygen', ['-y', project.identityFile]).toString().trim()
    const sealed = execFileSync('age', ['-r', recipient], {input: plain, maxBuffer: 1 << 30})
    writeFileSync(objectPath, sealed)
    database.object.bytes = sealed.length
    database.object.sha256 = createHash('sha256').update(sealed).digest('hex')
    writeSignedManifest(project, path, manifest)
    const verify = await cli(project, ['verify', id])
    expect(verify.status).to.equal(4)
    expect(verify.stdout).to.match(/BAD +database\.sqlite3\.zst\.age: decompression failed: /)
  })
})

describe('clear errors with a suggestion and a non-zero exit', () => {
  let project: Project

  before(() => {
    project = makeProject()
  })

  it('an invalid config names the JSON path', async () => {
    const config = join(project.root, '.divio', 'backups.json')
    mkdirSync(join(project.root, '.divio'), {recursive: true})
    writeFileSync(config, JSON.stringify({app: 'shop', environments: {live: {store: 42}}}))
    try {
      expectOneLineError(
        await cli(project, ['list']),
        2,
        /Invalid config .*backups\.json at environments\.live\.store: /,
      )
      const json = await cli(project, ['list', '--json'])
      expect(json.status).to.equal(2)
      expect((json.json() as {error: {code: string}}).error.code).to.equal('CONFIG_INVALID')
    } finally {
      writeFileSync(
        config,
        JSON.stringify({app: 'shop', environments: {live: {database: '${SHOP_DATABASE_URL}', store: './backups'}}}),
      )
    }
  })

  it('an unset ${VAR} names the variable and the path, where the command needs it', async () => {
    expectOneLineError(
      await cli(project, ['create']),
      2,
      /environments\.live\.database uses \$\{SHOP_DATABASE_URL\}, which is not set/,
    )
    // Listing the backups needs no database.
    const listed = await cli(project, ['list'])
    expect(listed.status, listed.stderr).to.equal(0)
  })

  it('an unknown env lists the known ones', async () => {
    const result = await cli(project, ['list', '-e', 'staging'], {SHOP_DATABASE_URL: 'sqlite:///db.sqlite3'})
    expectOneLineError(result, 2, /Unknown environment "staging"/)
    expect(result.stderr).to.include('Use one of: live')
  })

  it('a missing identity on download says which file and variable', async () => {
    const other = makeProject()
    expect((await cli(other, ['create'])).status).to.equal(0)
    const result = await cli(other, ['download', '-o', 'x'], {DIVIO_BACKUP_IDENTITY_FILE: join(other.home, 'nope.txt')})
    expectOneLineError(result, 5, /No identity file at .*nope\.txt/)
    expect(existsSync(join(other.root, 'x'))).to.equal(false)
  })

  it('an identity file that age reads and this tool cannot (a passphrase, an SSH key, a plugin) says what to do', async () => {
    const other = makeProject()
    expect((await cli(other, ['create'])).status).to.equal(0)
    const kinds = [
      {
        contents:
          '-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IHNjcnlwdCBzYWx0IDE4Cg==\n-----END AGE ENCRYPTED FILE-----\n',
        says: /encrypted with age \(a passphrase, age -p\).*\n.*age -d -o identity\.txt/,
      },
      {
        contents: '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n',
        says: /an SSH key/,
      },
      {contents: '# yubikey\nAGE-PLUGIN-YUBIKEY-1QQQQQQQQQQQQQQQQQQQQQQ\n', says: /age plugin's identity/},
    ]
    for (const [index, {contents, says}] of kinds.entries()) {
      const file = join(other.home, `identity-${index}.txt`)
      writeFileSync(file, contents, {mode: 0o600})
      const result = await cli(other, ['verify'], {DIVIO_BACKUP_IDENTITY_FILE: file})
      expect(result.status, result.stderr).to.equal(5)
      expect(result.stderr).to.match(says)
      expect(result.stderr).to.not.include(contents.split('\n')[1])
    }
  })

  it('a wrong identity names the recipients the backup needs', async () => {
    const other = makeProject()
    expect((await cli(other, ['create'])).status).to.equal(0)
    const wrong = generateIdentity()
    const wrongFile = join(other.home, 'wrong.txt')
    writeFileSync(wrongFile, wrong.fileContents(new Date()), {mode: 0o600})
    const result = await cli(other, ['verify', '--json'], {DIVIO_BACKUP_IDENTITY_FILE: wrongFile})
    expect(result.status).to.equal(5)
    expect((result.json() as {error: {code: string}}).error.code).to.equal('IDENTITY_WRONG')
    expectOneLineError(
      await cli(other, ['download', '-o', 'y'], {DIVIO_BACKUP_IDENTITY_FILE: wrongFile}),
      5,
      /cannot decrypt backup/,
    )
    expect(existsSync(join(other.root, 'y'))).to.equal(false)
    const secret = wrong.fileContents(new Date()).trim().split('\n').at(-1)!
    expect(secret).to.match(/^AGE-SECRET-KEY-1/)
    expect(result.stdout + result.stderr).to.not.include(secret)
  })

  it('an unknown backup id says how to find one', async () => {
    const other = makeProject()
    expectOneLineError(await cli(other, ['info', '20200101T000000Z-aaaaaa']), 3, /No backup "20200101T000000Z-aaaaaa"/)
  })
})

describe('delete', () => {
  it('refuses without a terminal unless --confirm names the env, then removes the backup', async () => {
    const project = makeProject()
    const {id} = (await cli(project, ['create', '--json'])).json() as {id: string}
    const refused = await cli(project, ['delete', id])
    expect(refused.status).to.equal(6)
    expect(refused.stderr).to.include('--confirm local')
    const wrong = await cli(project, ['delete', id, '--confirm', 'live'])
    expect(wrong.status).to.equal(6)
    expect(((await cli(project, ['list', '--json'])).json() as unknown[]).length).to.equal(1)

    const deleted = await cli(project, ['delete', id, '--confirm', 'local', '--json'])
    expect(deleted.status, deleted.stderr).to.equal(0)
    expect((deleted.json() as {deleted: string[]}).deleted[0]).to.equal('manifest.json')
    expect((await cli(project, ['list', '--json', '--all'])).json()).to.deep.equal([])
    expect(listFiles(project.store)).to.deep.equal([])
  })
})

function expectOneLineError(result: {status: null | number; stderr: string}, code: number, message: RegExp): void {
  expect(result.status).to.equal(code)
  const lines = result.stderr.trim().split('\n')
  expect(lines[0]).to.match(message)
  expect(result.stderr).to.match(/Try this: \S/)
  expect(result.stderr).to.not.match(/\n\s+at .+:\d+:\d+/)
}
