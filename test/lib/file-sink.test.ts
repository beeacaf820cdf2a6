import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {FileHandle, open} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {setTimeout as delay} from 'node:timers/promises'

import {BufferLender} from '../../src/lib/buffer-loan.js'
import {createFileSink, fileSink, writeAll} from '../../src/lib/file-sink.js'

const openFiles = () => readdirSync('/proc/self/fd').length

describe('file sink', () => {
  it('writes every chunk in order and gives each lent one back once written', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'file-sink-')), 'out')
    const lender = new BufferLender(Infinity)
    const data = randomBytes(3 * 1024 * 1024 + 17)
    const chunks = []
    for (let offset = 0; offset < data.length; offset += 100_000) {
      chunks.push(lender.lend(Buffer.from(data.subarray(offset, offset + 100_000))))
    }

    await pipeline(Readable.from(chunks), createFileSink(path, {flags: 'wx', mode: 0o600}))
    expect(readFileSync(path).equals(data)).to.equal(true)
    let returned = 0
    while (lender.borrowBack()) returned++
    expect(returned).to.equal(chunks.length)
  })

  it('refuses a file that exists (wx), and closes its file when destroyed or failed', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'file-sink-'))
    const before = openFiles()
    writeFileSync(join(folder, 'taken'), 'keep me')
    const error = await pipeline(
      Readable.from([Buffer.from('x')]),
      createFileSink(join(folder, 'taken'), {flags: 'wx', mode: 0o600}),
    ).catch((error_: unknown) => error_)
    expect((error as NodeJS.ErrnoException).code).to.equal('EEXIST')
    expect(readFileSync(join(folder, 'taken'), 'utf8')).to.equal('keep me')

    const failing = Readable.from(
      (async function* () {
        yield Buffer.from('first')
        throw new Error('the source failed')
      })(),
    )
    const sink = createFileSink(join(folder, 'half'), {flags: 'wx', mode: 0o600})
    const failed = await pipeline(failing, sink).catch((error_: unknown) => error_)
    expect((failed as Error).message).to.equal('the source failed')
    if (!sink.closed)
      await new Promise((resolve) => {
        sink.once('close', resolve)
      })
    expect(openFiles()).to.equal(before)
  })

  // Both sinks: the one that opens its file, and the one a store's put hands its open file.
  for (const kind of ['a file it opens', 'a handle it is given'] as const) {
    it(`that syncs, into ${kind}: flushes as it writes, one flush at a time, and finishes only after the last flush`, async () => {
      const folder = mkdtempSync(join(tmpdir(), 'file-sink-'))
      const probe = await open(join(folder, 'probe'), 'w')
      const prototype = Object.getPrototypeOf(probe) as {datasync: () => Promise<void>}
      await probe.close()
      const {datasync} = prototype
      const mebibyte = randomBytes(1024 * 1024)
      /** Writes 100 MiB through a sink that syncs, each flush taking `flushMs`; the first flush fails. */
      const write = async (name: string, flushMs: number) => {
        const events: string[] = []
        let running = 0
        let most = 0
        prototype.datasync = async function (this: FileHandle) {
          running++
          most = Math.max(most, running)
          events.push('sync')
          if (flushMs > 0) await delay(flushMs)
          // Closed meanwhile, the sink would have reported the stream finished with the file unflushed.
          if (this.fd === -1) events.push('closed while syncing')
          running--
          // A flush ahead is only a head start: the caller's own fsync is the one that reports.
          if (events.filter((event) => event === 'sync').length === 1) throw new Error('EIO')
        }

        const path = join(folder, name)
        const source = Readable.from(Array.from({length: 100}, () => mebibyte))
        if (kind === 'a file it opens') {
          await pipeline(source, createFileSink(path, {flags: 'wx', mode: 0o600, syncs: true}))
        } else {
          const handle = await open(path, 'wx', 0o600)
          try {
            await pipeline(source, fileSink(handle, {syncs: true}))
          } finally {
            await handle.close()
          }
        }

        // Finished only once its flushes are done: none is left running on a closed file.
        expect(running, 'flushes still running when the sink finished').to.equal(0)
        expect(statSync(path).size).to.equal(100 * 1024 * 1024)
        return {events, most, syncs: events.filter((event) => event === 'sync').length}
      }

      try {
        // Flushes that take no time: one each 32 MiB written.
        expect((await write('quick', 0)).syncs).to.be.within(2, 3)
        // Flushes slower than the writes: never two at once, and the file closes after the last.
        const slow = await write('slow', 50)
        expect(slow.syncs).to.be.at.least(1)
        expect(slow.most, 'flushes at once').to.equal(1)
        expect(slow.events).to.not.include('closed while syncing')
      } finally {
        prototype.datasync = datasync
        rmSync(folder, {force: true, recursive: true})
      }
    })
  }

  it('into a handle it is given, without syncs, never flushes: the caller decides', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'file-sink-'))
    const handle = await open(join(folder, 'out'), 'wx', 0o600)
    const prototype = Object.getPrototypeOf(handle) as {datasync: () => Promise<void>}
    const {datasync} = prototype
    let syncs = 0
    prototype.datasync = async () => {
      syncs++
    }

    try {
      const mebibyte = randomBytes(1024 * 1024)
      await pipeline(Readable.from(Array.from({length: 40}, () => mebibyte)), fileSink(handle))
      expect(syncs).to.equal(0)
    } finally {
      prototype.datasync = datasync
      await handle.close()
      rmSync(folder, {force: true, recursive: true})
    }
  })

  it('fails, instead of looping for ever, on a file system that writes nothing and says no error', async () => {
    const handle = {
      async write() {
        return {bytesWritten: 0}
      },
      async writev() {
        return {bytesWritten: 10}
      },
    } as unknown as FileHandle
    const error = await writeAll(handle, [Buffer.alloc(100)]).catch((error_: unknown) => error_)
    expect((error as Error).message).to.equal('the file system wrote nothing of 90 bytes')
  })
})
