import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {existsSync, readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {straceCli} from '../helpers/kill.js'
import {cli, listFiles, makeProject, Project, snapshotTree, writeConfig} from '../helpers/project.js'
import {requireTool, writeRandomFile} from '../helpers/tools.js'

const READS = 'read,pread64,readv,preadv,preadv2'

/**
 * A local store whose disk fails to read an object (EIO) is the store's failure, not a damaged backup
 * nor an "Unexpected error": it was the latter in the tar format, and a pack's read error read as the
 * pack's damage. Every read of the one object fails, injected with strace; what the user sees is the
 * object, the cause, and what to do, in every command that reads it.
 */
describe('an object the store cannot read (EIO)', function () {
  before(function () {
    requireTool(this, 'strace', 'strace')
  })

  function underReadErrors(project: Project, object: string, args: string[]) {
    return straceCli(project, args, [
      '-o',
      '/dev/null',
      '-P',
      object,
      '-e',
      `trace=${READS}`,
      // Every read of it, whichever thread of the pool makes it: a failing sector fails each time.
      '-e',
      `inject=${READS}:error=EIO:when=1+`,
    ])
  }

  for (const format of ['tar', 'packs'] as const) {
    it(`${format} format: verify fails the backup naming the read error, download and restore end with exit 7`, async () => {
      const project = makeProject()
      writeConfig(project, {
        database: 'sqlite:///db.sqlite3',
        media: 'media',
        mediaFormat: format,
        store: './.divio/backups',
      })
      writeRandomFile(join(project.root, 'media', 'large.bin'), 3 * 1024 * 1024)
      const created = await cli(project, ['create', '--json'])
      expect(created.status, created.stderr).to.equal(0)
      const {id} = created.json() as {id: string}
      const stored = listFiles(project.store).filter((path) =>
        format === 'tar' ? path.endsWith('/media.tar.age') : /\/packs\/[\da-f]{32}\.age$/.test(path),
      )
      expect(stored.length, stored.join(',')).to.be.greaterThan(0)
      const object = join(project.store, stored[0])
      const name = format === 'tar' ? 'media.tar.age' : `packs/${stored[0].split('/').pop()}`

      const verified = underReadErrors(project, object, ['verify', id])
      expect(verified.status, verified.stderr).to.equal(4)
      // A pack is reported under the backup's packs, as its other failures are.
      const where = format === 'tar' ? name : `packs (${stored.length}): ${name}`
      expect(verified.stdout, verified.stdout).to.include(
        `BAD  ${where}: could not be read: an input/output error (EIO): the disk or file system that holds it could not read it`,
      )
      expect(verified.stderr).to.not.include('Unexpected error')

      const out = join(project.root, '..', 'out')
      const media = join(project.root, 'media')
      const before = snapshotTree(media)
      for (const args of [
        ['download', id, '-o', out],
        ['restore', id, '--confirm', 'live', '--no-safety-backup'],
      ]) {
        const failed = underReadErrors(project, object, args)
        expect(failed.status, failed.stderr).to.equal(7)
        expect(failed.stderr).to.include(
          `Error: Cannot read ${object} from the store: an input/output error (EIO): the disk or file system that holds it could not read it.`,
        )
        expect(failed.stderr).to.include('Try this: Check the disk that holds the store (dmesg, smartctl)')
      }

      expect(existsSync(out) ? readdirSync(out) : [], 'the download left nothing').to.deep.equal([])
      expect(snapshotTree(media), 'the restore changed nothing').to.deep.equal(before)
    })
  }

  it("a read refused for another reason (a permission) is the command's failure, not the backup's", async () => {
    const project = makeProject()
    const {id} = (await cli(project, ['create', '--json'])).json() as {id: string}
    const object = join(
      project.store,
      listFiles(project.store).find((path) => path.endsWith('/media.tar.age'))!,
    )
    const verified = straceCli(
      project,
      ['verify', id],
      ['-o', '/dev/null', '-P', object, '-e', `trace=${READS}`, '-e', `inject=${READS}:error=EACCES:when=1+`],
    )
    expect(verified.status, verified.stderr).to.equal(7)
    expect(verified.stderr).to.include(`Error: Cannot read ${object} from the store: permission denied (EACCES).`)
    expect(verified.stdout, 'no backup is called failed for it').to.not.include('FAIL')
  })

  it('verify --all reads on past the backup it cannot read, and reports both', async () => {
    const project = makeProject()
    const first = (await cli(project, ['create', '--json'])).json() as {id: string}
    writeFileSync(join(project.root, 'media', 'later.txt'), 'after the first backup')
    const second = (await cli(project, ['create', '--json'])).json() as {id: string}
    const object = join(
      project.store,
      listFiles(project.store).find((path) => path.includes(`${first.id}/media.tar.age`))!,
    )

    const verified = underReadErrors(project, object, ['verify', '--all'])
    expect(verified.status, verified.stderr).to.equal(4)
    expect(verified.stdout).to.include(`OK   ${second.id}`)
    expect(verified.stdout).to.include(`FAIL ${first.id}`)
    expect(verified.stdout).to.include('Verified 2 backups: 1 passed, 1 failed.')
    expect(verified.stderr).to.include(`Error: Verification failed: ${first.id}/media.tar.age.`)
  })
})

/**
 * A media file that the disk cannot read fails the backup, as every failure does, but named: the read's
 * own error ("EIO: i/o error, read") says no path, and the backup said only that reading the media
 * folder failed. Small files are read ahead on the reader thread, large ones streamed: both ways, both
 * formats.
 */
describe('a media file the disk cannot read (EIO)', function () {
  before(function () {
    requireTool(this, 'strace', 'strace')
  })

  for (const format of ['tar', 'packs'] as const) {
    for (const [size, kind] of [
      [2000, 'a small file, read ahead'],
      [3 * 1024 * 1024, 'a large file, streamed'],
    ] as const) {
      it(`${format} format, ${kind}: the backup fails naming the file, and stores nothing`, async () => {
        const project = makeProject()
        writeConfig(project, {media: 'media', mediaFormat: format, store: './.divio/backups'})
        const file = join(project.root, 'media', 'uploads', 'failing.bin')
        writeFileSync(file, randomBytes(size))
        const result = straceCli(
          project,
          ['create'],
          ['-o', '/dev/null', '-P', file, '-e', `trace=${READS}`, '-e', `inject=${READS}:error=EIO:when=1+`],
        )
        expect(result.status, result.stderr).to.equal(7)
        expect(result.stderr).to.include(
          `Cannot read the media file ${file}: an input/output error (EIO): the disk or file system that holds it could not read it.`,
        )
        expect(result.stderr).to.include('Try this: Check the disk that holds the media (dmesg, smartctl)')
        expect(listFiles(project.store).filter((path) => path.endsWith('manifest.json'))).to.deep.equal([])
      })
    }
  }
})
