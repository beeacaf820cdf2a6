import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {createListingFile} from '../../src/archive/listing.js'
import {CHANGED_WHILE_RUNNING, createMediaTar, MediaEntry} from '../../src/archive/media-tar.js'
import {FilesystemMediaProvider} from '../../src/providers/media/filesystem.js'
import {collect} from '../helpers/tools.js'

/**
 * The app changes its media folder while a backup walks it: folders go, and names are swapped for
 * links to elsewhere. The walk goes on past what went, and never reads what is outside the folder.
 * (Each read and listing, swapped after its lstat, is tested in test/lib/listed-files.test.ts.)
 */
describe('the media walk, while the app changes the folder', () => {
  let base: string
  let root: string
  const SECRET = 'outside the media folder'

  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), 'walk-changes-'))
    root = join(base, 'media')
    // More files in the first folder than the walk reads ahead (32), so that the consumer's place in
    // it comes before the listing of any folder after the next.
    for (const folder of ['a', 'b', 'c', 'd']) {
      mkdirSync(join(root, folder), {recursive: true})
      for (let index = 0; index < 100; index++)
        writeFileSync(join(root, folder, `f${String(index).padStart(3, '0')}.txt`), `${folder} ${index}`)
    }

    mkdirSync(join(base, 'outside'))
    for (let index = 0; index < 100; index++)
      writeFileSync(join(base, 'outside', `f${String(index).padStart(3, '0')}.txt`), SECRET)
    writeFileSync(join(base, 'outside', 'only-outside.txt'), SECRET)
  })

  afterEach(() => rmSync(base, {force: true, recursive: true}))

  async function walkChanging(change: () => void): Promise<{contents: string[]; paths: string[]; skipped: string[]}> {
    const provider = new FilesystemMediaProvider(root)
    const skipped: string[] = []
    const paths: string[] = []
    const contents: string[] = []
    const entries = provider.entries({
      onSkip: (path, why) => skipped.push(`${path}: ${why}`),
      signal: new AbortController().signal,
    })
    for await (const entry of entries) {
      paths.push(entry.path)
      if (entry.path === 'a/f000.txt') change()
      const read = await entry.prefetched
      if (read) contents.push(read.content.toString())
      read?.release?.()
    }

    return {contents, paths, skipped}
  }

  it('a folder deleted before the walk lists it is skipped, said so, and the walk goes on', async () => {
    const {paths, skipped} = await walkChanging(() => rmSync(join(root, 'c'), {recursive: true}))
    expect(skipped).to.deep.equal([`c: ${CHANGED_WHILE_RUNNING}`])
    expect(paths.filter((path) => path.startsWith('d/'))).to.have.length(100)
    expect(paths).to.include('c')
    expect(paths.filter((path) => path.startsWith('c/'))).to.deep.equal([])
  })

  it('a folder swapped for a symlink to a folder outside is skipped: nothing outside is listed or read', async () => {
    const {contents, paths, skipped} = await walkChanging(() => {
      renameSync(join(root, 'c'), join(base, 'c-moved'))
      symlinkSync(join(base, 'outside'), join(root, 'c'))
    })
    expect(skipped).to.deep.equal([`c: ${CHANGED_WHILE_RUNNING}`])
    expect(paths.filter((path) => path.startsWith('c/'))).to.deep.equal([])
    expect(contents).to.not.include(SECRET)
    expect(contents).to.have.length(300)
  })

  it('a large file swapped after it was listed is left out of the archive, and said so', async () => {
    const big = join(root, 'a', 'big.bin')
    writeFileSync(big, Buffer.alloc(1024 * 1024, 1))
    const {dev, ino, size} = lstatSync(big)
    const listed: MediaEntry = {
      dev,
      ino,
      localPath: big,
      mode: 0o10_0644,
      mtime: new Date(0),
      path: 'a/big.bin',
      size,
      type: 'file',
    }
    rmSync(big)
    execFileSync('mkfifo', [big])
    const skipped: string[] = []
    const {stream, summary} = createMediaTar(
      (async function* () {
        yield listed
      })(),
      createListingFile(base),
      {onSkip: (path, why) => skipped.push(`${path}: ${why}`)},
    )
    const archive = await collect(stream)
    expect(await summary).to.deep.equal({files: 0, totalFileBytes: 0})
    expect(skipped).to.deep.equal([`a/big.bin: ${CHANGED_WHILE_RUNNING}`])
    expect(archive.includes(Buffer.from('media/a/big.bin'))).to.equal(false)
  })
})
