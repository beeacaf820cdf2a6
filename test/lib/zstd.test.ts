import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {once} from 'node:events'
import {PassThrough, Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {isLent} from '../../src/lib/buffer-loan.js'
import {through} from '../../src/lib/process.js'
import {isZstdDataError, zstdCompressor, zstdDecompressor, zstdImplementations} from '../../src/lib/zstd.js'
import {lendingSource} from '../helpers/lending-source.js'
import {isAlive, untilGone} from '../helpers/processes.js'
import {requireTool} from '../helpers/tools.js'

async function run(stage: () => NodeJS.ReadWriteStream, input: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = []
  // In uneven pieces, as a stream delivers them.
  const pieces = [input.subarray(0, 1), input.subarray(1, 70_001), input.subarray(70_001)]
  await pipeline(
    Readable.from(pieces),
    stage(),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk)
        callback()
      },
    }),
  )
  return Buffer.concat(chunks)
}

const text = Buffer.from('INSERT INTO auth_user VALUES (1, "ada", "ada@example.com");\n'.repeat(40_000))
const inputs = {empty: Buffer.alloc(0), random: randomBytes(3 * 1024 * 1024 + 17), text}
// Every implementation this process has: the program (CI installs it), node:zlib's on 22.15 and later (the lanes).
const implementations = zstdImplementations()

for (const implementation of implementations) {
  describe(`zstd through ${implementation}: standard frames, both ways with the stock zstd`, function () {
    before(function () {
      requireTool(this, 'zstd', 'zstd')
    })

    for (const [name, input] of Object.entries(inputs)) {
      it(`${name}: what it writes, zstd -d reads, with a checksum; what zstd writes, it reads`, async () => {
        const compressed = await run(() => zstdCompressor(3, implementation), input)
        expect(compressed.subarray(0, 4).toString('hex')).to.equal('28b52ffd')
        expect(execFileSync('zstd', ['-dcq'], {input: compressed, maxBuffer: 1 << 30}).equals(input)).to.equal(true)
        // Frame header descriptor, bit 2: the content checksum is present.
        expect(compressed[4] & 0b100).to.equal(0b100)
        if (name === 'text') expect(compressed.length * 50).to.be.below(input.length)
        const stock = execFileSync('zstd', ['-cq', '-19'], {input, maxBuffer: 1 << 30})
        expect((await run(() => zstdDecompressor(implementation), stock)).equals(input)).to.equal(true)
      })
    }

    it('a damaged frame is an error, never other bytes', async () => {
      const compressed = await run(() => zstdCompressor(3, implementation), text)
      for (const offset of [5, Math.floor(compressed.length / 2), compressed.length - 2]) {
        const damaged = Buffer.from(compressed)
        damaged[offset] ^= 0x40
        const outcome = await run(() => zstdDecompressor(implementation), damaged).catch((error: unknown) => error)
        if (Buffer.isBuffer(outcome)) expect.fail(`offset ${offset}: decompressed to ${outcome.length} bytes`)
        if (implementation === 'node:zlib') expect(isZstdDataError(outcome), String(outcome)).to.equal(true)
      }
    })
  })
}

describe('a program as a stream stage', () => {
  it('gives lent chunks back once the pipe has taken them, and the program sees every byte as it came', async function () {
    requireTool(this, 'sha256sum', 'coreutils')
    const data = randomBytes(8 * 1024 * 1024 + 5)
    const source = lendingSource(data, 128 * 1024)
    const chunks: Buffer[] = []
    await pipeline(
      source.stream,
      through('sha256sum', []),
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          chunks.push(chunk)
          callback()
        },
      }),
    )
    expect(Buffer.concat(chunks).toString().split(' ')[0]).to.equal(createHash('sha256').update(data).digest('hex'))
    expect(source.reused()).to.be.greaterThan(32)
  })

  it("passes on each chunk of the program's output as it was read, for its last reader to free, never joined into a copy", async function () {
    requireTool(this, 'cat', 'coreutils')
    const data = randomBytes(4 * 1024 * 1024 + 7)
    const chunks: Buffer[] = []
    await pipeline(
      Readable.from([data.subarray(0, 1024 * 1024), data.subarray(1024 * 1024)]),
      through('cat', []),
      new Writable({
        // A slow reader: the program's output piles up in between, as it does in a busy backup.
        highWaterMark: 1,
        write(chunk: Buffer, _encoding, callback) {
          chunks.push(chunk)
          setImmediate(callback)
        },
      }),
    )
    expect(Buffer.concat(chunks).equals(data)).to.equal(true)
    // A pipe is read 64 KiB at a time at most: a larger chunk is buffered ones joined, and so is one
    // that is a whole buffer of its own but not lent. A read that Node.js keeps as a view of its larger
    // read buffer (Node.js 24 does, under load) is passed on as it came, and not lent, since only a
    // whole buffer can be freed.
    const joined = chunks.filter(
      (chunk) => chunk.length > 64 * 1024 || (!isLent(chunk) && chunk.byteLength === chunk.buffer.byteLength),
    )
    expect(joined.length, `${joined.length} of ${chunks.length} chunks joined`).to.equal(0)
    expect(chunks.filter((chunk) => isLent(chunk)).length, 'chunks lent').to.be.greaterThan(chunks.length / 2)
  })

  it('ends with its reader: a stage destroyed mid-stream leaves no process behind to hold the CLI open', async () => {
    // The shell prints its pid, then becomes cat, which would wait for input forever.
    const stage = through('sh', ['-c', 'echo $$; exec cat'])
    const input = new PassThrough()
    const output = new PassThrough()
    pipeline(input, stage, output).catch(() => {})
    const [first] = (await once(output, 'data')) as [Buffer]
    const pid = Number.parseInt(first.toString(), 10)
    expect(pid).to.be.greaterThan(1)
    // Back-pressure all the way: the output is not read, the program blocks, its input fills.
    output.pause()
    for (let chunk = 0; chunk < 64 && input.write(Buffer.alloc(64 * 1024)); chunk++);
    // As a reader that stops early does: the last stream goes, the pipeline destroys the rest.
    output.destroy()
    await untilGone(pid)
    expect(isAlive(pid)).to.equal(false)
  })
})
