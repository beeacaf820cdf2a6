import {expect} from 'chai'
import {chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {sharedFolderOn} from '../../src/lib/private-folder.js'
import {requireRoot} from '../helpers/tools.js'

/** A user that is neither this one nor root: nobody, on Debian. */
const OTHER_UID = 65_534

/**
 * Where a command writes plaintext, no other user may be able to change a folder on the way: they could
 * swap a folder it made for a link, or plant a link where it writes a file. Every way a folder can be
 * shared, and the ways that are not, with real owners and modes.
 */
describe('sharedFolderOn: a folder another user could change', function () {
  let root: string

  before(function () {
    requireRoot(this, 'giving a folder to another user')
  })

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'shared-'))
  })

  afterEach(() => {
    rmSync(root, {force: true, recursive: true})
  })

  const folder = (name: string, mode: number, uid = 0) => {
    const path = join(root, name)
    mkdirSync(path)
    chmodSync(path, mode)
    chownSync(path, uid, 0)
    return path
  }

  it('none: folders of this user or root, group-writable ones, sticky ones that all may write (/tmp)', async () => {
    expect(await sharedFolderOn(folder('private', 0o700))).to.equal(undefined)
    expect(await sharedFolderOn(folder('group', 0o770))).to.equal(undefined)
    expect(await sharedFolderOn(folder('sticky', 0o1777))).to.equal(undefined)
    expect(await sharedFolderOn(join(root, 'sticky', 'not', 'made', 'yet'))).to.equal(undefined)
    expect(await sharedFolderOn(tmpdir())).to.equal(undefined)
  })

  it("another user's folder, itself or above it, made or still to be made", async () => {
    const theirs = folder('theirs', 0o755, OTHER_UID)
    const expected = {path: theirs, why: `belongs to another user (uid ${OTHER_UID})`}
    expect(await sharedFolderOn(theirs)).to.deep.equal(expected)
    expect(await sharedFolderOn(join(theirs, 'not-yet'))).to.deep.equal(expected)
    mkdirSync(join(theirs, 'mine'))
    expect(await sharedFolderOn(join(theirs, 'mine'))).to.deep.equal(expected)
  })

  it('a folder every user may write, without the sticky bit', async () => {
    const open = folder('open', 0o777)
    const expected = {path: open, why: 'may be written by every user'}
    expect(await sharedFolderOn(open)).to.deep.equal(expected)
    expect(await sharedFolderOn(join(open, 'a', 'b'))).to.deep.equal(expected)
  })

  it('both ways to a folder through a link: the link where someone could swap it, and where it leads', async () => {
    const theirs = folder('theirs', 0o755, OTHER_UID)
    const inTheirs = join(theirs, 'target')
    mkdirSync(inTheirs)
    symlinkSync(inTheirs, join(root, 'link'))
    expect(await sharedFolderOn(join(root, 'link'))).to.deep.equal({
      path: theirs,
      why: `belongs to another user (uid ${OTHER_UID})`,
    })

    const open = folder('open', 0o777)
    mkdirSync(join(root, 'private'))
    symlinkSync(join(root, 'private'), join(open, 'link'))
    expect(await sharedFolderOn(join(open, 'link'))).to.deep.equal({path: open, why: 'may be written by every user'})
  })
})
