import {expect} from 'chai'
import {chmodSync, chownSync, mkdirSync, readdirSync, symlinkSync} from 'node:fs'
import {join} from 'node:path'

import {cli, makeProject, Project} from '../helpers/project.js'
import {requireRoot} from '../helpers/tools.js'

const OTHER_UID = 65_534

/**
 * `download` and `export` write backups decrypted, and every command that stages a snapshot or a
 * listing writes plaintext into the temp folder. Where another user can change a folder on the way,
 * they could swap a folder the command makes for a link to one of theirs, and read it all; or, where
 * the command runs as root, plant a link that has it write over any file. Each refuses such a folder
 * before writing anything, naming it and why.
 */
describe('folders that another user could change are refused before any plaintext is written', function () {
  let project: Project
  let id: string

  before(async function () {
    requireRoot(this, 'giving a folder to another user')

    project = makeProject()
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    id = (created.json() as {id: string}).id
  })

  const folder = (name: string, mode: number, uid = 0) => {
    const path = join(project.root, '..', name)
    mkdirSync(path)
    chmodSync(path, mode)
    chownSync(path, uid, 0)
    return path
  }

  it("export into another user's folder, or under it: exit 7, and nothing written there", async () => {
    const theirs = folder('theirs', 0o755, OTHER_UID)
    for (const [output, raw] of [
      [theirs, []],
      [join(theirs, 'leaving'), []],
      [join(theirs, 'leaving'), ['--raw']],
    ] as const) {
      const result = await cli(project, ['export', '-o', output, '--json', ...raw])
      expect(result.status, result.stderr).to.equal(7)
      const {error} = result.json() as {error: {code: string; message: string; suggestion: string}}
      expect(error.code).to.equal('OUTPUT_UNAVAILABLE')
      expect(error.message).to.equal(
        `Nothing was written into ${output}: ${theirs} belongs to another user (uid ${OTHER_UID}), who could swap what is written there for a link to a place of theirs, and read or redirect it.`,
      )
      expect(error.suggestion).to.match(/^Choose a folder with -o that only you \(and root\) can change/)
      expect(readdirSync(theirs)).to.deep.equal([])
    }
  })

  it('download into a folder that every user may write, or through a link planted in one: exit 7', async () => {
    const open = folder('open', 0o777)
    const mine = folder('mine', 0o700)
    symlinkSync(mine, join(open, 'link'))
    for (const output of [open, join(open, 'link')]) {
      const result = await cli(project, ['download', id, '-o', output])
      expect(result.status, result.stderr).to.equal(7)
      expect(result.stderr).to.include(
        `Error: Nothing was written into ${output}: ${open} may be written by every user`,
      )
    }

    expect(readdirSync(open)).to.deep.equal(['link'])
    expect(readdirSync(mine)).to.deep.equal([])

    // A sticky folder that every user may write (as /tmp) keeps others from renaming what is not theirs.
    const sticky = folder('sticky', 0o1777)
    const downloaded = await cli(project, ['download', id, '-o', join(sticky, 'mine')])
    expect(downloaded.status, downloaded.stderr).to.equal(0)
    expect(readdirSync(join(sticky, 'mine')).sort()).to.deep.equal(['database.sqlite3', 'manifest.json', 'media.tar'])
  })

  it('a temp folder that every user may write: create and drill refuse it, and stage nothing there', async () => {
    const temp = folder('open-temp', 0o777)
    for (const args of [['create'], ['drill', id]]) {
      const result = await cli(project, args, {DIVIO_BACKUP_TMPDIR: temp})
      expect(result.status, result.stderr).to.equal(7)
      expect(result.stderr).to.include(
        `Error: The temp folder ${temp} is not safe for plaintext: ${temp} may be written by every user, who could swap what is staged there for a link to a place of theirs, and read it. Nothing was staged.`,
      )
      expect(result.stderr).to.include(
        'Try this: Point DIVIO_BACKUP_TMPDIR at a folder that only you (and root) can change.',
      )
    }

    expect(readdirSync(temp)).to.deep.equal([])
    const listed = (await cli(project, ['list', '--json'])).json() as unknown[]
    expect(listed, 'the refused create stored nothing').to.have.length(1)
  })
})
