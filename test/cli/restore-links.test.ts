import {expect} from 'chai'
import {lstatSync, mkdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'

import {cli, makeProject, Project, snapshotTree} from '../helpers/project.js'
import {openTestDatabase} from '../helpers/sqlite.js'

/**
 * A database file or media folder kept on a volume and linked from the app folder: the restore writes
 * where the link leads, and the link stays. Replacing the link instead reported success while the real
 * database stayed as it was, and put the restored one in the app folder, which the next deploy replaces.
 */
describe('restore through a symlinked database file or media folder', () => {
  let project: Project
  let volume: string

  beforeEach(() => {
    project = makeProject()
    volume = join(dirname(project.root), 'volume')
    mkdirSync(volume)
  })

  function usernames(path: string): string {
    const database = openTestDatabase(path, {readonly: true})
    try {
      return (database.prepare('SELECT group_concat(username) AS names FROM auth_user').get() as {names: string}).names
    } finally {
      database.close()
    }
  }

  /** Moves `name` of the app folder to the volume, and links it from where it was. */
  function moveToVolume(name: string): string {
    const real = join(volume, name)
    renameSync(join(project.root, name), real)
    symlinkSync(real, join(project.root, name))
    return real
  }

  async function backUp(): Promise<void> {
    const created = await cli(project, ['create'])
    expect(created.status, created.stderr).to.equal(0)
  }

  async function restore(): Promise<void> {
    const restored = await cli(project, ['restore', 'latest', '--confirm', 'local', '--no-safety-backup'])
    expect(restored.status, restored.stderr).to.equal(0)
  }

  it('a linked database file: the file the link leads to is restored, with its old -wal gone, and the link stays', async () => {
    const real = moveToVolume('db.sqlite3')
    await backUp()
    const before = usernames(real)
    const database = openTestDatabase(real)
    database.exec("UPDATE auth_user SET username = 'changed'")
    database.close()
    // An old -wal beside the real file: SQLite replays it into whatever file bears its name.
    writeFileSync(`${real}-wal`, 'the old database’s write-ahead log')

    await restore()
    expect(lstatSync(join(project.root, 'db.sqlite3')).isSymbolicLink()).to.equal(true)
    expect(readlinkSync(join(project.root, 'db.sqlite3'))).to.equal(real)
    expect(usernames(real)).to.equal(before)
    expect(() => lstatSync(`${real}-wal`)).to.throw(/ENOENT/)
  })

  it('a link to a database file that a new machine does not have yet: the restore makes it there', async () => {
    const real = moveToVolume('db.sqlite3')
    await backUp()
    const before = usernames(real)
    rmSync(real)

    await restore()
    expect(readlinkSync(join(project.root, 'db.sqlite3'))).to.equal(real)
    expect(usernames(real)).to.equal(before)
  })

  it('a linked media folder: the folder the link leads to is replaced, and the link stays; one not there yet is made', async () => {
    const real = moveToVolume('media')
    const tree = snapshotTree(real)
    await backUp()
    writeFileSync(join(real, 'uploads', 'readme.txt'), 'changed')
    await restore()
    expect(readlinkSync(join(project.root, 'media'))).to.equal(real)
    expect(snapshotTree(real)).to.deep.equal(tree)

    rmSync(real, {recursive: true})
    await restore()
    expect(readlinkSync(join(project.root, 'media'))).to.equal(real)
    expect(snapshotTree(real)).to.deep.equal(tree)
  })

  it('a chain of links that does not end is refused, naming it, and nothing is changed', async () => {
    await backUp()
    const path = join(project.root, 'db.sqlite3')
    rmSync(path)
    symlinkSync(join(volume, 'loop'), path)
    symlinkSync(path, join(volume, 'loop'))
    const refused = await cli(project, ['restore', 'latest', '--db-only', '--confirm', 'local', '--no-safety-backup'])
    expect(refused.status).to.equal(7)
    expect(refused.stderr).to.include(`The database file ${path} is a chain of symbolic links that does not end.`)
    expect(refused.stderr).to.include('Try this: Point the config at the database file itself, or mend the links')
    expect(readlinkSync(path)).to.equal(join(volume, 'loop'))
    expect(readlinkSync(join(volume, 'loop'))).to.equal(path)
  })
})
