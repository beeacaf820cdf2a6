import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import zlib from 'node:zlib'

import {VerifyResult} from '../../src/services/verify.js'
import {killAfter, startCli} from '../helpers/kill.js'
import {
  cli,
  cliInBackground,
  CliResult,
  makeProject,
  Project,
  settleChangeTimes,
  snapshotTree,
  writeConfig,
} from '../helpers/project.js'
import {followRawRecipe} from '../helpers/raw-recipe.js'
import {requireTool, writeRandomFile} from '../helpers/tools.js'

const MiB = 1024 * 1024
const PACKS = {DIVIO_BACKUP_MEDIA_FORMAT: 'packs'}

interface Created {
  components: {media: {files: number}}
  id: string
}

async function create(project: Project, extra: string[] = []): Promise<{id: string; stderr: string}> {
  const result = await cli(project, ['create', '--media-only', '--json', '--verbose', ...extra], PACKS)
  expect(result.status, result.stderr).to.equal(0)
  return {id: (result.json() as Created).id, stderr: result.stderr}
}

/** The counters `create --verbose` prints for packed media. */
function counters(stderr: string): {newBytes: string; read: number; unchanged: number} {
  const line = /^verbose: media: (\d+) files, (\d+) read, (\d+) unchanged and not read; (.+) of new blobs/m.exec(stderr)
  expect(line, stderr).to.not.equal(null)
  return {newBytes: line![4], read: Number(line![2]), unchanged: Number(line![3])}
}

/** The tree a media.tar holds, extracted by system tar, and its MANIFEST.json checked file by file. */
function treeOfTar(project: Project, tar: string): Map<string, string> {
  const out = join(project.root, `extracted-${randomBytes(4).toString('hex')}`)
  mkdirSync(out)
  execFileSync('tar', ['-xf', tar, '-C', out])
  const listing = JSON.parse(readFileSync(join(out, 'MANIFEST.json'), 'utf8')) as {
    files: {path: string; sha256?: string; type: string}[]
  }
  for (const file of listing.files.filter((row) => row.type === 'file')) {
    const digest = createHash('sha256')
      .update(readFileSync(join(out, 'media', file.path)))
      .digest('hex')
    expect(digest, file.path).to.equal(file.sha256)
  }

  return snapshotTree(join(out, 'media'))
}

/** Bytes of every file under a folder. */
function sizeOfTree(folder: string): number {
  let bytes = 0
  for (const entry of readdirSync(folder, {recursive: true, withFileTypes: true})) {
    if (entry.isFile()) bytes += statSync(join(entry.parentPath, entry.name)).size
  }

  return bytes
}

describe('incremental media (packs)', function () {
  before(function () {
    requireTool(this, 'age', 'age')
    requireTool(this, 'tar', 'tar')
  })

  it('three backups with changes between them: each downloads and restores to exactly its tree', async () => {
    const project = makeProject()
    const media = join(project.root, 'media')
    const large = join(media, 'uploads', 'large.bin')
    writeRandomFile(large, 5 * MiB)
    const trees: Map<string, string>[] = []
    const ids: string[] = []
    const snapshot = async () => {
      trees.push(snapshotTree(media))
      ids.push((await create(project)).id)
    }

    await snapshot()
    const packsFolder = join(project.store, 'shop', 'local', 'packs')
    const firstPacks = readdirSync(packsFolder)
    // A new file, a file changed in place, a file deleted, a file renamed, bytes inserted mid-file.
    writeFileSync(join(media, 'uploads', 'new.txt'), 'a new file\n')
    const readme = join(media, 'uploads', 'readme.txt')
    writeFileSync(readme, 'HELLO media\n')
    rmSync(join(media, 'uploads', 'empty.txt'))
    renameSync(join(media, 'uploads', '2026', 'ünïcødé 文件', 'photo.bin'), join(media, 'uploads', 'photo-renamed.bin'))
    const bytes = readFileSync(large)
    writeFileSync(
      large,
      Buffer.concat([bytes.subarray(0, 2 * MiB + 7), randomBytes(1000), bytes.subarray(2 * MiB + 7)]),
    )
    await snapshot()
    writeFileSync(join(media, 'uploads', 'third.bin'), randomBytes(100_000))
    await snapshot()

    for (const [index, id] of ids.entries()) {
      const out = join(project.root, `download-${index}`)
      const downloaded = await cli(project, ['download', id, '-o', out], PACKS)
      expect(downloaded.status, downloaded.stderr).to.equal(0)
      expect(treeOfTar(project, join(out, 'media.tar')), `backup ${index + 1}`).to.deep.equal(trees[index])
    }

    for (const [index, id] of ids.entries()) {
      const restored = await cli(project, ['restore', id, '--confirm', 'local', '--no-safety-backup'], PACKS)
      expect(restored.status, restored.stderr).to.equal(0)
      expect(snapshotTree(media), `restore of backup ${index + 1}`).to.deep.equal(trees[index])
    }

    // verify --all reads what the backups share once: the newest is checked first, and each older
    // backup's files that a newer one holds unchanged were read and checked for that one.
    const verified = await cli(project, ['verify', '--all', '--json'], PACKS)
    expect(verified.status, verified.stderr).to.equal(0)
    const packsLine = (result: CliResult) =>
      (result.json() as VerifyResult[]).map(({objects}) => objects.find(({name}) => name.startsWith('packs'))!.detail)
    const details = packsLine(verified)
    expect(details[0]).to.not.include('checked already')
    expect(details.slice(1).every((detail) => / \(\d+ of them checked already in this run/.test(detail))).to.equal(true)

    // One byte of a blob that every backup shares, damaged (the first MiB of large.bin, at the start of
    // the largest pack of the first backup): each backup fails, not just the first to read it, since
    // nothing of a read that failed counts as checked.
    const [shared] = firstPacks
      .map((name) => ({name, size: statSync(join(packsFolder, name)).size}))
      .sort((a, b) => b.size - a.size)
    const packFile = join(packsFolder, shared.name)
    const damaged = readFileSync(packFile)
    damaged[Math.floor(damaged.length / 10)] ^= 0x01
    writeFileSync(packFile, damaged)
    const failed = await cli(project, ['verify', '--all', '--json'], PACKS)
    expect(failed.status, failed.stderr).to.equal(4)
    expect(packsLine(failed).map((detail) => detail.split(': ')[0])).to.deep.equal(
      ids.map(() => `packs/${shared.name}`),
    )
  })

  it('an unchanged re-backup reads no file and stores no blob; a 1 KiB change stores one blob; a rename or copy stores none', async () => {
    const project = makeProject()
    writeRandomFile(join(project.root, 'media', 'uploads', 'large.bin'), 8 * MiB)
    await settleChangeTimes()
    const first = counters((await create(project)).stderr)
    expect(first.unchanged).to.equal(0)
    expect(first.read).to.be.greaterThan(0)

    const again = counters((await create(project)).stderr)
    expect(again).to.deep.equal({newBytes: '0 B', read: 0, unchanged: first.read})

    const large = join(project.root, 'media', 'uploads', 'large.bin')
    const content = readFileSync(large)
    content.write('x'.repeat(1024), 3 * MiB)
    writeFileSync(large, content)
    const changed = counters((await create(project)).stderr)
    expect(changed.read).to.equal(1)
    expect(changed.newBytes).to.equal('1.0 MiB')

    // A rename and a copy are read (their paths are new) but store nothing: their blobs are known.
    renameSync(large, join(project.root, 'media', 'moved.bin'))
    writeFileSync(join(project.root, 'media', 'copy.bin'), content)
    const moved = counters((await create(project)).stderr)
    expect(moved).to.include({newBytes: '0 B', read: 2})
    const out = join(project.root, 'moved')
    expect((await cli(project, ['download', 'latest', '-o', out], PACKS)).status).to.equal(0)
    expect(treeOfTar(project, join(out, 'media.tar'))).to.deep.equal(snapshotTree(join(project.root, 'media')))
  })

  it('empty files need no blob: 2,000 of them store no pack, and come back from download and restore', async () => {
    const project = makeProject()
    const media = join(project.root, 'media')
    rmSync(media, {force: true, recursive: true})
    mkdirSync(join(media, 'empty'), {recursive: true})
    for (let index = 0; index < 2000; index++) writeFileSync(join(media, 'empty', `${index}.txt`), '')
    const {id} = await create(project)
    // No content, so no pack: a blob header per empty file would have cost 1 MB of packs.
    expect(existsSync(join(project.store, 'shop', 'local', 'packs'))).to.equal(false)
    const out = join(project.root, 'out')
    expect((await cli(project, ['download', id, '-o', out], PACKS)).status).to.equal(0)
    expect(treeOfTar(project, join(out, 'media.tar'))).to.deep.equal(snapshotTree(media))
    rmSync(join(media, 'empty'), {force: true, recursive: true})
    const restored = await cli(project, ['restore', id, '--confirm', 'local', '--media-only'], PACKS)
    expect(restored.status, restored.stderr).to.equal(0)
    expect(readdirSync(join(media, 'empty'))).to.have.length(2000)
  })

  it('on a machine without the zstd program, compressed packs are read with node:zlib, or the error says what to install', async () => {
    const project = makeProject()
    writeFileSync(join(project.root, 'media', 'notes.txt'), 'a line that compresses well\n'.repeat(10_000))
    const {id} = await create(project)
    const manifest = JSON.parse(readFileSync(join(project.store, 'shop', 'local', id, 'manifest.json'), 'utf8')) as {
      components: {media: {packObjects: {compression?: string}[]}}
    }
    expect(manifest.components.media.packObjects.some((pack) => pack.compression === 'zstd')).to.equal(true)
    // Nothing on PATH: no zstd program (the CLI itself needs no other).
    const empty = join(project.root, 'empty-path')
    mkdirSync(empty)
    const result = await cli(project, ['download', id, '-o', 'out'], {...PACKS, PATH: empty})
    if ('createZstdDecompress' in zlib) {
      expect(result.status, result.stderr).to.equal(0)
      expect(treeOfTar(project, join(project.root, 'out', 'media.tar'))).to.deep.equal(
        snapshotTree(join(project.root, 'media')),
      )
    } else {
      expect(result.status, result.stderr).to.equal(7)
      expect(result.stderr).to.match(/(packs|objects) compressed with zstd, and this machine cannot decompress them/)
      expect(result.stderr).to.include('apt-get install zstd')
      expect(existsSync(join(project.root, 'out', 'media.tar'))).to.equal(false)
    }
  })

  it('never reuses a blob of a condemned pack: the file is read and stored again', async () => {
    const project = makeProject()
    await settleChangeTimes()
    const {id} = await create(project)
    const packs = join(project.store, 'shop', 'local', 'packs')
    // One pack of compressed blobs, one of the rest.
    const first = readdirSync(packs)
    expect(first).to.have.length(2)
    // As a prune racing with this create would have left them.
    for (const pack of first) writeFileSync(join(packs, `${pack}.condemned`), '2026-12-01T00:00:00Z\n')
    const second = counters((await create(project)).stderr)
    // Every file is read again but the empty one, which has no blob in any pack.
    expect(second.unchanged).to.equal(1)
    expect(readdirSync(packs).filter((name) => name.endsWith('.age'))).to.have.length(4)

    // The first backup still references the old packs: prune pardons them instead of deleting them.
    const pruned = await cli(project, ['prune', '--confirm', 'local', '--json'], PACKS)
    expect(pruned.status, pruned.stderr).to.equal(0)
    expect((pruned.json() as {packs: {pardoned: string[]}}).packs.pardoned.sort()).to.deep.equal(first.sort())
    expect((await cli(project, ['verify', id], PACKS)).status).to.equal(0)
  })

  it('prune collects unreferenced packs in two phases, a grace period apart, and what is left verifies', async () => {
    const project = makeProject()
    const media = join(project.root, 'media')
    rmSync(media, {recursive: true})
    mkdirSync(media)
    writeFileSync(join(media, 'gone.bin'), randomBytes(300_000))
    const old = (await create(project)).id
    rmSync(join(media, 'gone.bin'))
    writeFileSync(join(media, 'kept.bin'), randomBytes(300_000))
    const kept = (await create(project)).id
    expect((await cli(project, ['delete', old, '--confirm', 'local'])).status).to.equal(0)
    const packs = join(project.store, 'shop', 'local', 'packs')
    const before = readdirSync(packs).filter((name) => name.endsWith('.age'))
    expect(before).to.have.length(2)

    const first = await cli(project, ['prune', '--confirm', 'local', '--json'], PACKS)
    expect(first.status, first.stderr).to.equal(0)
    const condemned = (first.json() as {packs: {condemned: string[]; deleted: string[]}}).packs
    expect(condemned.deleted).to.deep.equal([])
    expect(condemned.condemned).to.have.length(1)
    expect(readdirSync(packs).filter((name) => name.endsWith('.age'))).to.have.length(2)

    // What a create killed mid-pack leaves: kept while it may still be written, removed after the grace period.
    const half = `${'ab'.repeat(16)}.age.partial-0123456789ab`
    writeFileSync(join(packs, half), 'half a pack')
    const fresh = await cli(project, ['prune', '--confirm', 'local', '--json'], PACKS)
    expect((fresh.json() as {packs: {leftovers: string[]}}).packs.leftovers).to.deep.equal([])
    expect(readdirSync(packs)).to.include(half)

    const later = {...PACKS, DIVIO_BACKUP_NOW: new Date(Date.now() + 25 * 3_600_000).toISOString()}
    const second = await cli(project, ['prune', '--confirm', 'local', '--json'], later)
    expect(second.status, second.stderr).to.equal(0)
    const collected = (second.json() as {packs: {deleted: string[]; leftovers: string[]}}).packs
    expect(collected.deleted).to.deep.equal(condemned.condemned)
    expect(collected.leftovers).to.deep.equal([half])
    expect(readdirSync(packs)).to.deep.equal(before.filter((name) => !condemned.condemned.includes(name)))

    // A leftover alone is work enough for prune (nothing else to remove).
    writeFileSync(join(packs, half), 'half a pack')
    const alone = await cli(project, ['prune', '--confirm', 'local'], later)
    expect(alone.stdout).to.include('1 half-written pack removed.')
    expect(readdirSync(packs)).to.not.include(half)
    expect((await cli(project, ['verify', kept], PACKS)).status).to.equal(0)
  })

  it('prune with the identity repacks mostly dead packs: two prunes a grace period apart leave at most 1.2x the one remaining backup', async () => {
    const project = makeProject()
    const media = join(project.root, 'media')
    rmSync(media, {recursive: true})
    mkdirSync(media)
    // 24 files of 1 MiB: two packs. Then half of them go, in two steps, and new ones come.
    const write = (name: string) => writeRandomFile(join(media, name), MiB)
    for (let index = 0; index < 24; index++) write(`a-${String(index).padStart(2, '0')}.bin`)
    const first = (await create(project)).id
    for (let index = 0; index < 24; index += 2) rmSync(join(media, `a-${String(index).padStart(2, '0')}.bin`))
    for (let index = 0; index < 6; index++) write(`b-${index}.bin`)
    const second = (await create(project)).id
    for (let index = 0; index < 6; index += 2) rmSync(join(media, `b-${index}.bin`))
    write('c.bin')
    const last = (await create(project)).id
    const tree = snapshotTree(media)
    const data = readdirSync(media).length * MiB
    for (const id of [first, second])
      expect((await cli(project, ['delete', id, '--confirm', 'local'])).status).to.equal(0)

    const environment = join(project.store, 'shop', 'local')
    const packs = join(environment, 'packs')
    const storeBytes = () => sizeOfTree(environment)
    interface Pruned {
      packs: {deleted: string[]; repacked?: {from: string[]; into: string[]; skipped?: string}}
    }
    const prune = async (extra: NodeJS.ProcessEnv = {}) => {
      const result = await cli(project, ['prune', '--confirm', 'local', '--json'], {...PACKS, ...extra})
      expect(result.status, result.stderr).to.equal(0)
      return (result.json() as Pruned).packs
    }

    // Without the identity only whole packs go: the half-dead ones stay, and the store is well over 1.2x.
    const later = {DIVIO_BACKUP_NOW: new Date(Date.now() + 25 * 3_600_000).toISOString()}
    const noIdentity = {DIVIO_BACKUP_IDENTITY_FILE: join(project.root, 'no-such-identity.txt')}
    expect((await prune(noIdentity)).repacked?.skipped).to.match(/no identity/)
    expect((await prune({...noIdentity, ...later})).repacked?.skipped).to.match(/no identity/)
    expect(storeBytes()).to.be.greaterThan(1.3 * data)

    const repacking = await prune()
    expect(repacking.repacked?.from).to.have.length(3) // each half dead: two of the first backup's, one of the second's
    expect(repacking.repacked?.into).to.have.length(1)
    expect(readdirSync(packs).filter((name) => name.includes('.to.'))).to.have.length(3)
    // Until the superseded packs are deleted, a backup reads them; afterwards, their copy.
    expect((await cli(project, ['verify', last], PACKS)).status).to.equal(0)
    const collected = await prune(later)
    expect(collected.deleted).to.include.members(repacking.repacked!.from)
    expect(storeBytes()).to.be.at.most(1.2 * data)

    const verified = await cli(project, ['verify', '--all'], PACKS)
    expect(verified.status, verified.stdout).to.equal(0)
    expect((await cli(project, ['verify', last, '--sample', '100'], PACKS)).status).to.equal(0)
    const out = join(project.root, 'out')
    expect((await cli(project, ['download', last, '-o', out], PACKS)).status).to.equal(0)
    expect(treeOfTar(project, join(out, 'media.tar'))).to.deep.equal(tree)
    // The raw export copies the packs the backup's blobs are in now, and its recipe still works.
    const raw = join(project.root, 'raw')
    expect((await cli(project, ['export', '--raw', '-o', raw], PACKS)).status).to.equal(0)
    followRawRecipe(raw, {id: last, identityFile: project.identityFile, target: 'media'})
    expect(snapshotTree(join(raw, 'media'))).to.deep.equal(tree)
  })

  it('a create that runs while prune deletes packs commits a backup that verifies', async () => {
    const project = makeProject()
    // A grace period of seconds, so that the prune that deletes runs on the real clock: a prune whose
    // clock ran ahead would take the running create's half-written pack for a killed one's.
    const graceMs = 10_000
    writeConfig(project, {
      media: 'media',
      mediaFormat: 'packs',
      retention: {incompleteGraceHours: graceMs / 3_600_000},
      store: './.divio/backups',
    })
    const media = join(project.root, 'media')
    // First in the walk, so that its first pack holds nothing else.
    writeRandomFile(join(media, 'aaa-old.bin'), 20 * MiB)
    const old = (await create(project)).id
    rmSync(join(media, 'aaa-old.bin'))
    writeRandomFile(join(media, 'kept.bin'), 20 * MiB)
    await create(project)
    expect((await cli(project, ['delete', old, '--confirm', 'live'])).status).to.equal(0)
    const condemned = await cli(project, ['prune', '--confirm', 'live', '--json'])
    expect((condemned.json() as {packs: {condemned: string[]}}).packs.condemned.length).to.be.greaterThan(0)
    await sleep(graceMs + 500)

    // A long create (new content to read and pack) and, while it runs, the prune that deletes.
    writeRandomFile(join(media, 'new.bin'), 60 * MiB)
    const running = cliInBackground(project, ['create', '--media-only', '--json'])
    await sleep(300)
    const deleting = await cliInBackground(project, ['prune', '--confirm', 'live', '--json'])
    expect(deleting.status, deleting.stderr).to.equal(0)
    expect((deleting.json() as {packs: {deleted: string[]}}).packs.deleted.length).to.be.greaterThan(0)
    const created = await running
    expect(created.status, created.stdout + created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    const verified = await cli(project, ['verify', id])
    expect(verified.status, verified.stdout).to.equal(0)
  })

  it('the store shows no file name and no content hash, in object names or in any plaintext object', async () => {
    const project = makeProject()
    const {id} = await create(project)
    const out = join(project.root, 'out')
    expect((await cli(project, ['download', id, '-o', out], PACKS)).status).to.equal(0)
    const listing = JSON.parse(
      execFileSync('tar', ['-xOf', join(out, 'media.tar'), 'MANIFEST.json'], {encoding: 'utf8'}),
    ) as {files: {path: string; sha256?: string}[]}
    const secrets = listing.files.flatMap((file) => [
      // Whole names; a year-only folder (2026) is also in every backup id, which is a time, not a name.
      ...file.path.split('/').filter((part) => part.length >= 4 && !/^\d+$/.test(part)),
      ...(file.sha256 ? [file.sha256, file.sha256.slice(0, 16)] : []),
    ])
    expect(secrets.length).to.be.greaterThan(4)
    const objects = readdirSync(project.store, {recursive: true}).map(String)
    const names = objects.join('\n')
    const plaintext = objects
      .filter((name) => name.endsWith('.json') || name.endsWith('.condemned'))
      .map((name) => readFileSync(join(project.store, name), 'utf8'))
      .join('\n')
    for (const secret of secrets) {
      expect(names, secret).to.not.include(secret)
      expect(plaintext, secret).to.not.include(secret)
    }
  })

  it('verify --sample reads a share of the packs; a damaged pack fails verify, naming it, with exit 4', async () => {
    const project = makeProject()
    writeRandomFile(join(project.root, 'media', 'uploads', 'large.bin'), 40 * MiB)
    const {id} = await create(project)
    const sampled = await cli(project, ['verify', id, '--sample', '34', '--json'], PACKS)
    expect(sampled.status, sampled.stderr).to.equal(0)
    const {objects} = sampled.json() as {objects: {name: string; ok: boolean}[]}
    expect(objects.map((object) => object.name)).to.deep.equal([
      'manifest.json',
      'media.index.gz.age',
      'media.rebuild.sh.age',
      'media.rebuild.sh.age (derived)',
      'packs (sample of 2 of 4)',
    ])

    const packs = join(project.store, 'shop', 'local', 'packs')
    const [pack] = readdirSync(packs)
    const bytes = readFileSync(join(packs, pack))
    bytes[Math.floor(bytes.length / 2)] ^= 0x01
    writeFileSync(join(packs, pack), bytes)
    for (const args of [[], ['--sample', '100']]) {
      const failed = await cli(project, ['verify', id, ...args], PACKS)
      expect(failed.status, args.join(' ')).to.equal(4)
      expect(failed.stdout).to.include(`packs/${pack}`)
    }
  })

  it('export writes the standard media.tar of every packed backup', async () => {
    const project = makeProject()
    await create(project)
    const tree = snapshotTree(join(project.root, 'media'))
    const out = join(project.root, 'export')
    const exported = await cli(project, ['export', '-o', out, '--json'], PACKS)
    expect(exported.status, exported.stderr).to.equal(0)
    const {files} = exported.json() as {files: {path: string; sha256: string}[]}
    const tar = files.find((file) => file.path.endsWith('media.tar'))!
    expect(createHash('sha256').update(readFileSync(tar.path)).digest('hex')).to.equal(tar.sha256)
    expect(treeOfTar(project, tar.path)).to.deep.equal(tree)
  })

  it('export --raw gives the packs and a script: age, tar and sh rebuild each backup, as its README says', async () => {
    const project = makeProject()
    const first = (await create(project)).id
    const firstTree = snapshotTree(join(project.root, 'media'))
    writeFileSync(join(project.root, 'media', 'uploads', "it's new.txt"), 'quoted name\n')
    const second = (await create(project)).id
    const secondTree = snapshotTree(join(project.root, 'media'))
    const out = join(project.root, 'raw')
    const exported = await cli(project, ['export', '--raw', '-o', out], PACKS)
    expect(exported.status, exported.stderr).to.equal(0)
    for (const [id, tree] of [
      [first, firstTree],
      [second, secondTree],
    ] as const) {
      const target = `media-${id}`
      followRawRecipe(out, {id, identityFile: project.identityFile, target})
      expect(snapshotTree(join(out, target)), id).to.deep.equal(tree)
    }
  })
})

/** A command of the sweep, on packed media. */
function startCommand(project: Project, args: string[], extra: NodeJS.ProcessEnv = {}) {
  return startCli(project, args, {...PACKS, ...extra})
}

describe('incremental media: SIGKILL sweep of create and prune', function () {
  it('never leaves a committed backup that refers to a missing pack; every listed backup verifies', async function () {
    requireTool(this, 'age', 'age')
    const project = makeProject()
    const media = join(project.root, 'media')
    writeRandomFile(join(media, 'base.bin'), 40 * MiB)
    const churn = join(media, 'churn.bin')
    writeRandomFile(churn, 40 * MiB)
    expect((await cli(project, ['create'], PACKS)).status).to.equal(0)

    // New content each time, so that every create writes packs, and is killed while it does.
    for (const ms of [30, 200, 400, 650, 900, 1200, 1600, 2100]) {
      writeRandomFile(churn, 40 * MiB)
      await killAfter(startCommand(project, ['create']), ms)
      const listed = await cli(project, ['list', '--all', '--json'], PACKS)
      expect(listed.status, listed.stderr).to.equal(0)
      for (const backup of listed.json() as Array<{status: string}>) expect(backup.status).to.not.equal('damaged')
    }

    expect((await cli(project, ['create'], PACKS)).status).to.equal(0)
    const complete = (await cli(project, ['list', '--json'], PACKS)).json() as Array<{id: string}>
    // Everything but the newest goes, so that prune has packs to condemn and then delete.
    for (const {id} of complete.slice(1))
      expect((await cli(project, ['delete', id, '--confirm', 'local'])).status).to.equal(0)
    const later = {DIVIO_BACKUP_NOW: new Date(Date.now() + 25 * 3_600_000).toISOString()}
    // Eight points of prune: reading indexes, repacking the half-dead pack, condemning; then deleting.
    for (const ms of [50, 150, 300, 450, 600])
      await killAfter(startCommand(project, ['prune', '--confirm', 'local']), ms)
    for (const ms of [50, 300, 600]) await killAfter(startCommand(project, ['prune', '--confirm', 'local'], later), ms)
    expect((await cli(project, ['prune', '--confirm', 'local'], PACKS)).status).to.equal(0)
    expect((await cli(project, ['prune', '--confirm', 'local'], {...PACKS, ...later})).status).to.equal(0)
    // A marker written by one of the prunes at `later` is signed with that time: a grace period on.
    const evenLater = {DIVIO_BACKUP_NOW: new Date(Date.now() + 50 * 3_600_000).toISOString()}
    expect((await cli(project, ['prune', '--confirm', 'local'], {...PACKS, ...evenLater})).status).to.equal(0)

    const verified = await cli(project, ['verify', '--all', '--json'], PACKS)
    expect(verified.status, verified.stdout + verified.stderr).to.equal(0)
    expect((verified.json() as unknown[]).length).to.equal(1)
    // What is left is what the one backup reaches: the packs it names, or, for those that repacking
    // superseded and prune deleted, the packs their forwards lead to; nothing condemned, nothing else.
    const [kept] = (await cli(project, ['list', '--json'], PACKS)).json() as Array<{id: string}>
    const manifest = JSON.parse(
      readFileSync(join(project.store, 'shop', 'local', kept.id, 'manifest.json'), 'utf8'),
    ) as {components: {media: {packs: string[]}}}
    const names = readdirSync(join(project.store, 'shop', 'local', 'packs'))
    const present = new Set(names.filter((name) => /^[\da-f]{32}\.age$/.test(name)))
    const forwards = names.filter((name) => name.includes('.to.')).map((name) => name.split('.to.'))
    const reached = new Set<string>()
    const reach = (pack: string): void => {
      if (present.has(pack)) reached.add(pack)
      else for (const [from, to] of forwards) if (from === pack) reach(to)
    }

    for (const pack of manifest.components.media.packs) reach(pack)
    expect([...present].sort()).to.deep.equal([...reached].sort())
    expect(names.filter((name) => !present.has(name) && !name.includes('.to.'))).to.deep.equal([])
  })
})
