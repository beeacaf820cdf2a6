import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {gunzipSync, gzipSync} from 'node:zlib'

import {parseWriterKey} from '../../src/archive/writer-key.js'
import {signNote} from '../../src/domain/authenticity.js'
import {BackupError} from '../../src/errors.js'
import {createBackup} from '../../src/services/create.js'
import {LocalStore} from '../../src/store/local.js'
import {Store} from '../../src/store/port.js'
import {contextFor} from '../helpers/context.js'
import {cli, makeProject, Project, writerKeyFile, writeSignedManifest} from '../helpers/project.js'
import {followRawRecipe} from '../helpers/raw-recipe.js'
import {requireTool} from '../helpers/tools.js'

/**
 * The store under a writer who holds no key (or, where said, a stolen writer key): nothing it plants
 * or edits decides what prune deletes or what a reader trusts, no backup is built on a pack that is
 * gone, and what a store writer can still do is noticed.
 */

const PACKS = {DIVIO_BACKUP_MEDIA_FORMAT: 'packs'}
const HOUR = 3_600_000
const at = (hours: number) => ({...PACKS, DIVIO_BACKUP_NOW: new Date(Date.now() + hours * HOUR).toISOString()})
/** A prune machine without the identity: it can collect, but not read a copy. */
const NO_IDENTITY = {DIVIO_BACKUP_IDENTITY_FILE: '/nonexistent/identity.txt'}

interface Manifest {
  components: {
    media: {
      packObjects: {bytes: number; name: string; sha256: string}[]
      packs: string[]
      rebuild: {object: {bytes: number; name: string; sha256: string}; plaintext: {bytes: number; sha256: string}}
    }
  }
}

function packsFolder(project: Project): string {
  return join(project.store, 'shop', 'local', 'packs')
}

function manifestPath(project: Project, id: string): string {
  return join(project.store, 'shop', 'local', id, 'manifest.json')
}

function manifestOf(project: Project, id: string): Manifest {
  return JSON.parse(readFileSync(manifestPath(project, id), 'utf8')) as Manifest
}

async function create(project: Project): Promise<string> {
  const result = await cli(project, ['create', '--media-only', '--json'], PACKS)
  expect(result.status, result.stderr).to.equal(0)
  return (result.json() as {id: string}).id
}

async function prune(project: Project, extra: NodeJS.ProcessEnv = PACKS) {
  const result = await cli(project, ['prune', '--confirm', 'local', '--json'], {...PACKS, ...extra})
  expect(result.status, result.stderr).to.equal(0)
  return {
    packs: (result.json() as {packs: {condemned: string[]; deleted: string[]; held: unknown[]; ignored: string[]}})
      .packs,
    stderr: result.stderr,
  }
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex')
}

/**
 * Two backups on two packs, as in the review: B1 uses P1, B2 uses P1 and P2. Each file is alone in
 * its pack, so the packs are told apart by content.
 */
async function twoBackups(): Promise<{b1: string; b2: string; p1: string; p2: string; project: Project}> {
  const project = makeProject()
  const media = join(project.root, 'media')
  rmSync(media, {recursive: true})
  mkdirSync(media)
  writeFileSync(join(media, 'first.bin'), randomBytes(300_000))
  const b1 = await create(project)
  writeFileSync(join(media, 'second.bin'), randomBytes(300_000))
  const b2 = await create(project)
  const [p1] = manifestOf(project, b1).components.media.packs
  const p2 = manifestOf(project, b2).components.media.packs.find((pack) => pack !== p1)!
  expect(manifestOf(project, b2).components.media.packs.sort()).to.deep.equal([p1, p2].sort())
  return {b1, b2, p1, p2, project}
}

async function verifyAll(project: Project): Promise<null | number> {
  return (await cli(project, ['verify', '--all'], PACKS)).status
}

function writerKey(project: Project) {
  return parseWriterKey(readFileSync(writerKeyFile(project), 'utf8'))
}

/** `age -r` to the project's own recipient: what anyone who has read the store can do. */
function encryptToOwner(project: Project, plaintext: Buffer): Buffer {
  const recipient = execFileSync('age-keygen', ['-y', project.identityFile]).toString().trim()
  return execFileSync('age', ['-r', recipient], {input: plaintext})
}

describe('a hostile store writer', function () {
  before(function () {
    requireTool(this, 'age', 'age')
  })

  it('forged forwards between two live packs are ignored: no prune, with or without the identity, deletes a pack', async () => {
    const {b1, b2, p1, p2, project} = await twoBackups()
    const forged = `${JSON.stringify({accounted: [b1, b2], at: new Date().toISOString()})}\n`
    writeFileSync(join(packsFolder(project), `${p1}.to.${p2}`), forged)
    writeFileSync(join(packsFolder(project), `${p2}.to.${p1}`), forged)
    const now = await prune(project)
    expect(now.packs.condemned).to.deep.equal([])
    expect(now.packs.ignored).to.have.length(2)
    for (const [from, to] of [
      [p1, p2],
      [p2, p1],
    ])
      expect(now.stderr).to.include(`warning: ignored packs/${from}.to.${to}: unsigned`)
    for (const later of [{...at(25), ...NO_IDENTITY}, at(50)])
      expect((await prune(project, later)).packs.deleted).to.deep.equal([])
    expect(readdirSync(packsFolder(project))).to.include.members([p1, p2])
    expect(await verifyAll(project)).to.equal(0)
  })

  it('a lying forward signed with a stolen writer key: the pack waits for the identity, whose check of the copy pardons it', async () => {
    const {b1, b2, p1, p2, project} = await twoBackups()
    const bytes = readFileSync(join(packsFolder(project), p2))
    const fields = {
      accounted: [b1, b2].sort(),
      app: 'shop',
      at: new Date().toISOString(),
      environment: 'local',
      from: p1,
      to: {bytes: bytes.length, name: p2, sha256: sha256(bytes)},
    }
    writeFileSync(
      join(packsFolder(project), `${p1}.to.${p2}`),
      JSON.stringify(signNote('forward', fields, writerKey(project))),
    )
    expect((await prune(project)).packs.condemned).to.deep.equal([p1])
    // Without the identity, nothing can check the copy: the pack is held, not deleted.
    const blind = (await prune(project, {...at(25), ...NO_IDENTITY})).packs
    expect(blind.deleted).to.deep.equal([])
    expect(JSON.stringify(blind.held)).to.include('kept until a prune with the identity checks')
    // With it, the copy is read: it does not hold P1's blobs, so P1 is pardoned, each time it comes up.
    const checked = (await prune(project, at(26))).packs
    expect(checked.deleted).to.deep.equal([])
    expect(JSON.stringify(checked.held)).to.include('pardoned: its copy does not hold every live blob')
    expect(readdirSync(packsFolder(project))).to.include(p1)
    expect((await prune(project, at(27))).packs.condemned).to.deep.equal([p1])
    expect(JSON.stringify((await prune(project, at(52))).packs.held)).to.include('pardoned: its copy does not hold')
    expect(await verifyAll(project)).to.equal(0)
  })

  it('a back-dated or replayed marker does not shorten the grace period; one on a live pack is removed', async () => {
    const {b2, p1, p2, project} = await twoBackups()
    expect((await cli(project, ['delete', b2, '--confirm', 'local'])).status).to.equal(0)
    const threeDaysAgo = new Date(Date.now() - 72 * HOUR)
    const plant = (pack: string, body: string) => {
      const path = join(packsFolder(project), `${pack}.condemned`)
      writeFileSync(path, body)
      utimesSync(path, threeDaysAgo, threeDaysAgo)
    }

    // Unsigned, with a file time three days back: ignored, and P2 is condemned from now.
    plant(p2, `${threeDaysAgo.toISOString()}\n`)
    plant(p1, `${threeDaysAgo.toISOString()}\n`)
    const first = await prune(project)
    expect(first.packs.deleted).to.deep.equal([])
    expect(first.packs.condemned).to.deep.equal([p2])
    expect(readdirSync(packsFolder(project)))
      .to.include(p2)
      .and.not.include(`${p1}.condemned`)
    // Signed three days back (a stolen key, or a replay) and back-dated: the store's clock says now.
    const marker = signNote(
      'condemned',
      {app: 'shop', at: threeDaysAgo.toISOString(), environment: 'local', pack: p2},
      writerKey(project),
    )
    plant(p2, JSON.stringify(marker))
    expect((await prune(project)).packs.deleted).to.deep.equal([])
    expect((await prune(project, at(25))).packs.deleted).to.deep.equal([p2])
    expect(await verifyAll(project)).to.equal(0)
  })

  it('create does not build on a pack that is missing or that failed a check, and verify says what works', async () => {
    const {b2, p1, p2, project} = await twoBackups()
    // A pack deleted by hand (a lifecycle rule, an old copy put back).
    rmSync(join(packsFolder(project), p1))
    const failed = await cli(project, ['verify', b2], PACKS)
    expect(failed.status).to.equal(4)
    expect(failed.stderr).to.include('does not build on a pack that is missing')
    const next = await create(project)
    expect(manifestOf(project, next).components.media.packs).to.not.include(p1)
    expect((await cli(project, ['verify', next], PACKS)).status).to.equal(0)

    // A pack damaged in place, at its size: verify finds it, and this machine's creates store anew.
    const path = join(packsFolder(project), p2)
    const bytes = readFileSync(path)
    bytes[bytes.length >> 1] ^= 1
    writeFileSync(path, bytes)
    expect(manifestOf(project, next).components.media.packs).to.include(p2)
    expect((await cli(project, ['verify', next], PACKS)).status).to.equal(4)
    const after = await create(project)
    expect(manifestOf(project, after).components.media.packs).to.not.include(p2)
    expect((await cli(project, ['verify', after], PACKS)).status).to.equal(0)
  })

  it('verify --sample checks a pack against the index: a pack swapped for a copy of another fails', async () => {
    const {b2, p1, p2, project} = await twoBackups()
    writeFileSync(join(packsFolder(project), p2), readFileSync(join(packsFolder(project), p1)))
    const sampled = await cli(project, ['verify', b2, '--sample', '100'], PACKS)
    expect(sampled.status, sampled.stdout).to.equal(4)
    expect(sampled.stdout).to.include(`packs/${p2}`)
  })

  it('a rebuild script with one command more, signed with a stolen writer key, fails verify and export --raw', async () => {
    const {b2, project} = await twoBackups()
    const folder = join(project.store, 'shop', 'local', b2)
    const stored = join(folder, 'media.rebuild.sh.age')
    const script = execFileSync('zstd', ['-dcqf'], {
      input: execFileSync('age', ['-d', '-i', project.identityFile, stored]),
    })
    const evil = Buffer.concat([script, Buffer.from('touch "$T/../planted"\n')])
    const encrypted = encryptToOwner(project, evil)
    writeFileSync(stored, encrypted)
    const manifest = manifestOf(project, b2)
    manifest.components.media.rebuild = {
      object: {bytes: encrypted.length, name: 'media.rebuild.sh.age', sha256: sha256(encrypted)},
      plaintext: {bytes: evil.length, sha256: sha256(evil)},
    }
    writeSignedManifest(project, manifestPath(project, b2), manifest)
    const verified = await cli(project, ['verify', b2], PACKS)
    expect(verified.status, verified.stdout).to.equal(4)
    expect(verified.stdout).to.match(/media\.rebuild\.sh\.age \(derived\).*not the script its index derives/)
    const exported = await cli(project, ['export', '--raw', '-o', join(project.root, 'raw')], PACKS)
    expect(exported.status).to.equal(4)
    expect(exported.stderr).to.include(`The rebuild script of backup ${b2} is not the one its index derives`)
  })

  /**
   * A packed backup (with large.bin, 300,000 bytes) whose index `edit` changed, line by line, then
   * encrypted and signed again as the holder of a stolen writer key would.
   */
  async function backupWithIndexEdited(edit: (lines: string[]) => void): Promise<{id: string; project: Project}> {
    const project = makeProject()
    writeFileSync(join(project.root, 'media', 'large.bin'), randomBytes(300_000))
    const id = await create(project)
    const stored = join(project.store, 'shop', 'local', id, 'media.index.gz.age')
    const lines = gunzipSync(execFileSync('age', ['-d', '-i', project.identityFile, stored]))
      .toString()
      .split('\n')
    edit(lines)
    const gzipped = gzipSync(lines.join('\n'))
    const encrypted = encryptToOwner(project, gzipped)
    writeFileSync(stored, encrypted)
    const manifest = manifestOf(project, id) as unknown as {components: {media: {index: object}}}
    manifest.components.media.index = {
      encoding: 'gzip',
      object: {bytes: encrypted.length, name: 'media.index.gz.age', sha256: sha256(encrypted)},
      plaintext: {bytes: gzipped.length, sha256: sha256(gzipped)},
    }
    writeSignedManifest(project, manifestPath(project, id), manifest)
    return {id, project}
  }

  // What an index line says of a file must be what its blobs hold: the size (a member of media.tar
  // gets it in its header) and, where recorded, the SHA-256. Every reader refuses a line that lies,
  // for files read whole (up to 256 KiB) and streamed alike.
  const digest = (line: string) => /"sha256":"([\da-f]{64})"/.exec(line)![1]
  const lies: Array<{edit: (line: string) => string; file: string; lie: string}> = [
    {edit: (line) => line.replace('"size":12,', '"size":11,'), file: 'uploads/readme.txt', lie: 'records 11 bytes'},
    {edit: (line) => line.replace('"size":12,', '"size":13,'), file: 'uploads/readme.txt', lie: 'records 13 bytes'},
    {edit: (line) => line.replace('"size":300000,', '"size":299999,'), file: 'large.bin', lie: 'records 299,999 bytes'},
    {edit: (line) => line.replace('"size":300000,', '"size":300001,'), file: 'large.bin', lie: 'records 300,001 bytes'},
    {
      edit: (line) => line.replace(digest(line), 'e'.repeat(64)),
      file: 'uploads/readme.txt',
      lie: 'records another SHA-256',
    },
  ]
  for (const {edit, file, lie} of lies) {
    it(`an index that ${lie} for ${file}, signed with a stolen writer key, fails verify, download and restore`, async () => {
      const {id, project} = await backupWithIndexEdited((lines) => {
        const at = lines.findIndex((line) => line.includes(`"path":"${file}"`))
        const edited = edit(lines[at])
        expect(edited).to.not.equal(lines[at])
        lines[at] = edited
      })
      const readme = join(project.root, 'media', 'uploads', 'readme.txt')
      writeFileSync(readme, 'changed since\n')
      // "its blob holds …", "its blobs hold …" or "its blob is not the file …", naming the file.
      const complaint = `${file}: its blob`

      const verified = await cli(project, ['verify', id], PACKS)
      expect(verified.status, verified.stdout).to.equal(4)
      expect(verified.stdout).to.include(complaint)
      const out = join(project.root, 'out')
      const downloaded = await cli(project, ['download', id, '-o', out], PACKS)
      expect(downloaded.status, downloaded.stderr).to.equal(4)
      expect(existsSync(out)).to.equal(false)
      const restored = await cli(project, ['restore', id, '--confirm', 'local', '--media-only'], PACKS)
      expect(restored.status, restored.stderr).to.equal(4)
      expect(restored.stderr).to.include(complaint)
      expect(readFileSync(readme, 'utf8')).to.equal('changed since\n')
    })
  }

  // What verifies restores: an index can name a file twice, or one below another file, and every blob
  // still authenticates. Restore refuses the archive it builds from it; verify must too.
  const shapes: Array<{edit: (lines: string[], at: number) => void; shape: string; verify: string}> = [
    {
      edit: (lines, at) => lines.splice(at + 1, 0, lines[at]),
      shape: 'names a file twice',
      verify: 'the archive already holds a file, folder or link of that name',
    },
    {
      edit: (lines, at) =>
        lines.splice(at + 1, 0, lines[at].replace('"path":"large.bin"', '"path":"large.bin/inside"')),
      shape: 'places a file below another file',
      verify: 'it would be written through a file (large.bin)',
    },
  ]
  for (const {edit, shape, verify} of shapes) {
    it(`an index that ${shape}, signed with a stolen writer key, fails verify, as restore refuses it`, async () => {
      const {id, project} = await backupWithIndexEdited((lines) =>
        edit(
          lines,
          lines.findIndex((line) => line.includes('"path":"large.bin"')),
        ),
      )

      const verified = await cli(project, ['verify', id], PACKS)
      expect(verified.status, verified.stdout + verified.stderr).to.equal(4)
      expect(verified.stdout).to.include(`media.index.gz.age: The media archive is unsafe`)
      expect(verified.stdout).to.include(verify)
      const restored = await cli(project, ['restore', id, '--confirm', 'local', '--media-only'], PACKS)
      expect(restored.status, restored.stderr).to.equal(4)
      expect(restored.stderr).to.include('The media archive is unsafe')
    })
  }

  /** An age-encrypted tar whose one member is `member` (built by GNU tar from `root`). */
  function forgedPack(project: Project, root: string, member: string): Buffer {
    return encryptToOwner(project, execFileSync('tar', ['-c', '-C', root, member]))
  }

  it('export --raw refuses a planted pack before anything is written, and the recipe refuses one before extracting anything', async () => {
    const {b2, p1, p2, project} = await twoBackups()
    const outside = join(project.root, 'outside')
    mkdirSync(outside)
    // Pack 1 of the attack: a "blob" that is a link to a folder outside the export.
    const stage = join(project.root, 'stage')
    mkdirSync(stage)
    const linkName = 'a'.repeat(64)
    symlinkSync(outside, join(stage, linkName))
    const linkPack = forgedPack(project, stage, linkName)
    const original = readFileSync(join(packsFolder(project), p1))
    writeFileSync(join(packsFolder(project), p1), linkPack)
    const raw = join(project.root, 'raw')
    const refused = await cli(project, ['export', '--raw', '-o', raw], PACKS)
    expect(refused.status, refused.stderr).to.equal(4)
    expect(refused.stderr).to.include(`Pack ${p1} in the store is not the one signed for it`)
    expect(existsSync(join(raw, 'local', 'packs', p1))).to.equal(false)

    // An honest export, then the same planted pack in the export itself, SHA256SUMS and all.
    writeFileSync(join(packsFolder(project), p1), original)
    expect((await cli(project, ['export', '--raw', '-o', raw], PACKS)).status).to.equal(0)
    writeFileSync(join(raw, 'local', 'packs', p1), linkPack)
    const sums = readFileSync(join(raw, 'SHA256SUMS'), 'utf8').replace(
      new RegExp(`^[\\da-f]{64}(  local/packs/${p1})$`, 'm'),
      `${sha256(linkPack)}$1`,
    )
    writeFileSync(join(raw, 'SHA256SUMS'), sums)
    expect(() => followRawRecipe(raw, {id: b2, identityFile: project.identityFile, target: 'media'})).to.throw(
      /is not recorded in any manifest: stopping/,
    )
    expect(readdirSync(outside)).to.deep.equal([])

    // Signed for with a stolen writer key: the recipe still refuses a pack that holds anything but files.
    const manifest = manifestOf(project, b2)
    manifest.components.media.packObjects = manifest.components.media.packObjects.map((object) =>
      object.name === p1 ? {...object, bytes: linkPack.length, sha256: sha256(linkPack)} : object,
    )
    writeSignedManifest(project, join(raw, 'local', b2, 'manifest.json'), manifest)
    const resummed = readFileSync(join(raw, 'SHA256SUMS'), 'utf8').replace(
      new RegExp(`^[\\da-f]{64}(  local/${b2}/manifest.json)$`, 'm'),
      `${sha256(readFileSync(join(raw, 'local', b2, 'manifest.json')))}$1`,
    )
    writeFileSync(join(raw, 'SHA256SUMS'), resummed)
    expect(() => followRawRecipe(raw, {id: b2, identityFile: project.identityFile, target: 'media'})).to.throw(
      /holds something other than blobs: stopping/,
    )
    expect(readdirSync(outside)).to.deep.equal([])
    expect(existsSync(join(raw, 'media'))).to.equal(false)
    expect(readdirSync(packsFolder(project))).to.include(p2)
  })

  it('keys: a writer key path that is a link to nothing exits 5; a key file others can read is named with chmod 600', async () => {
    const project = makeProject()
    mkdirSync(join(project.home, '.config', 'divio'), {recursive: true})
    symlinkSync('/nonexistent/writer-key.txt', writerKeyFile(project))
    const dangling = await cli(project, ['create'])
    expect(dangling.status, dangling.stderr).to.equal(5)
    expect(dangling.stderr).to.include(
      `The writer key ${writerKeyFile(project)} is a symbolic link to /nonexistent/writer-key.txt, which does not exist.`,
    )
    rmSync(writerKeyFile(project))
    expect((await cli(project, ['create'])).status).to.equal(0)
    chmodSync(project.identityFile, 0o644)
    const listed = await cli(project, ['verify'])
    expect(listed.status).to.equal(0)
    expect(listed.stderr).to.include(
      `warning: the identity file ${project.identityFile} can be read by others (mode 0644). Try this: chmod 600 ${project.identityFile}`,
    )
  })

  it('roll-back: with the newest backup hidden, list warns and restore latest refuses until --allow-rollback', async () => {
    const {b1, b2, project} = await twoBackups()
    expect((await cli(project, ['list'], PACKS)).stderr).to.not.include('rolled back')
    const hidden = join(project.root, 'hidden')
    renameSync(join(project.store, 'shop', 'local', b2), hidden)
    const listed = await cli(project, ['list'], PACKS)
    expect(listed.status).to.equal(0)
    expect(listed.stderr).to.include(`the store may have been rolled back: backup ${b2}`)
    const refused = await cli(project, ['restore', 'latest', '--confirm', 'local', '--no-safety-backup'], PACKS)
    expect(refused.status, refused.stderr).to.equal(4)
    expect(refused.stderr).to.include(`so "latest" would be the older ${b1}`)
    const allowed = await cli(
      project,
      ['restore', 'latest', '--confirm', 'local', '--no-safety-backup', '--allow-rollback'],
      PACKS,
    )
    expect(allowed.status, allowed.stderr).to.equal(0)
    // Accepted once: the store as it is now is what this machine remembers.
    expect((await cli(project, ['list'], PACKS)).stderr).to.not.include('rolled back')
    // A deletion of this machine's own is not a roll-back.
    renameSync(hidden, join(project.store, 'shop', 'local', b2))
    expect((await cli(project, ['list'], PACKS)).stderr).to.not.include('rolled back')
    expect((await cli(project, ['delete', b2, '--confirm', 'local'])).status).to.equal(0)
    expect((await cli(project, ['list'], PACKS)).stderr).to.not.include('rolled back')
  })
})

describe('a pack that goes while a create runs', function () {
  before(function () {
    requireTool(this, 'age', 'age')
  })

  /**
   * A store that, when this create stores its first pack, deletes a pack: the one just written, or
   * one the previous backup named, as a prune misled by a planted marker or a lifecycle rule would.
   */
  function losing(store: LocalStore, victim: (written: string) => string): Store {
    let armed = true
    return Object.assign(Object.create(store) as Store, {
      async put(key: string, source: Readable, options?: {signal?: AbortSignal}) {
        const result = await store.put(key, source, options)
        if (armed && /\/packs\/[\da-f]{32}\.age$/.test(key)) {
          armed = false
          await store.delete(`${key.slice(0, key.lastIndexOf('/'))}/${victim(key.slice(key.lastIndexOf('/') + 1))}`)
        }

        return result
      },
    })
  }

  for (const which of ['the pack it just wrote', 'a pack of the previous backup it builds on'] as const) {
    it(`fails instead of committing when ${which} is gone before the commit`, async () => {
      const {p1, project} = await twoBackups()
      writeFileSync(join(project.root, 'media', 'third.bin'), randomBytes(300_000))
      const variables = {
        ...project.env,
        ...PACKS,
        DIVIO_BACKUP_IDENTITY_FILE: project.identityFile,
        DIVIO_BACKUP_WRITER_KEY_FILE: writerKeyFile(project),
      }
      const store = losing(new LocalStore(project.store), (written) =>
        which === 'the pack it just wrote' ? written : p1,
      )
      const context = await contextFor(project, variables, store)
      const before = readdirSync(join(project.store, 'shop', 'local')).sort()
      const failure = await createBackup(context, {database: false, media: true, trigger: 'on-demand'}).then(
        () => {},
        (error: unknown) => error as BackupError,
      )
      expect(failure?.code).to.equal('INTEGRITY')
      expect(failure?.message).to.match(/Pack [\da-f]{32}\.age, which this backup uses, is missing from the store/)
      // Nothing was committed: the environment holds the same backups as before.
      expect(readdirSync(join(project.store, 'shop', 'local')).sort()).to.deep.equal(before)
      expect(await verifyAll(project)).to.equal(which === 'the pack it just wrote' ? 0 : 4)
    })
  }
})
