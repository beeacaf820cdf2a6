import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {parseWriterKey} from '../../src/archive/writer-key.js'
import {authenticateNote} from '../../src/domain/authenticity.js'
import {startCli} from '../helpers/kill.js'
import {cli, makeProject, Project, writeEnvironments, writerKeyFile, writeSignedManifest} from '../helpers/project.js'
import {openTestDatabase} from '../helpers/sqlite.js'
import {requireTool} from '../helpers/tools.js'

interface Drilled {
  backupId: string
  checks: Array<{detail: string; name: string; ok: boolean}>
  database?: {rows: number; tables: number}
  passed: boolean
  receiptKey: string
}

interface Listed {
  drill: null | {passed: boolean; summary: string}
  id: string
}

function backupFolder(project: Project, id: string): string {
  return join(project.store, 'shop', 'local', id)
}

async function created(project: Project, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const result = await cli(project, ['create', '--json', ...args], env)
  expect(result.status, result.stderr).to.equal(0)
  return (result.json() as {id: string}).id
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

describe('drill: proof that a backup restores', function () {
  before(function () {
    requireTool(this, 'age', 'age')
    requireTool(this, 'zstd', 'zstd')
  })

  it('passes on a good backup, stores a receipt that verifies with the writer key, and list and info show it', async () => {
    const project = makeProject()
    const id = await created(project)
    const drilled = await cli(project, ['drill', '--json'])
    expect(drilled.status, drilled.stderr).to.equal(0)
    const result = drilled.json() as Drilled
    expect(result.passed).to.equal(true)
    expect(result.checks.map(({name}) => name)).to.deep.equal(['objects', 'integrity', 'row counts', 'schema', 'media'])
    expect(result.database).to.deep.equal({engine: 'sqlite', rows: 70, tables: 2})

    // The receipt beside the backup: signed by this machine's writer, about this backup.
    const receipts = readdirSync(backupFolder(project, id)).filter((name) => name.startsWith('drill-'))
    expect(receipts).to.have.length(1)
    const receipt = JSON.parse(readFileSync(join(backupFolder(project, id), receipts[0]), 'utf8')) as unknown
    const writer = parseWriterKey(readFileSync(writerKeyFile(project), 'utf8')).id
    expect(authenticateNote('drill-receipt', receipt, new Set([writer]))).to.deep.equal({ok: true, writer})
    expect(authenticateNote('drill-receipt', {...(receipt as object), passed: false}, new Set([writer])).ok).to.equal(
      false,
    )

    const list = await cli(project, ['list'])
    expect(list.stdout).to.match(new RegExp(`^${id} .* passed`, 'm'))
    expect(list.stdout).to.include(`Last drill: ${id} drilled `)
    expect(list.stdout.replaceAll(/\n +/g, ' ')).to.match(/2 tables, 70 rows match, 4 media files match\.$/m)
    expect((await cli(project, ['info'])).stdout).to.match(
      /^Drill {7}drilled \d{4}-\d\d-\d\d: 2 tables, 70 rows match/m,
    )
    const listed = (await cli(project, ['list', '--json'])).json() as Listed[]
    expect(listed[0].drill?.passed).to.equal(true)

    // A receipt planted without the writer key is not shown.
    const planted = {...(receipt as object), signature: {algorithm: 'ed25519', value: 'AAAA', writer}}
    const other = await created(project)
    writeFileSync(join(backupFolder(project, other), 'drill-20261201T000000Z.json'), JSON.stringify(planted))
    const again = (await cli(project, ['list', '--json'])).json() as Listed[]
    expect(again.find((view) => view.id === other)?.drill).to.equal(null)
  })

  it('catches a dump that lost rows, forged as a writer would and re-signed, which verify passes', async () => {
    const project = makeProject()
    const id = await created(project, ['--db-only'])
    const folder = backupFolder(project, id)
    const manifestPath = join(folder, 'manifest.json')
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
      components: {
        database: {object: {bytes: number; name: string; sha256: string}; plaintext: {bytes: number; sha256: string}}
      }
      encryption: {recipients: string[]}
    }
    const {database} = manifest.components
    // The writer's dump: decrypted, rows removed, encrypted again to the same recipient.
    const work = mkdtempSync(join(project.root, '..', 'forge-'))
    const stored = join(folder, database.object.name)
    const plain = execFileSync('age', ['-d', '-i', project.identityFile, stored])
    const compressed = database.object.name.endsWith('.zst.age')
    const file = join(work, 'db.sqlite3')
    writeFileSync(file, compressed ? execFileSync('zstd', ['-dc'], {input: plain}) : plain)
    const forged = openTestDatabase(file)
    forged.exec('DELETE FROM auth_user WHERE id <= 3; VACUUM')
    forged.close()
    const content = compressed ? execFileSync('zstd', ['-c', '-q', file]) : readFileSync(file)
    const sealed = execFileSync('age', ['-r', manifest.encryption.recipients[0]], {input: content})
    writeFileSync(stored, sealed)
    database.object = {...database.object, bytes: sealed.length, sha256: sha256(sealed)}
    const forgedFile = readFileSync(file)
    database.plaintext = {bytes: forgedFile.length, sha256: sha256(forgedFile)}
    writeSignedManifest(project, manifestPath, manifest)

    const verified = await cli(project, ['verify', id])
    expect(verified.status, `verify cannot tell: ${verified.stderr}`).to.equal(0)
    const drilled = await cli(project, ['drill', id])
    expect(drilled.status).to.equal(4)
    expect(drilled.stdout).to.match(/^FAILED {2}row counts: auth_user has 47 rows, not 50$/m)
    expect(drilled.stderr).to.match(
      /^Error: The drill of backup \S+ failed: row counts: auth_user has 47 rows, not 50\.\nTry this: /,
    )
    // The failure is on record too, and list says so.
    expect(((await cli(project, ['list', '--json'])).json() as Listed[])[0].drill?.passed).to.equal(false)
  })

  it('fails on a damaged media file, with exit 4 naming the object', async () => {
    const project = makeProject()
    const id = await created(project, ['--media-only'])
    const media = join(backupFolder(project, id), 'media.tar.age')
    const bytes = readFileSync(media)
    bytes[Math.floor(bytes.length / 2)] ^= 0xff
    writeFileSync(media, bytes)
    const drilled = await cli(project, ['drill'])
    expect(drilled.status).to.equal(4)
    expect(drilled.stderr).to.match(/^Error: The drill of backup \S+ failed: objects: .*media\.tar\.age/m)
    expect(drilled.stderr).to.not.match(/\.\.$/m)
  })

  it('fails on a missing pack of incremental media, with exit 4 naming the pack', async () => {
    const project = makeProject()
    project.env.DIVIO_BACKUP_MEDIA_FORMAT = 'packs'
    await created(project, ['--media-only'])
    const packs = join(project.store, 'shop', 'local', 'packs')
    const pack = readdirSync(packs).find((name) => name.endsWith('.age'))!
    rmSync(join(packs, pack))
    const drilled = await cli(project, ['drill'])
    expect(drilled.status).to.equal(4)
    expect(drilled.stdout).to.include(`FAILED  objects: packs/${pack}: object not found`)
    expect(drilled.stderr).to.match(
      new RegExp(`^Error: The drill of backup \\S+ failed: objects: packs/${pack}: .*\\.age\\.$`, 'm'),
    )
  })

  it("fails when the config's query returns nothing, and passes when it returns the expected value", async () => {
    const project = makeProject()
    const drill = (query: string, expected?: string) => {
      writeEnvironments(project, {local: {drill: {query, ...(expected ? {expect: expected} : {})}}})
      return cli(project, ['drill'])
    }

    await created(project, ['--db-only'])
    const empty = await drill('SELECT max(email) FROM auth_user WHERE id < 0')
    expect(empty.status).to.equal(4)
    expect(empty.stdout).to.match(/^FAILED {2}query: the query returned nothing: SELECT max\(email\)/m)
    expect((await drill('SELECT count(*) FROM shop_product', '20')).status).to.equal(0)
    const wrong = await drill('SELECT count(*) FROM shop_product', '21')
    expect(wrong.status).to.equal(4)
    expect(wrong.stdout).to.include('query: the query returned 20, not 21')
  })

  it('schedule run --drill drills the newest scheduled backup once', async () => {
    const project = makeProject()
    writeEnvironments(project, {local: {schedule: {at: '02:00', timezone: 'UTC'}}})
    const tick = (instant: string) =>
      cli(project, ['schedule', 'run', '--drill', '--json'], {DIVIO_BACKUP_NOW: instant})
    const first = await tick('2026-12-01T03:00:00Z')
    expect(first.status, first.stderr).to.equal(0)
    expect((first.json() as {drill: Drilled | null}).drill?.passed).to.equal(true)
    const second = await tick('2026-12-01T04:00:00Z')
    expect((second.json() as {drill: Drilled | null}).drill, 'drilled once').to.equal(null)
  })

  it('drill.every: weekly drills a scheduled backup from schedule run once a week, without --drill', async () => {
    const project = makeProject()
    writeEnvironments(project, {local: {drill: {every: 'weekly'}, schedule: {at: '02:00', timezone: 'UTC'}}})
    const drilledOn = async (day: string) => {
      const ran = await cli(project, ['schedule', 'run', '--json'], {DIVIO_BACKUP_NOW: `${day}T03:00:00Z`})
      expect(ran.status, ran.stderr).to.equal(0)
      return (ran.json() as {drill: Drilled | null}).drill !== null
    }

    expect(await drilledOn('2026-12-01'), 'the first backup').to.equal(true)
    expect(await drilledOn('2026-12-02'), 'a day later').to.equal(false)
    expect(await drilledOn('2026-12-07'), 'six days later').to.equal(false)
    expect(await drilledOn('2026-12-08'), 'a week later').to.equal(true)
  })

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`leaves no scratch file after ${signal}`, async () => {
      const project = makeProject()
      const path = join(project.root, 'media', 'large.bin')
      writeFileSync(path, '')
      truncateSync(path, 256 * 1024 * 1024)
      const tmp = join(project.root, '..', 'tmp')
      mkdirSync(tmp)
      const env = {DIVIO_BACKUP_TMPDIR: tmp}
      await created(project, ['--media-only'], env)
      const scratch = () => readdirSync(tmp).filter((name) => name.includes('divio-drill-'))
      const child = startCli(project, ['drill'], env)
      const exited = new Promise<null | number>((resolve) => {
        child.on('exit', (code) => resolve(code))
      })
      // Once the scratch has contents, the restore into it is under way (and its guard runs).
      const underWay = () => scratch().some((name) => readdirSync(join(tmp, name)).length > 0)
      for (let waited = 0; !underWay(); waited += 5) {
        expect(waited, 'the drill restores into its scratch folder').to.be.below(60_000)
        await sleep(5)
      }

      child.kill(signal)
      const code = await exited
      if (signal === 'SIGTERM') {
        expect(code).to.equal(130)
        expect(scratch(), 'removed by the drill itself').to.deep.equal([])
      } else {
        // Nothing runs in the drill after SIGKILL: its guard process removes the scratch.
        for (let waited = 0; scratch().length > 0; waited += 50) {
          expect(waited, 'removed by the guard').to.be.below(30_000)
          await sleep(50)
        }
      }

      expect(existsSync(tmp)).to.equal(true)
    })
  }
})
