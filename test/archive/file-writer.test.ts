import {expect} from 'chai'
import {createHash} from 'node:crypto'
import {lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as delay} from 'node:timers/promises'

import {
  FileWriteError,
  onTheWriterThread,
  onThisThread,
  SmallFileWriter,
  SmallWritesHere,
  stopWriterThread,
  WriterRoute,
} from '../../src/archive/file-writer.js'
import {RequestThread} from '../../src/lib/worker.js'

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')
const UMASK = 0o022

/** Writes `count` files named f0… of `size` bytes each through `route`; resolves with what `written` reported. */
async function writeFiles(root: string, route: WriterRoute, count: number, size = 100): Promise<Map<string, string>> {
  const written = new Map<string, string>()
  const writer = new SmallFileWriter(UMASK, (label, hash) => written.set(label, hash), route)
  for (let index = 0; index < count; index++) {
    const mode = index % 2 === 0 ? 0o644 : 0o600
    await writer.add(`f${index}`, Buffer.from(join(root, `f${index}`)), Buffer.alloc(size, index), {
      mode,
      mtime: new Date(Date.UTC(2020, 0, 1, 0, 0, index)),
    })
  }

  await writer.drain()
  return written
}

const routes: Array<[string, WriterRoute]> = [
  ['on the writer thread', onTheWriterThread],
  ['on this thread, as for a small restore', onThisThread],
]

for (const [where, route] of routes) {
  describe(`the writer, ${where}: new files with their mode and mtime, hashed`, () => {
    let root: string

    beforeEach(() => {
      root = mkdtempSync(join(tmpdir(), 'file-writer-'))
    })

    afterEach(() => {
      rmSync(root, {force: true, recursive: true})
    })

    it('writes every file across batches, with its bytes, mode and mtime, in the order added', async () => {
      const written = await writeFiles(root, route, 150)
      expect([...written.keys()]).to.deep.equal(Array.from({length: 150}, (_, index) => `f${index}`))
      for (let index = 0; index < 150; index++) {
        const path = join(root, `f${index}`)
        expect(readFileSync(path)).to.deep.equal(Buffer.alloc(100, index))
        expect(written.get(`f${index}`)).to.equal(sha256(Buffer.alloc(100, index)))
        const stat = lstatSync(path)
        expect(stat.mode % 0o1000).to.equal(index % 2 === 0 ? 0o644 : 0o600)
        expect(stat.mtimeMs).to.equal(Date.UTC(2020, 0, 1, 0, 0, index))
      }
    })

    it('a read-only mode is set once the file is written; a mode the umask would cut, too', async () => {
      const writer = new SmallFileWriter(UMASK, () => {}, route)
      const mtime = new Date(0)
      await writer.add('ro', Buffer.from(join(root, 'ro')), Buffer.from('x'), {mode: 0o444, mtime})
      await writer.add('gw', Buffer.from(join(root, 'gw')), Buffer.from('y'), {mode: 0o664, mtime})
      await writer.drain()
      expect(lstatSync(join(root, 'ro')).mode % 0o1000).to.equal(0o444)
      expect(lstatSync(join(root, 'gw')).mode % 0o1000).to.equal(0o664)
    })

    it('never writes through what is already there: the first failure names its file, and what follows is not written', async () => {
      writeFileSync(join(root, 'f2'), 'already here')
      const error = await writeFiles(root, route, 5).then(
        () => expect.fail('wrote over an existing file'),
        (error_: unknown) => error_,
      )
      expect(error).to.be.instanceOf(FileWriteError)
      expect((error as FileWriteError).label).to.equal('f2')
      expect((error as FileWriteError).code).to.equal('EEXIST')
      expect(readFileSync(join(root, 'f2'), 'utf8')).to.equal('already here')
      expect(() => lstatSync(join(root, 'f3'))).to.throw(/ENOENT/)
    })
  })
}

describe('the writer of a command: a small restore on this thread, the rest on the writer thread', () => {
  it('writes here until its budget is spent, then starts the thread, which takes over once it is up', async () => {
    const root = mkdtempSync(join(tmpdir(), 'file-writer-'))
    try {
      const route = new SmallWritesHere(100)
      mkdirSync(join(root, 'a'))
      mkdirSync(join(root, 'b'))
      // Batches of 64 files: the second spends past the budget, and starts the thread.
      const written = await writeFiles(join(root, 'a'), route, 150)
      expect(written.size).to.equal(150)
      for (let index = 0; index < 150; index++) {
        expect(readFileSync(join(root, 'a', `f${index}`))).to.deep.equal(Buffer.alloc(100, index))
      }

      const thread = RequestThread.of('archive/file-writer-worker')
      for (let waited = 0; !thread.online && waited < 200; waited++) await delay(50)
      expect(thread.online).to.equal(true)
      // Ten files would fit what is left here, but go to the thread, which is up.
      expect((await writeFiles(join(root, 'b'), route, 10)).size).to.equal(10)
      expect(route.onThread).to.equal(true)
      expect(readFileSync(join(root, 'b', 'f9'))).to.deep.equal(Buffer.alloc(100, 9))
    } finally {
      rmSync(root, {force: true, recursive: true})
    }
  })

  it('told of a large extraction, starts the thread at once and sends it every batch', async () => {
    const root = mkdtempSync(join(tmpdir(), 'file-writer-'))
    try {
      const route = new SmallWritesHere(100)
      route.expectLargeWork()
      // 20 files of a budget of 100: without the hint, they would be written here (the test below).
      expect(route.onThread).to.equal(true)
      const written = await writeFiles(root, route, 20)
      expect(written.get('f19')).to.equal(sha256(Buffer.alloc(100, 19)))
      expect(readFileSync(join(root, 'f19'))).to.deep.equal(Buffer.alloc(100, 19))
      expect(RequestThread.of('archive/file-writer-worker').online).to.equal(true)
    } finally {
      rmSync(root, {force: true, recursive: true})
    }
  })

  it('a small restore never starts the thread', async () => {
    const root = mkdtempSync(join(tmpdir(), 'file-writer-'))
    try {
      const route = new SmallWritesHere(100)
      await writeFiles(root, route, 50)
      expect(route.onThread).to.equal(false)
    } finally {
      rmSync(root, {force: true, recursive: true})
    }
  })

  it('ends the writer thread when told, unless a batch is in flight; the next batch starts a new one', async () => {
    const root = mkdtempSync(join(tmpdir(), 'file-writer-'))
    // The threads of this process: a worker is one of them.
    const threads = () => readdirSync('/proc/self/task').length
    try {
      mkdirSync(join(root, 'a'))
      mkdirSync(join(root, 'b'))
      expect((await writeFiles(join(root, 'a'), onTheWriterThread, 10)).size).to.equal(10)
      const first = RequestThread.of('archive/file-writer-worker')
      // A batch in flight keeps it: the stop does nothing, and the batch is written. drain() sends the
      // batch before it first waits, so the stop comes while the thread has it.
      const written = new Map<string, string>()
      const writer = new SmallFileWriter(UMASK, (label, hash) => written.set(label, hash), onTheWriterThread)
      for (let index = 0; index < 10; index++) {
        await writer.add(`f${index}`, Buffer.from(join(root, 'b', `f${index}`)), Buffer.alloc(100, index), {
          mode: 0o644,
          mtime: new Date(0),
        })
      }

      const draining = writer.drain()
      await stopWriterThread()
      expect(RequestThread.of('archive/file-writer-worker')).to.equal(first)
      await draining
      expect(written.size).to.equal(10)
      expect(readFileSync(join(root, 'b', 'f9'))).to.deep.equal(Buffer.alloc(100, 9))

      // The thread pool starts its threads at its first call: started here, so that only the stop counts.
      await stat(root)
      const before = threads()
      await stopWriterThread()
      expect(threads(), 'threads once it is stopped').to.be.at.most(before - 1)
      rmSync(join(root, 'a'), {recursive: true})
      mkdirSync(join(root, 'a'))
      expect((await writeFiles(join(root, 'a'), onTheWriterThread, 10)).get('f9')).to.equal(
        sha256(Buffer.alloc(100, 9)),
      )
      expect(RequestThread.of('archive/file-writer-worker')).not.to.equal(first)
    } finally {
      rmSync(root, {force: true, recursive: true})
    }
  })
})
