import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {removeTree} from '../../src/lib/remove-tree.js'
import {mountTmpfs} from '../helpers/mounts.js'

describe('removeTree', () => {
  let root: string

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'divio-remove-'))
  })

  afterEach(() => rmSync(root, {force: true, recursive: true}))

  it('removes a tree of folders, files, links and names that are not UTF-8, and follows no link', async () => {
    const outside = join(root, 'outside')
    mkdirSync(outside)
    writeFileSync(join(outside, 'kept.txt'), 'kept')
    const tree = join(root, 'tree')
    // More names a folder than unlinks in flight, in several folders, an empty one and a deep one.
    for (let folder = 0; folder < 3; folder++) {
      mkdirSync(join(tree, `folder-${folder}`), {recursive: true})
      for (let file = 0; file < 150; file++) writeFileSync(join(tree, `folder-${folder}`, `f${file}`), String(file))
    }

    mkdirSync(join(tree, 'empty'))
    let deep = tree
    for (let level = 0; level < 60; level++) deep = join(deep, `d${level}`)
    mkdirSync(deep, {recursive: true})
    writeFileSync(join(deep, 'bottom.txt'), 'bottom')
    const latin1 = Buffer.concat([Buffer.from(`${tree}/caf`), Buffer.from([0xe9]), Buffer.from('.txt')])
    writeFileSync(latin1, 'not UTF-8')
    mkdirSync(Buffer.concat([Buffer.from(`${tree}/folder-`), Buffer.from([0xff, 0xfe])]))
    writeFileSync(join(tree, 'line\nbreak'), '')
    symlinkSync(outside, join(tree, 'link-to-a-folder'))
    symlinkSync(join(outside, 'kept.txt'), join(tree, 'link-to-a-file'))
    symlinkSync(join(root, 'nowhere'), join(tree, 'dangling'))

    await removeTree(tree)
    expect(existsSync(tree)).to.equal(false)
    expect(readdirSync(root)).to.deep.equal(['outside'])
    expect(readFileSync(join(outside, 'kept.txt'), 'utf8')).to.equal('kept')
  })

  it('removes a file or a link given itself, never what a link points to, and takes nothing there as done', async () => {
    const file = join(root, 'file.txt')
    writeFileSync(file, 'x')
    await removeTree(file)
    expect(existsSync(file)).to.equal(false)

    const target = join(root, 'target')
    mkdirSync(target)
    writeFileSync(join(target, 'inside.txt'), 'inside')
    symlinkSync(target, join(root, 'link'))
    await removeTree(join(root, 'link'))
    expect(readdirSync(root)).to.deep.equal(['target'])
    expect(readdirSync(target)).to.deep.equal(['inside.txt'])

    await removeTree(join(root, 'not-there'))
  })

  it('fails with the cause, naming the path, when a name cannot be removed', async () => {
    // /proc's entries cannot be unlinked, even by root.
    const refused = await removeTree('/proc/sys/kernel').then(
      () => {},
      (error: NodeJS.ErrnoException) => error,
    )
    expect(refused?.code).to.equal('EACCES')
    expect(refused?.message).to.include('/proc/sys/kernel/')
  })

  it('refuses a tree with another file system mounted inside, before removing anything of it', async function () {
    const tree = join(root, 'tree')
    mkdirSync(join(tree, 'a'), {recursive: true})
    writeFileSync(join(tree, 'a', 'kept.txt'), 'kept')
    const volume = mountTmpfs(this, join(tree, 'a', 'volume'), 'size=1m')
    try {
      writeFileSync(join(volume, 'on-the-volume.txt'), 'kept too')
      const failure = await removeTree(tree).then(
        () => {},
        (error: NodeJS.ErrnoException) => error,
      )
      expect(failure?.code).to.equal('EBUSY')
      expect(failure?.message).to.equal(`${tree} holds another file system, mounted at ${volume}: it was not removed`)
      expect(readFileSync(join(tree, 'a', 'kept.txt'), 'utf8')).to.equal('kept')
      expect(readFileSync(join(volume, 'on-the-volume.txt'), 'utf8')).to.equal('kept too')
    } finally {
      spawnSync('umount', [volume])
    }
  })
})
