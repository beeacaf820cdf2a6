import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {Readable} from 'node:stream'

import {parseRecipient} from '../../src/archive/age-keys.js'
import {createEncryptStream} from '../../src/archive/age.js'
import {CraftedMember, craftTar, listingFor} from '../helpers/crafted-tar.js'
import {cli, makeProject, Project, snapshotTree, writeEnvironments, writeSignedManifest} from '../helpers/project.js'
import {openTestDatabase} from '../helpers/sqlite.js'
import {collect} from '../helpers/tools.js'

interface Listed {
  id: string
  note: null | string
}

/** A project with two environments, live and test, each with its own SQLite file and media folder. */
function twoEnvironments(): Project {
  const project = makeProject()
  execFileSync('cp', ['-a', join(project.root, 'db.sqlite3'), join(project.root, 'live.sqlite3')])
  execFileSync('cp', ['-a', join(project.root, 'media'), join(project.root, 'live-media')])
  const test = openTestDatabase(join(project.root, 'test.sqlite3'))
  test.exec(
    "CREATE TABLE auth_user (id INTEGER PRIMARY KEY, username TEXT); INSERT INTO auth_user VALUES (1, 'tester')",
  )
  test.close()
  mkdirSync(join(project.root, 'test-media'))
  writeFileSync(join(project.root, 'test-media', 'only-in-test.txt'), 'test data\n')
  const store = './.divio/backups'
  writeEnvironments(project, {
    live: {database: 'sqlite:///live.sqlite3', media: 'live-media', store},
    test: {database: 'sqlite:///test.sqlite3', media: 'test-media', store},
  })
  return project
}

function rowsOf(path: string): unknown {
  const database = openTestDatabase(path, {readonly: true})
  try {
    return database.prepare("SELECT group_concat(id || username, ',') AS rows FROM auth_user").get()
  } finally {
    database.close()
  }
}

/** Everything restore could touch in the test environment. */
function testState(project: Project): string {
  return JSON.stringify({
    database: createHash('sha256')
      .update(readFileSync(join(project.root, 'test.sqlite3')))
      .digest('hex'),
    media: [...snapshotTree(join(project.root, 'test-media'))],
  })
}

async function backupsOf(project: Project, environment: string): Promise<Listed[]> {
  const result = await cli(project, ['list', '-e', environment, '--json'])
  expect(result.status, result.stderr).to.equal(0)
  return result.json() as Listed[]
}

describe('restore', function () {
  it('live → test: refuses without the right --confirm, then restores the database and media exactly, after a safety backup', async () => {
    const project = twoEnvironments()
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as Listed
    const before = testState(project)
    const rowsBefore = rowsOf(join(project.root, 'test.sqlite3'))
    const mediaBefore = snapshotTree(join(project.root, 'test-media'))

    const unconfirmed = await cli(project, ['restore', id, '--to-env', 'test'])
    expect(unconfirmed.status).to.equal(6)
    expect(unconfirmed.stderr).to.match(
      /^Error: Refusing to restore backup \S+ of shop\/live .* of shop\/test \(a safety backup of it is taken first\) without confirmation/m,
    )
    expect(unconfirmed.stderr).to.include('Try this: Pass --confirm test')
    const wrong = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'live'])
    expect(wrong.status).to.equal(6)
    expect(wrong.stderr).to.include('--confirm live does not match the target environment "test"; nothing was changed.')
    expect(testState(project)).to.equal(before)
    expect(await backupsOf(project, 'test')).to.deep.equal([])

    const restored = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test', '--json'])
    expect(restored.status, restored.stderr).to.equal(0)
    const result = restored.json() as {database: {engine: string}; from: string; safetyBackup: string; to: string}
    expect(result).to.include({from: 'live', to: 'test'})
    expect(result.database.engine).to.equal('sqlite')

    expect(rowsOf(join(project.root, 'test.sqlite3'))).to.deep.equal(rowsOf(join(project.root, 'live.sqlite3')))
    expect(snapshotTree(join(project.root, 'test-media'))).to.deep.equal(snapshotTree(join(project.root, 'live-media')))
    const [safety] = await backupsOf(project, 'test')
    expect(safety).to.include({id: result.safetyBackup, note: `before restore of ${id}`})

    // The safety backup holds the test environment as it was: restoring it brings that back.
    const back = await cli(project, [
      'restore',
      result.safetyBackup,
      '-e',
      'test',
      '--confirm',
      'test',
      '--no-safety-backup',
    ])
    expect(back.status, back.stderr).to.equal(0)
    expect(rowsOf(join(project.root, 'test.sqlite3'))).to.deep.equal(rowsBefore)
    expect(snapshotTree(join(project.root, 'test-media'))).to.deep.equal(mediaBefore)
  })

  it('a corrupt last chunk is caught in staging: the target is untouched and no safety backup is taken', async () => {
    const project = twoEnvironments()
    const created = await cli(project, ['create', '--db-only', '--json'])
    const {id} = created.json() as Listed
    const object = join(project.store, 'shop', 'live', id, 'database.sqlite3.zst.age')
    const bytes = readFileSync(object)
    bytes[bytes.length - 1] ^= 0x01
    writeFileSync(object, bytes)
    const before = testState(project)

    const restored = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test'])
    expect(restored.status).to.equal(4)
    expect(restored.stderr).to.match(/database\.sqlite3\.zst\.age.*The target was not touched\./)
    expect(testState(project)).to.equal(before)
    expect(await backupsOf(project, 'test')).to.deep.equal([])
  })

  // Archives that authenticate (encrypted and checksummed like real ones, the manifest signed) but that
  // extraction refuses: only the extraction can tell, and it must tell before the safety backup.
  const sha = (data: Buffer | string) => createHash('sha256').update(data).digest('hex')
  const file = (path: string, body: string): CraftedMember => ({body, path, type: 'File'})
  // What restore refuses, verify fails too (`verify`: its words, where they differ from extraction's).
  const refusedArchives: Array<{label: string; message: string; tar: Buffer; verify?: string}> = [
    {
      label: 'an unsafe member',
      message: 'member "media/../../escaped.txt" is refused',
      tar: craftTar([file('media/../../escaped.txt', 'bad')]),
    },
    {
      label: 'a file that does not match MANIFEST.json',
      message: "do not match the archive's listing",
      tar: craftTar([file('media/a.txt', 'bad'), listingFor([{body: 'goo', path: 'a.txt'}])]),
    },
    {
      label: 'a member after MANIFEST.json',
      message: 'it follows MANIFEST.json, which is the last member',
      tar: craftTar([listingFor([]), file('media/late.txt', 'late')]),
    },
    {
      label: 'no MANIFEST.json',
      message: 'The media archive has no MANIFEST.json',
      tar: craftTar([file('media/a.txt', 'good')]),
    },
    {
      label: 'a header that is not a tar header',
      message: 'The media archive is damaged',
      tar: Buffer.concat([Buffer.alloc(512, 0x41), Buffer.alloc(1024)]),
    },
    {
      label: 'a FIFO',
      message: 'it is a FIFO, which media never contains',
      tar: craftTar([{path: 'media/pipe', type: 'FIFO'}, listingFor([])]),
    },
    {
      label: 'a file under a symlink',
      message: 'a file, folder or link of that name was already extracted',
      tar: craftTar([
        {linkpath: 'elsewhere', path: 'media/sub', type: 'SymbolicLink'},
        file('media/sub/a.txt', 'good'),
        listingFor([{body: 'good', path: 'sub/a.txt'}]),
      ]),
      verify: 'its path passes through a symlink',
    },
    {
      label: 'a file twice (and twice in MANIFEST.json)',
      message: 'a file, folder or link of that name was already extracted',
      tar: craftTar([
        file('media/a.txt', 'good'),
        file('media/a.txt', 'good'),
        listingFor([
          {body: 'good', path: 'a.txt'},
          {body: 'good', path: 'a.txt'},
        ]),
      ]),
      verify: 'the archive already holds a file, folder or link of that name',
    },
    {
      label: 'a file under a file',
      message: 'a file, folder or link of that name was already extracted',
      tar: craftTar([
        file('media/a', 'good'),
        file('media/a/b.txt', 'good'),
        listingFor([
          {body: 'good', path: 'a'},
          {body: 'good', path: 'a/b.txt'},
        ]),
      ]),
      verify: 'it would be written through a file (a)',
    },
  ]
  for (const {label, message, tar, verify} of refusedArchives)
    it(`an archive with ${label}: refused before the safety backup, the media folder as it was, nothing written outside`, async () => {
      const project = twoEnvironments()
      const created = await cli(project, ['create', '--media-only', '--json'])
      const {id} = created.json() as Listed
      const recipient = readFileSync(project.identityFile, 'utf8').match(/# public key: (\S+)/)![1]
      const sealed = await collect(Readable.from([tar]).pipe(createEncryptStream([parseRecipient(recipient)])))
      const folder = join(project.store, 'shop', 'live', id)
      writeFileSync(join(folder, 'media.tar.age'), sealed)
      const manifestPath = join(folder, 'manifest.json')
      const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
        components: {media: {object: {bytes: number; sha256: string}; plaintext: {bytes: number; sha256: string}}}
      }
      manifest.components.media.object = {
        ...manifest.components.media.object,
        bytes: sealed.length,
        sha256: sha(sealed),
      }
      manifest.components.media.plaintext = {bytes: tar.length, sha256: sha(tar)}
      writeSignedManifest(project, manifestPath, manifest)
      const outside = snapshotTree(join(project.root, '..'))
      const before = testState(project)

      const verified = await cli(project, ['verify', id])
      expect(verified.status, 'what restore refuses, verify fails').to.equal(4)
      expect(verified.stdout).to.include(verify ?? message)
      const restored = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test'])
      expect(restored.status).to.equal(4)
      expect(restored.stderr).to.include(message)
      expect(await backupsOf(project, 'test'), 'no safety backup is taken for a restore that is refused').to.deep.equal(
        [],
      )
      expect(restored.stderr).to.include(`The media folder ${join(project.root, 'test-media')} was not changed.`)
      expect(testState(project)).to.equal(before)
      const after = snapshotTree(join(project.root, '..'))
      const staged = (path: string) => path.startsWith('shop/.divio/backups/') || path.startsWith('home/')
      expect([...after].filter(([path]) => !staged(path))).to.deep.equal([...outside].filter(([path]) => !staged(path)))
      rmSync(join(project.root, '..'), {force: true, recursive: true})
    })

  it('a file whose path fits where it is, but not where the restore extracts it: exit 7, not "damaged", the media as it was, and the by-hand extraction it names restores it', async () => {
    const project = makeProject()
    const media = join(project.root, 'media')
    // Folders of 200 bytes, down to a file whose path is 4,094 bytes: the longest Linux names a file by.
    let folder = media
    while (Buffer.byteLength(folder) + 202 < 4085) folder = join(folder, `d${'x'.repeat(199)}`)
    mkdirSync(folder, {recursive: true})
    const leaf = join(folder, 'f'.repeat(4094 - Buffer.byteLength(folder) - 1))
    writeFileSync(leaf, 'deep leaf')
    const created = await cli(project, ['create', '--media-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    expect((await cli(project, ['verify', id])).status).to.equal(0)
    const before = snapshotTree(media)

    const restored = await cli(project, ['restore', id, '--media-only', '--confirm', 'local', '--no-safety-backup'])
    expect(restored.status, restored.stderr).to.equal(7)
    expect(restored.stderr).to.include(
      `A file of the backup cannot be extracted into ${project.root}: its path there is longer than this system names a file by (ENAMETOOLONG, 4,096 bytes on Linux). The backup is not damaged. The media folder ${media} was not changed.`,
    )
    expect(snapshotTree(media)).to.deep.equal(before)

    // The suggestion, followed.
    const out = join(project.root, 'out')
    expect((await cli(project, ['download', id, '--media-only', '-o', out])).status).to.equal(0)
    rmSync(leaf)
    execFileSync('tar', ['-xf', join(out, 'media.tar'), '--strip-components=1', '-C', media])
    expect(snapshotTree(media)).to.deep.equal(before)
  })

  for (const format of ['tar', 'packs'])
    it(`a file nested past the longest path Linux names a file by: create fails as a source it cannot read, naming why, in the ${format} format`, async () => {
      const project = makeProject()
      let folder = join(project.root, 'media')
      while (Buffer.byteLength(folder) < 4200) folder = join(folder, `d${'x'.repeat(199)}`)
      // Made a folder at a time, from the one above: the whole path is past what one call may name.
      const python =
        'import os, sys\nfor name in sys.argv[2:]:\n    os.makedirs(name, exist_ok=True); os.chdir(name)\nopen("leaf.txt", "w").write("deep")'
      const below = folder.slice(join(project.root, 'media').length + 1).split('/')
      execFileSync('python3', ['-c', python, 'x', ...below], {cwd: join(project.root, 'media')})
      try {
        const created = await cli(project, ['create', '--media-only'], {DIVIO_BACKUP_MEDIA_FORMAT: format})
        expect(created.status, created.stderr).to.equal(7)
        expect(created.stderr).to.include(
          `Reading the media ${join(project.root, 'media')} failed: a path in it is longer than this system names a file by (ENAMETOOLONG, 4,096 bytes on Linux): ${join(project.root, 'media', 'd')}`,
        )
        expect(created.stderr).to.include('Move or rename the folders on the way to it')
        expect((await cli(project, ['list', '--json'])).json()).to.deep.equal([])
      } finally {
        // GNU rm walks a folder at a time; Node.js's rm names each file by its whole path, and cannot.
        execFileSync('rm', ['-rf', join(project.root, 'media', below[0])])
      }
    })
})
