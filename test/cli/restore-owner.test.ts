import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import {chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {cli, makeProject, Project, runJs, snapshotTree, writeConfig, writeEnvironments} from '../helpers/project.js'
import {requireRoot, requireTool} from '../helpers/tools.js'

/** The app's user: anyone but root (nobody, on Debian). */
const APP_UID = 65_534
const APP_GID = 65_534

/** Every entry under `root`, itself included, whose owner is not the app's, with its owner. */
function notTheApps(root: string): string[] {
  const wrong: string[] = []
  const visit = (path: string) => {
    const info = lstatSync(path)
    if (info.uid !== APP_UID || info.gid !== APP_GID) wrong.push(`${path} ${info.uid}:${info.gid}`)
    if (info.isDirectory()) for (const name of readdirSync(path)) visit(join(path, name))
  }

  visit(root)
  return wrong
}

/**
 * A restore run as root (root's cron, sudo) made every restored file root's: the app, which runs as a
 * user of its own, could then no longer write its SQLite database ("attempt to write a readonly
 * database") nor add uploads to a restored folder, and the restore had said it succeeded. Restored files
 * now belong to the owner of what they replace, or of the folder they are made in.
 */
describe("a restore run as root gives the restored files to the app's user", function () {
  let project: Project

  before(function () {
    requireRoot(this, 'giving restored files to another user')
  })

  beforeEach(() => {
    project = makeProject()
    execFileSync('chown', [
      '-R',
      `${APP_UID}:${APP_GID}`,
      join(project.root, 'media'),
      join(project.root, 'db.sqlite3'),
    ])
  })

  it('in place: the database file and every media entry (links, folders, files) stay the app user’s', async () => {
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    const media = join(project.root, 'media')
    const tree = snapshotTree(media)
    writeFileSync(join(media, 'uploads', 'readme.txt'), 'changed since the backup')

    const restored = await cli(project, ['restore', id, '--confirm', 'local'])
    expect(restored.status, restored.stderr).to.equal(0)
    expect(snapshotTree(media)).to.deep.equal(tree)
    expect(notTheApps(media)).to.deep.equal([])
    expect(notTheApps(join(project.root, 'db.sqlite3'))).to.deep.equal([])
  })

  it('into an environment that has neither yet: they take the owner of the folder they are made in', async () => {
    const other = join(project.root, '..', 'other')
    mkdirSync(other)
    chownSync(other, APP_UID, APP_GID)
    writeEnvironments(project, {
      live: {database: 'sqlite:///db.sqlite3', media: './media', store: './.divio/backups'},
      test: {database: 'sqlite:///../other/db.sqlite3', media: join(other, 'media'), store: './.divio/backups'},
    })
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}

    const restored = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test'])
    expect(restored.status, restored.stderr).to.equal(0)
    expect(snapshotTree(join(other, 'media'))).to.deep.equal(snapshotTree(join(project.root, 'media')))
    expect(notTheApps(other)).to.deep.equal([])
  })

  it("root's own media and database stay root's", async () => {
    execFileSync('chown', ['-R', '0:0', join(project.root, 'media'), join(project.root, 'db.sqlite3')])
    const created = await cli(project, ['create', '--json'])
    const {id} = created.json() as {id: string}
    const restored = await cli(project, ['restore', id, '--confirm', 'local', '--verbose'])
    expect(restored.status, restored.stderr).to.equal(0)
    expect(restored.stderr, 'nothing to give away: no chown ran').to.not.match(/run chown/)
    expect(lstatSync(join(project.root, 'media', 'uploads', 'readme.txt')).uid).to.equal(0)
    expect(lstatSync(join(project.root, 'db.sqlite3')).uid).to.equal(0)
  })
})

/**
 * The app's user owns its media folder, not the app folder it is in (the app's code is root's): a
 * restore run as that user could make nothing beside the media folder, and failed with EACCES. The new
 * tree is now made inside the media folder and swapped in entry by entry, as in a mount point. Root
 * without its capabilities (setpriv) stands in for the app's user: the folders' modes then bind it.
 */
describe("a restore run by the media folder's owner, who may not change the app folder", function () {
  it('restores the media inside the folder, and leaves nothing beside it', async function () {
    requireRoot(this, 'dropping capabilities')
    requireTool(this, 'setpriv', 'util-linux')
    const project = makeProject()
    // The store outside the app folder, where the safety backup can be written.
    mkdirSync(join(project.root, '..', 'store'))
    writeConfig(project, {media: 'media', store: join(project.root, '..', 'store')})
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stdout).to.equal(0)
    const {id} = created.json() as {id: string}
    const media = join(project.root, 'media')
    const tree = snapshotTree(media)
    writeFileSync(join(media, 'added-since.txt'), 'not in the backup')
    rmSync(join(media, 'uploads', 'readme.txt'))
    const appFolder = readdirSync(project.root).sort()
    chmodSync(project.root, 0o555)
    try {
      const restored = spawnSync(
        'setpriv',
        [
          '--bounding-set=-all',
          '--',
          process.execPath,
          runJs,
          'app',
          'backup',
          'restore',
          id,
          '--media-only',
          '--confirm',
          'live',
        ],
        {cwd: project.root, encoding: 'utf8', env: {...project.env, DIVIO_BACKUP_TMPDIR: join(project.root, '..')}},
      )
      expect(restored.status, restored.stdout + restored.stderr).to.equal(0)
    } finally {
      chmodSync(project.root, 0o755)
    }

    expect(snapshotTree(media)).to.deep.equal(tree)
    expect(readdirSync(project.root).sort(), 'nothing was made beside the media folder').to.deep.equal(appFolder)
  })
})
