import {expect} from 'chai'
import {createHash, randomBytes} from 'node:crypto'
import {Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {HashingStream, OffThreadHashingStream} from '../../src/archive/hash.js'
import {randomPieces} from '../helpers/tools.js'

/** What a hashing stream hands the cipher thread at a time. */
const BATCH = 256 * 1024
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

const pieces = (data: Buffer) => randomPieces(data, BATCH)

async function hashThrough(stream: HashingStream | OffThreadHashingStream, data: Buffer[]): Promise<Buffer> {
  const passed: Buffer[] = []
  await pipeline(
    Readable.from(data),
    stream,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        passed.push(Buffer.from(chunk))
        callback()
      },
    }),
  )
  return Buffer.concat(passed)
}

describe('hashing streams', () => {
  for (const size of [0, 1, BATCH - 1, BATCH, BATCH + 1, 5 * BATCH + 7, 9 * BATCH]) {
    it(`pass ${size} bytes on unchanged, and hash them as node:crypto does, here and on the cipher thread`, async () => {
      const data = randomBytes(size)
      for (const stream of [new HashingStream(), new OffThreadHashingStream()]) {
        const passed = await hashThrough(stream, pieces(data))
        expect(passed.equals(data)).to.equal(true)
        expect(stream.bytes).to.equal(size)
        expect(stream.sha256).to.equal(sha256(data))
      }
    })
  }

  it('run side by side on the one thread, each with its own digest', async () => {
    const inputs = [randomBytes(3 * BATCH + 5), randomBytes(4 * BATCH), randomBytes(BATCH + 1)]
    const streams = inputs.map(() => new OffThreadHashingStream())
    await Promise.all(inputs.map((data, index) => hashThrough(streams[index], pieces(data))))
    expect(streams.map((stream) => stream.sha256)).to.deep.equal(inputs.map((data) => sha256(data)))
  })

  it('a stream destroyed halfway fails with its error, says no digest, and the next one still hashes', async () => {
    const broken = new OffThreadHashingStream()
    const failing = Readable.from(
      (async function* () {
        yield randomBytes(3 * BATCH)
        throw new Error('the source failed')
      })(),
    )
    const error = await pipeline(
      failing,
      broken,
      new Writable({write: (_chunk, _encoding, callback) => callback()}),
    ).catch((error_: unknown) => error_)
    expect((error as Error).message).to.equal('the source failed')
    expect(() => broken.sha256).to.throw(/digest read before the end/)

    const data = randomBytes(2 * BATCH + 3)
    const next = new OffThreadHashingStream()
    await hashThrough(next, [data])
    expect(next.sha256).to.equal(sha256(data))
  })
})
