import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import {mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {cliUnderStrace} from '../helpers/kill.js'
import {mountOverFolder} from '../helpers/mounts.js'
import {cli, makeProject, Project, snapshotTree} from '../helpers/project.js'
import {requireTool} from '../helpers/tools.js'

/**
 * A media folder that is a mount point (a volume, as containers mount one) cannot be renamed, and
 * nothing beside it is on its file system: the restore failed there with "Unexpected error: EBUSY",
 * after a safety backup and the whole extraction. The new tree is now made inside it and its top-level
 * entries are swapped.
 */
describe('restore into a media folder that is a mount point', () => {
  let project: Project
  let media: string

  beforeEach(function () {
    project = makeProject()
    media = join(project.root, 'media')
    mountOverFolder(this, media)
  })

  afterEach(() => {
    spawnSync('umount', [media])
  })

  const isMounted = () =>
    readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((line) => line.split(' ')[4] === media)
  const workFolders = () => readdirSync(media).filter((name) => name.startsWith('.divio-'))

  async function backUpThenChange(): Promise<{id: string; tree: Map<string, string>}> {
    writeFileSync(join(media, 'only-in-backup.txt'), 'deleted since the backup')
    const tree = snapshotTree(media)
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    writeFileSync(join(media, 'uploads', 'readme.txt'), 'changed since the backup')
    writeFileSync(join(media, 'added.txt'), 'added since the backup')
    rmSync(join(media, 'uploads', 'empty.txt'))
    rmSync(join(media, 'only-in-backup.txt'))
    mkdirSync(join(media, 'new-folder'))
    return {id: (created.json() as {id: string}).id, tree}
  }

  it('restores the backup exactly, the mount stays, and the safety backup holds no work folder', async () => {
    const {id, tree} = await backUpThenChange()
    const changed = snapshotTree(media)
    const restored = await cli(project, ['restore', id, '--confirm', 'local', '--json'])
    expect(restored.status, restored.stderr).to.equal(0)
    expect(snapshotTree(media)).to.deep.equal(tree)
    expect(isMounted()).to.equal(true)
    expect(workFolders()).to.deep.equal([])

    // The safety backup ran while the new tree waited inside the folder: it holds the changed media only.
    const {safetyBackup} = restored.json() as {safetyBackup: string}
    const out = join(project.root, '..', 'safety')
    expect((await cli(project, ['download', safetyBackup, '--media-only', '-o', out])).status).to.equal(0)
    const members = execFileSync('tar', ['-tf', join(out, 'media.tar')], {encoding: 'utf8'})
    expect(members).to.not.include('.divio-')
    const extracted = join(out, 'x')
    mkdirSync(extracted)
    execFileSync('tar', ['-xf', join(out, 'media.tar'), '-C', extracted])
    expect(snapshotTree(join(extracted, 'media'))).to.deep.equal(changed)
  })

  it('a swap that fails half-way puts every entry back, and leaves no work folder, nor the restored files', async function () {
    requireTool(this, 'strace', 'strace')
    const {id} = await backUpThenChange()
    const changed = snapshotTree(media)
    // The move of the old uploads/ aside fails, after the entries listed before it have moved.
    const uploads = join(media, 'uploads')
    const traced = cliUnderStrace(
      project,
      ['restore', id, '--media-only', '--confirm', 'local', '--no-safety-backup'],
      {inject: 'error=EIO', path: uploads, syscalls: 'rename,renameat,renameat2'},
    )
    expect(traced.status, traced.stderr).to.equal(7)
    expect(traced.stderr).to.include(`The restored media could not be swapped into ${media}: EIO`)
    expect(traced.stderr).to.include('The media folder was left as it was.')
    expect(snapshotTree(media)).to.deep.equal(changed)
    expect(workFolders()).to.deep.equal([])
    expect(isMounted()).to.equal(true)
  })
})

/**
 * Another file system mounted inside the media folder (an uploads volume): the restore swapped the
 * folder's contents by renaming them, so the restored files landed on the disk beneath, the volume's
 * mount went with the previous media, and removing that emptied the volume ("Unexpected error: EBUSY").
 * It is refused now, before the safety backup and before anything is written.
 */
describe('restore into a media folder that holds another mounted file system', () => {
  let project: Project
  let uploads: string

  beforeEach(function () {
    project = makeProject()
    uploads = join(project.root, 'media', 'uploads')
    mountOverFolder(this, uploads)
  })

  afterEach(() => {
    spawnSync('umount', [uploads])
  })

  it('is refused before the safety backup, naming the mount; the volume and the media stay as they were', async () => {
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    writeFileSync(join(uploads, 'after-the-backup.txt'), 'on the volume')
    const media = join(project.root, 'media')
    const before = snapshotTree(media)

    const refused = await cli(project, ['restore', id, '--confirm', 'local'])
    expect(refused.status, refused.stderr).to.equal(7)
    expect(refused.stderr).to.include(
      `Error: The media folder ${media} holds another file system, mounted at ${uploads}: a restore swaps the folder's contents by renaming them, which cannot put files onto that file system. Nothing was changed.`,
    )
    expect(refused.stderr).to.include(`tar -xf DIR/media.tar --strip-components=1 -C ${media}`)
    expect(snapshotTree(media)).to.deep.equal(before)
    expect(readdirSync(project.root).filter((name) => name.startsWith('.media.'))).to.deep.equal([])
    const listed = (await cli(project, ['list', '--json'])).json() as Array<{id: string}>
    expect(
      listed.map((backup) => backup.id),
      'no safety backup was taken',
    ).to.deep.equal([id])
    expect(
      readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .some((line) => line.split(' ')[4] === uploads),
      'the volume is still mounted where it was',
    ).to.equal(true)
  })
})
