import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {FileHandle} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {BufferLender} from '../../src/lib/buffer-loan.js'
import {createFileSink, writeAll} from '../../src/lib/file-sink.js'

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
