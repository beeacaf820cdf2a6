import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {setTimeout as delay} from 'node:timers/promises'

import {generateIdentity} from '../../src/archive/age-keys.js'
import {createDecryptStream} from '../../src/archive/age.js'
import {createSealStream} from '../../src/archive/seal.js'
import {giveBack} from '../../src/lib/buffer-loan.js'
import {lendingSource} from '../helpers/lending-source.js'
import {randomPieces, requireTool, through} from '../helpers/tools.js'

const CHUNK = 64 * 1024
const BATCH = 1024 * 1024
/** What the stream hands the worker at a time: a stream that ends within it is sealed on its own thread. */
const WORKER_BATCH = 256 * 1024
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

const pieces = (data: Buffer) => randomPieces(data, BATCH)

async function seal(
  data: Buffer[],
  recipients: Uint8Array[],
  options?: {hashPlaintext?: boolean; offThread?: boolean},
) {
  const stream = createSealStream(recipients, options)
  const chunks: Buffer[] = []
  await pipeline(
    Readable.from(data),
    stream,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk)
        callback()
      },
    }),
  )
  return {output: Buffer.concat(chunks), result: await stream.result}
}

describe('seal stream (age encryption and hashing on a worker thread)', () => {
  const {fileContents, identity} = generateIdentity()

  for (const size of [
    0,
    1,
    CHUNK,
    CHUNK + 1,
    WORKER_BATCH - 1,
    WORKER_BATCH,
    WORKER_BATCH + 1,
    BATCH - 1,
    BATCH,
    BATCH + 1,
    3 * BATCH + 17,
  ]) {
    it(`seals ${size} bytes that decrypt to the input, and measures both sides`, async () => {
      const plaintext = randomBytes(size)
      const {output, result} = await seal(pieces(plaintext), [identity.publicKey])
      expect((await through(output, createDecryptStream([identity]))).equals(plaintext)).to.equal(true)
      expect(result).to.deep.equal({
        plaintext: {bytes: size, sha256: sha256(plaintext)},
        sealed: {bytes: output.length, sha256: sha256(output)},
      })
    })
  }

  it('gives the same kind of result on the calling thread (offThread: false)', async () => {
    for (const size of [0, CHUNK + 1, 2 * BATCH + 3]) {
      const plaintext = randomBytes(size)
      const {output, result} = await seal(pieces(plaintext), [identity.publicKey], {offThread: false})
      expect((await through(output, createDecryptStream([identity]))).equals(plaintext)).to.equal(true)
      expect(result).to.deep.equal({
        plaintext: {bytes: size, sha256: sha256(plaintext)},
        sealed: {bytes: output.length, sha256: sha256(output)},
      })
    }
  })

  it('writes what the stock age CLI decrypts', async function () {
    requireTool(this, 'age', 'age')
    const folder = mkdtempSync(join(tmpdir(), 'seal-'))
    const identityFile = join(folder, 'identity.txt')
    writeFileSync(identityFile, fileContents(new Date()), {mode: 0o600})
    // Sealed on this thread (within one batch), and on the worker.
    for (const size of [12_345, 2 * BATCH + 12_345]) {
      const plaintext = randomBytes(size)
      const {output} = await seal(pieces(plaintext), [identity.publicKey, generateIdentity().identity.publicKey])
      const decrypted = execFileSync('age', ['-d', '-i', identityFile], {input: output, maxBuffer: 1 << 26})
      expect(decrypted.equals(plaintext)).to.equal(true)
    }
  })

  it('leaves the plaintext hash out when asked to, and runs streams side by side', async () => {
    const [first, second, small] = [randomBytes(BATCH + 5), randomBytes(2 * BATCH + 7), randomBytes(1000)]
    const [a, b, c] = await Promise.all([
      seal(pieces(first), [identity.publicKey], {hashPlaintext: false}),
      seal(pieces(second), [identity.publicKey]),
      seal([small], [identity.publicKey], {hashPlaintext: false}),
    ])
    expect(a.result.plaintext).to.deep.equal({bytes: first.length, sha256: undefined})
    expect(c.result.plaintext).to.deep.equal({bytes: small.length, sha256: undefined})
    expect((await through(c.output, createDecryptStream([identity]))).equals(small)).to.equal(true)
    expect((await through(a.output, createDecryptStream([identity]))).equals(first)).to.equal(true)
    expect((await through(b.output, createDecryptStream([identity]))).equals(second)).to.equal(true)
  })

  it('gives lent chunks back once it holds no view of them, on the worker and on the calling thread', async () => {
    for (const offThread of [true, false]) {
      const plaintext = randomBytes(4 * BATCH + 4321)
      // An odd size: the source's chunks, the batches and age's chunks never line up.
      const source = lendingSource(plaintext, 100_000)
      const stream = createSealStream([identity.publicKey], {offThread})
      const sealed: Buffer[] = []
      await pipeline(
        source.stream,
        stream,
        new Writable({
          write(chunk: Buffer, _encoding, callback) {
            sealed.push(Buffer.from(chunk))
            giveBack(chunk)
            callback()
          },
        }),
      )
      expect((await through(Buffer.concat(sealed), createDecryptStream([identity]))).equals(plaintext)).to.equal(true)
      expect(source.reused(), offThread ? 'on the worker' : 'on the calling thread').to.be.greaterThan(20)
    }
  })

  it("frees node:crypto's output when the last stage gives it back, and never before", async () => {
    for (const givesBack of [false, true]) {
      const plaintext = randomBytes(3 * CHUNK + 99)
      const stream = createSealStream([identity.publicKey], {offThread: false})
      const chunks: Buffer[] = []
      const copies: Buffer[] = []
      await pipeline(
        Readable.from([plaintext]),
        stream,
        new Writable({
          write(chunk: Buffer, _encoding, callback) {
            chunks.push(chunk)
            copies.push(Buffer.from(chunk))
            if (givesBack) giveBack(chunk)
            callback()
          },
        }),
      )
      expect((await through(Buffer.concat(copies), createDecryptStream([identity]))).equals(plaintext)).to.equal(true)
      // A freed chunk's memory is gone: its view now has no bytes.
      const freed = copies.filter((_copy, index) => chunks[index].buffer.byteLength === 0)
      const ciphertexts = copies.filter((copy) => copy.length === CHUNK)
      expect(ciphertexts).to.have.length(3)
      // Each full age chunk's ciphertext at least (and, on some versions, the tags); nothing not given back.
      expect(freed, `given back: ${givesBack}`).to.include.members(givesBack ? ciphertexts : [])
      if (!givesBack) expect(freed).to.deep.equal([])
    }
  })

  it('decrypts into chunks that are freed when the last stage gives them back', async () => {
    const plaintext = randomBytes(3 * CHUNK + 99)
    const {output} = await seal([plaintext], [identity.publicKey], {offThread: false})
    const chunks: Buffer[] = []
    const copies: Buffer[] = []
    await pipeline(
      Readable.from([output]),
      createDecryptStream([identity]),
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          chunks.push(chunk)
          copies.push(Buffer.from(chunk))
          giveBack(chunk)
          callback()
        },
      }),
    )
    expect(Buffer.concat(copies).equals(plaintext)).to.equal(true)
    const freed = copies.filter((_copy, index) => chunks[index].buffer.byteLength === 0)
    // Every full chunk but the last, which is only known to be the last at the end.
    expect(freed.map((copy) => copy.length)).to.deep.equal([CHUNK, CHUNK, CHUNK])
  })

  it('takes in only a few batches while its reader does not read', async () => {
    let produced = 0
    const source = Readable.from(
      (function* () {
        for (let index = 0; index < 64; index++) {
          produced += BATCH
          yield randomBytes(BATCH)
        }
      })(),
    )
    const stream = createSealStream([identity.publicKey])
    source.pipe(stream)
    await delay(500)
    // Bounded: the batches with the worker, the sealed ones waiting to be read, and stream buffers.
    expect(produced).to.be.at.most(12 * BATCH)
    let sealed = 0
    for await (const chunk of stream) sealed += (chunk as Buffer).length
    expect(produced).to.equal(64 * BATCH)
    expect((await stream.result).sealed.bytes).to.equal(sealed)
  })

  it('fails with the source’s error, and the next stream still works', async () => {
    const failing = new Readable({
      read() {
        this.push(randomBytes(BATCH))
        this.destroy(new Error('disk went away'))
      },
    })
    const stream = createSealStream([identity.publicKey])
    const outcome = await pipeline(failing, stream, new Writable({write: (_chunk, _encoding, done) => done()})).catch(
      (error: Error) => error,
    )
    expect((outcome as Error).message).to.equal('disk went away')
    expect(await stream.result.catch((error: Error) => error)).to.be.instanceOf(Error)
    const {output} = await seal([Buffer.from('still here')], [identity.publicKey])
    expect((await through(output, createDecryptStream([identity]))).toString()).to.equal('still here')
  })
})
