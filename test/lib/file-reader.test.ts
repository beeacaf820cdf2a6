import {expect} from 'chai'
import {lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {EntryKind, listFolder, SmallFileReader} from '../../src/lib/file-reader.js'

describe('the reader thread: folders listed and small files read off the main thread', () => {
  let root: string

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'file-reader-'))
  })

  afterEach(() => {
    rmSync(root, {force: true, recursive: true})
  })

  it('lists every name as bytes, with what lstat says of it', async () => {
    const latin1 = Buffer.from('r\u00E9sum\u00E9.txt', 'latin1')
    writeFileSync(Buffer.concat([Buffer.from(`${root}/`), latin1]), 'not UTF-8')
    writeFileSync(join(root, 'file'), 'twelve bytes', {mode: 0o640})
    mkdirSync(join(root, 'folder'))
    symlinkSync('file', join(root, 'link'))
    const listed = await listFolder(root)
    const byName = new Map(
      Array.from({length: listed.count}, (_, index) => [listed.name(index).toString('latin1'), listed.info(index)]),
    )
    expect([...byName.keys()].sort()).to.deep.equal(['file', 'folder', 'link', latin1.toString('latin1')].sort())
    const stat = lstatSync(join(root, 'file'))
    expect(byName.get('file')).to.deep.equal({
      ctimeMs: stat.ctimeMs,
      ino: stat.ino,
      kind: EntryKind.File,
      mode: stat.mode,
      mtimeMs: stat.mtimeMs,
      size: 12,
    })
    expect(byName.get('folder')!.kind).to.equal(EntryKind.Directory)
    expect(byName.get('link')!.kind).to.equal(EntryKind.Symlink)
  })

  it('a folder that cannot be listed fails with the system error', async () => {
    const error = await listFolder(join(root, 'missing')).then(
      () => expect.fail('listed a missing folder'),
      (error_: NodeJS.ErrnoException) => error_,
    )
    expect(error.code).to.equal('ENOENT')
    expect(error.message).to.include('missing')
  })

  it('reads files whole across batches: gone is undefined, a file that grew is cut, and a failure is its file alone', async () => {
    const reader = new SmallFileReader()
    const sizes = Array.from({length: 200}, (_, index) => (index * 977) % 5000)
    for (const [index, size] of sizes.entries()) writeFileSync(join(root, `f${index}`), Buffer.alloc(size, index))
    writeFileSync(join(root, 'grew'), 'twelve bytes')
    const reads: Array<Promise<Buffer | undefined>> = []
    for (const [index, size] of sizes.entries()) {
      reads.push(reader.read(join(root, `f${index}`), size))
      // Several batches, at most two with the thread at once.
      if (index % 50 === 49) await reader.flush()
    }

    const gone = reader.read(join(root, 'gone'), 10)
    const grew = reader.read(join(root, 'grew'), 6)
    const folder = reader.read(root, 10)
    const shrank = reader.read(join(root, 'f1'), 5000)
    await reader.flush()
    for (const [index, read] of reads.entries()) expect(await read).to.deep.equal(Buffer.alloc(sizes[index], index))
    expect(await gone).to.equal(undefined)
    expect((await grew)!.toString()).to.equal('twelve')
    expect(((await folder.catch((error: unknown) => error)) as NodeJS.ErrnoException).code).to.equal('EISDIR')
    expect(await shrank).to.deep.equal(Buffer.alloc(977, 1))
  })
})
