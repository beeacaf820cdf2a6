import {expect} from 'chai'
import {createHash} from 'node:crypto'
import {closeSync, lstatSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import {onTheReaderThread, onThisThread, ReaderRoute, SmallWorkHere} from '../../src/lib/file-reader-route.js'
import {EntryKind, listFolder, ReadFile, SmallFileReader} from '../../src/lib/file-reader.js'
import {RequestThread} from '../../src/lib/worker.js'
import {bigTreeParent} from '../helpers/big-tree.js'

/** A read's content and digest, without its release. */
function contentOf(read: ReadFile | undefined): Omit<ReadFile, 'release'> | undefined {
  return read && {content: read.content, sha256: read.sha256}
}

const routes: Array<[string, ReaderRoute]> = [
  ['on the reader thread', onTheReaderThread],
  ['on this thread, as for a small tree', onThisThread],
]

for (const [where, route] of routes)
  describe(`the reader, ${where}: folders listed and files read whole`, () => {
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
      const listed = await listFolder(root, route)
      const byName = new Map(
        Array.from({length: listed.count}, (_, index) => [listed.name(index).toString('latin1'), listed.info(index)]),
      )
      expect([...byName.keys()].sort()).to.deep.equal(['file', 'folder', 'link', latin1.toString('latin1')].sort())
      const stat = lstatSync(join(root, 'file'))
      expect(byName.get('file')).to.deep.equal({
        ctimeMs: stat.ctimeMs,
        dev: stat.dev,
        ino: stat.ino,
        kind: EntryKind.File,
        mode: stat.mode,
        mtimeMs: stat.mtimeMs,
        size: 12,
      })
      expect(byName.get('folder')!.kind).to.equal(EntryKind.Directory)
      expect(byName.get('link')!.kind).to.equal(EntryKind.Symlink)
    })

    if (route === onTheReaderThread)
      it("lists a folder of 125,000 names, which as objects would not fit the thread's 8 MiB heap", async () => {
        // On a memory file system where there is one: creating this many files on a disk costs seconds.
        // As objects (a name as a Buffer and its lstat's numbers), 30,000 already run that heap out.
        const wide = mkdtempSync(join(bigTreeParent(), 'file-reader-wide-'))
        try {
          for (let index = 0; index < 125_000; index++) closeSync(openSync(join(wide, `f${index}`), 'w'))
          const listed = await listFolder(wide, route)
          expect(listed.count).to.equal(125_000)
          expect(listed.info(0).kind).to.equal(EntryKind.File)
        } finally {
          rmSync(wide, {force: true, recursive: true})
        }
      })

    it('a folder that cannot be listed fails with the system error', async () => {
      const error = await listFolder(join(root, 'missing'), route).then(
        () => expect.fail('listed a missing folder'),
        (error_: NodeJS.ErrnoException) => error_,
      )
      expect(error.code).to.equal('ENOENT')
      expect(error.message).to.include('missing')
    })

    it('reads files whole across batches: gone or not a file is undefined, a file that grew is cut, and a failure is its file alone', async () => {
      const reader = new SmallFileReader(route)
      const sizes = Array.from({length: 200}, (_, index) => (index * 977) % 5000)
      for (const [index, size] of sizes.entries()) writeFileSync(join(root, `f${index}`), Buffer.alloc(size, index))
      writeFileSync(join(root, 'grew'), 'twelve bytes')
      const reads: Array<Promise<ReadFile | undefined>> = []
      for (const [index, size] of sizes.entries()) {
        reads.push(reader.read(join(root, `f${index}`), size))
        // Several batches, at most two with the thread at once.
        if (index % 50 === 49) await reader.flush()
      }

      const gone = reader.read(join(root, 'gone'), 10)
      const grew = reader.read(join(root, 'grew'), 6)
      const folder = reader.read(root, 10)
      const tooLong = reader.read(join(root, 'x'.repeat(300)), 10)
      const shrank = reader.read(join(root, 'f1'), 5000)
      await reader.flush()
      const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex')
      for (const [index, read] of reads.entries()) {
        const content = Buffer.alloc(sizes[index], index)
        expect(contentOf(await read)).to.deep.equal({content, sha256: sha256(content)})
      }

      expect(await gone).to.equal(undefined)
      expect(contentOf(await grew)).to.deep.equal({content: Buffer.from('twelve'), sha256: sha256('twelve')})
      expect(await folder).to.equal(undefined)
      expect(((await tooLong.catch((error: unknown) => error)) as NodeJS.ErrnoException).code).to.equal('ENAMETOOLONG')
      expect(contentOf(await shrank)).to.deep.equal({
        content: Buffer.alloc(977, 1),
        sha256: sha256(Buffer.alloc(977, 1)),
      })
    })

    it('lends each file from its batch, whose buffer reads later files only once every file of it is released', async () => {
      const sent: ArrayBuffer[] = []
      const answered: ArrayBuffer[] = []
      const watched: ReaderRoute = {
        list: (request) => route.list(request),
        async read(batch) {
          sent.push(batch.contents)
          const reply = await route.read(batch)
          answered.push(reply.contents)
          return reply
        },
      }
      const reader = new SmallFileReader(watched)
      const contentAt = (index: number) => Buffer.alloc(100 + index, index)
      for (let index = 0; index < 40; index++) writeFileSync(join(root, `f${index}`), contentAt(index))
      const readBatch = async (indexes: number[]) => {
        const reads = indexes.map((index) => reader.read(join(root, `f${index}`), 100 + index))
        await reader.flush()
        return (await Promise.all(reads)) as ReadFile[]
      }

      const range = (from: number) => Array.from({length: 10}, (_, index) => from + index)
      const first = await readBatch(range(0))
      // All but one released: the batch must not be reused, however many batches follow.
      for (const read of first.slice(1)) read.release()
      const second = await readBatch(range(10))
      const third = await readBatch(range(20))
      expect(sent.slice(1)).to.not.include(answered[0])
      expect(first[0].content).to.deep.equal(contentAt(0))
      for (const [index, read] of [...second, ...third].entries())
        expect(read.content).to.deep.equal(contentAt(10 + index))

      // Released, a second time too: the next batch reads into that buffer, once.
      first[0].release()
      first[0].release()
      const fourth = await readBatch(range(30))
      expect(sent.at(-1)).to.equal(answered[0])
      expect(fourth.map(({content}) => content)).to.deep.equal(range(30).map((index) => contentAt(index)))
    })

    it('hashes files of any size, as the drill reads them back', async () => {
      const reader = new SmallFileReader(route)
      const large = Buffer.alloc(3 * 1024 * 1024 + 17, 7)
      writeFileSync(join(root, 'large'), large)
      writeFileSync(join(root, 'empty'), '')
      const hashes = [
        reader.hash(join(root, 'large')),
        reader.hash(join(root, 'empty')),
        reader.hash(join(root, 'gone')),
      ]
      await reader.flush()
      const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex')
      expect(await Promise.all(hashes)).to.deep.equal([sha256(large), sha256(''), undefined])
    })
  })

describe('the reader of a command: small work on this thread, the rest on the reader thread', () => {
  let root: string

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'file-reader-'))
  })

  afterEach(() => {
    rmSync(root, {force: true, recursive: true})
  })

  it('lists and reads here until its budget is spent, then starts the thread, which takes over once it is up', async () => {
    for (let index = 0; index < 40; index++) writeFileSync(join(root, `f${index}`), Buffer.alloc(100, index))
    const route = new SmallWorkHere(60)
    const listed = await listFolder(root, route)
    expect(listed.count).to.equal(40)
    const reader = new SmallFileReader(route)
    // Two batches of 15: the first fits the budget (20 units are left), the second spends past it.
    const reads: Array<Promise<ReadFile | undefined>> = []
    for (let index = 0; index < 30; index++) {
      reads.push(reader.read(join(root, `f${index}`), 100))
      if (index % 15 === 14) await reader.flush()
    }

    const contents = await Promise.all(reads)
    expect(contents.map((read) => read?.content)).to.deep.equal(
      Array.from({length: 30}, (_, index) => Buffer.alloc(100, index)),
    )
    // The thread started when the budget was spent; whatever came meanwhile was done here.
    const thread = RequestThread.of('lib/file-reader-worker')
    for (let waited = 0; !thread.online && waited < 200; waited++) await delay(50)
    expect(thread.online).to.equal(true)
    expect((await listFolder(root, route)).count).to.equal(40)
    expect(route.onThread, 'once the thread is up').to.equal(true)
  })

  it('works here before its budget is spent, even with the thread up', async () => {
    for (let index = 0; index < 10; index++) writeFileSync(join(root, `f${index}`), Buffer.alloc(10, index))
    await listFolder(root, onTheReaderThread)
    const route = new SmallWorkHere(100)
    expect((await listFolder(root, route)).count).to.equal(10)
    expect(route.onThread).to.equal(false)
  })

  it('told of a large walk, starts the thread at once, and works here only until it is up', async () => {
    for (let index = 0; index < 10; index++) writeFileSync(join(root, `f${index}`), Buffer.alloc(10, index))
    const route = new SmallWorkHere(100)
    route.expectLargeWork()
    // Before the thread is up (or, in this process, at once), the work is done here and is the same.
    expect((await listFolder(root, route)).count).to.equal(10)
    const thread = RequestThread.of('lib/file-reader-worker')
    for (let waited = 0; !thread.online && waited < 200; waited++) await delay(50)
    expect(thread.online).to.equal(true)
    // 10 names of a budget of 100: without the hint, this listing would be done here (the test above).
    expect((await listFolder(root, route)).count).to.equal(10)
    expect(route.onThread).to.equal(true)
  })

  it('lists a folder wider than twice its budget on the thread', async () => {
    for (let index = 0; index < 250; index++) closeSync(openSync(join(root, `f${index}`), 'w'))
    const route = new SmallWorkHere(100)
    const listed = await listFolder(root, route)
    expect(listed.count).to.equal(250)
    expect(route.onThread).to.equal(true)
    expect(
      Array.from({length: listed.count}, (_, index) => listed.name(index).toString())
        .sort()
        .slice(0, 2),
    ).to.deep.equal(['f0', 'f1'])
  })
})

describe('the reader: the buffers its batches go in', () => {
  let root: string

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'file-reader-buffers-'))
  })

  afterEach(() => {
    rmSync(root, {force: true, recursive: true})
  })

  it('go round: batches of every size up to 2 MiB are carried by a few buffers, not one each', async () => {
    // Files from 1 KiB to 256 KiB, in batches of 1 to 8 of them: 1 KiB to 2 MiB a batch, in no order.
    const sizes = Array.from({length: 24}, (_, index) => 1024 * (1 + ((index * 37) % 256)))
    for (const [index, size] of sizes.entries()) writeFileSync(join(root, `f${index}`), Buffer.alloc(size, index))
    const seen = new Set<ArrayBuffer>()
    const recording: ReaderRoute = {
      list: (request) => onThisThread.list(request),
      read(batch) {
        seen.add(batch.contents)
        return onThisThread.read(batch)
      },
    }
    const reader = new SmallFileReader(recording)
    // As a backup reads: the next batch is sent before the last one's files are copied and released.
    const pending: Array<{files: number[]; reads: Promise<Array<ReadFile | undefined>>}> = []
    const settle = async () => {
      const {files, reads} = pending.shift()!
      for (const [index, read] of (await reads).entries()) {
        expect(read?.content.length).to.equal(sizes[files[index]])
        expect(read?.content[0]).to.equal(files[index])
        read?.release()
      }
    }

    for (let round = 0; round < 200; round++) {
      const files = Array.from({length: 1 + ((round * 5) % 8)}, (_, index) => (round * 7 + index * 11) % sizes.length)
      pending.push({files, reads: Promise.all(files.map((file) => reader.read(join(root, `f${file}`), sizes[file])))})
      await reader.flush()
      if (pending.length > 2) await settle()
    }

    while (pending.length > 0) await settle()
    // Kept only until the first that did not fit, one batch in ten had a new one (20 here).
    expect(seen.size).to.be.at.most(6)
  })
})
