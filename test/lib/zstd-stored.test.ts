import {expect} from 'chai'
import * as fc from 'fast-check'
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {encodeTarHeader} from '../../src/archive/tar-header.js'
import {StoredFrameDecoder, StoredFramingError} from '../../src/lib/zstd-stored-decoder.js'
import {
  MAX_BLOCK,
  rawBlockHeader,
  STORED_MAGIC,
  STORED_MARKER,
  storedBlocksBound,
  storedFrameStart,
  writeStoredBlocks,
  zeroBlocks,
} from '../../src/lib/zstd-stored.js'
import {isZstdDataError} from '../../src/lib/zstd.js'
import {lendingSource} from '../helpers/lending-source.js'
import {requireTool} from '../helpers/tools.js'

/** Decodes `stream` with StoredFrameDecoder, fed in pieces of the given sizes (cycled). */
async function decode(stream: Buffer, pieceSizes: readonly number[] = [stream.length || 1]): Promise<Buffer> {
  const pieces: Buffer[] = []
  for (let at = 0, index = 0; at < stream.length; index++) {
    const size = Math.max(1, pieceSizes[index % pieceSizes.length])
    pieces.push(Buffer.from(stream.subarray(at, at + size)))
    at += size
  }

  const out: Buffer[] = []
  await pipeline(
    Readable.from(pieces),
    new StoredFrameDecoder(),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        out.push(Buffer.from(chunk))
        callback()
      },
    }),
  )
  return Buffer.concat(out)
}

/** `content` in stored framing as the pack writer writes it: small parts through writeStoredBlocks, large ones raw. */
function frame(parts: readonly Buffer[]): Buffer {
  const blocks: Buffer[] = [storedFrameStart()]
  for (const part of parts) {
    if (part.length > 4096) {
      for (let at = 0; at < part.length; at += MAX_BLOCK) {
        const piece = part.subarray(at, at + MAX_BLOCK)
        blocks.push(rawBlockHeader(piece.length), piece)
      }
    } else {
      const encoded = Buffer.alloc(storedBlocksBound(part.length))
      const end = writeStoredBlocks(part, encoded, 0)
      expect(end).to.be.at.most(storedBlocksBound(part.length))
      blocks.push(encoded.subarray(0, end))
    }
  }

  blocks.push(zeroBlocks(0, true))
  return Buffer.concat(blocks)
}

function stockDecode(stream: Buffer): Buffer {
  return execFileSync('zstd', ['-dcq'], {input: stream, maxBuffer: 1 << 30})
}

/**
 * Checks each stream against its content with the stock zstd, in one run for all of them: zstd reads
 * frames one after another, so the streams back to back decode to the contents back to back. A start
 * of zstd for each stream, forked from a test worker of hundreds of MiB, cost more than the test's
 * own work. Where they differ, each stream is decoded alone, to name the first that is wrong.
 */
function expectStockDecodes(cases: Array<{content: Buffer; stream: Buffer}>): void {
  let together: Buffer | undefined
  try {
    together = stockDecode(Buffer.concat(cases.map(({stream}) => stream)))
  } catch {
    // One of them is refused: found below.
  }

  if (together?.equals(Buffer.concat(cases.map(({content}) => content)))) return
  for (const [index, {content, stream}] of cases.entries()) {
    expect(
      stockDecode(stream).equals(content),
      `stream ${index} of ${cases.length}: ${stream.toString('hex')}`,
    ).to.equal(true)
  }

  expect.fail('the streams decode one at a time, but not back to back')
}

/** Bytes with runs of zeros of every length around MIN_ZERO_RUN and MAX_BLOCK. */
const zeroRuns = fc
  .array(
    fc.oneof(
      fc.uint8Array({maxLength: 300}),
      fc.integer({max: 40, min: 0}).map((length) => new Uint8Array(length)),
      fc
        .constantFrom(MAX_BLOCK - 1, MAX_BLOCK, MAX_BLOCK + 1, 2 * MAX_BLOCK + 5)
        .map((length) => new Uint8Array(length)),
    ),
    {maxLength: 12},
  )
  .map((parts) => Buffer.concat(parts))

/**
 * Frames from zstd's published decompression vectors (tests/golden-decompression in facebook/zstd,
 * at 2dddf0905619b70c25faeca7f1a39601dc97616f), given here as their bytes.
 */
const GOLDEN = {
  /** One empty compressed block. */
  emptyBlock: Buffer.from('28b52ffd00001500000000', 'hex'),
  /** Eight RLE blocks of 128 KiB zeros, with a content size and a checksum: 1 MiB of zeros. */
  rleFirstBlock: Buffer.from(
    '28b52ffda4000010000200100002001000020010000200100002001000020010000200100003001000f13e16e1',
    'hex',
  ),
  /** A compressed block of literals and no sequences. */
  zeroSeq2B: Buffer.from('28b52ffd00008500006848656c6c6f20576f726c64210a8000', 'hex'),
}

describe('zstd stored framing: raw and RLE blocks, read without a decompressor', () => {
  before(function () {
    requireTool(this, 'zstd', 'zstd')
  })

  it('what it writes, the stock zstd reads; what it reads back is the same bytes, however the stream is cut', async () => {
    const written: Array<{content: Buffer; stream: Buffer}> = []
    await fc.assert(
      fc.asyncProperty(
        fc.array(zeroRuns, {maxLength: 4}),
        fc.array(fc.integer({max: 70_000, min: 1}), {maxLength: 5, minLength: 1}),
        async (parts, pieceSizes) => {
          const stream = frame(parts)
          expect(stream.subarray(0, 4).equals(STORED_MAGIC)).to.equal(true)
          const content = Buffer.concat(parts)
          written.push({content, stream})
          expect((await decode(stream, pieceSizes)).equals(content)).to.equal(true)
        },
      ),
      {numRuns: 60},
    )
    expect(written).to.have.length.greaterThan(0)
    expectStockDecodes(written)
  })

  it('a tar header of a blob shrinks from 512 bytes to under 200, and its padding to 4', () => {
    const header = encodeTarHeader({mode: 0o10_0600, mtime: new Date(0), path: 'ab'.repeat(32), size: 5, type: 'File'})
    const encoded = Buffer.alloc(storedBlocksBound(header.length))
    expect(writeStoredBlocks(header, encoded, 0)).to.be.below(200)
    expect(zeroBlocks(511).length).to.equal(4)
    expect(zeroBlocks(3 * MAX_BLOCK + 1, true).length).to.equal(16)
  })

  it('reads what the stock zstd writes when nothing compresses: raw blocks, with a content size and a checksum', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'divio-zstd-stored-'))
    try {
      const data = randomBytes(3 * MAX_BLOCK + 17)
      const file = join(folder, 'random')
      writeFileSync(file, data)
      // From a file, zstd records the content size; --check adds the checksum.
      const stock = execFileSync('zstd', ['-1', '-q', '-c', '--check', file])
      expect(stock[4] & 0b1100_0100, 'content size and checksum flags').to.not.equal(0)
      expect((await decode(stock, [1000, 3])).equals(data)).to.equal(true)
    } finally {
      rmSync(folder, {force: true, recursive: true})
    }
  })

  it("reads zstd's published RLE vector, and refuses its compressed ones with an error zstd's readers know", async () => {
    const decoded = await decode(GOLDEN.rleFirstBlock, [5])
    expect(decoded.equals(Buffer.alloc(1024 * 1024))).to.equal(true)
    for (const vector of [GOLDEN.emptyBlock, GOLDEN.zeroSeq2B]) {
      const error = await decode(vector).catch((error_: unknown) => error_)
      expect(error).to.be.instanceOf(StoredFramingError)
      expect(String(error)).to.include('compressed block')
      expect(isZstdDataError(error)).to.equal(true)
    }
  })

  it('refuses a compressed stream, bytes that are not zstd, and every cut short stream', async () => {
    const text = Buffer.from('SELECT 1;\n'.repeat(5000))
    const compressed = execFileSync('zstd', ['-3', '-q', '-c'], {input: text})
    expect(String(await decode(compressed).catch(String))).to.include('compressed block')
    expect(String(await decode(Buffer.from('not zstd at all')).catch(String))).to.include('not a zstd frame')
    expect(String(await decode(STORED_MARKER).catch(String))).to.include('no zstd frame')

    const stream = frame([Buffer.from('hello'), Buffer.alloc(600), randomBytes(5000)])
    for (let length = 1; length < stream.length; length++) {
      const outcome = await decode(stream.subarray(0, length)).catch((error: unknown) => error)
      if (Buffer.isBuffer(outcome)) expect.fail(`a stream cut to ${length} of ${stream.length} bytes decoded`)
      expect(outcome).to.be.instanceOf(StoredFramingError)
    }
  })

  it('damaged anywhere, a stream decodes to some bytes or fails with a StoredFramingError, never anything else', async () => {
    const stream = frame([Buffer.from('hello'), Buffer.alloc(600), randomBytes(3000), Buffer.alloc(MAX_BLOCK + 7)])
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({at: fc.nat(stream.length - 1), byte: fc.integer({max: 255, min: 0})}), {
          maxLength: 4,
          minLength: 1,
        }),
        async (edits) => {
          const damaged = Buffer.from(stream)
          for (const {at, byte} of edits) damaged[at] = byte
          const outcome = await decode(damaged, [777]).catch((error: unknown) => error)
          if (!Buffer.isBuffer(outcome)) expect(outcome).to.be.instanceOf(StoredFramingError)
        },
      ),
      {numRuns: 300},
    )
  })

  it('checks a content size in the frame header against what the frame holds', async () => {
    // A window of 128 KiB and a 2-byte content size of 300 (stored as 300 - 256), then one raw block of 5 bytes.
    const header = Buffer.from('28b52ffd40382c00', 'hex')
    const block = Buffer.concat([rawBlockHeader(5), Buffer.from('12345')])
    block[0] |= 1
    const outcome = await decode(Buffer.concat([header, block])).catch(String)
    expect(String(outcome)).to.include('its header says 300')
  })

  it('gives its input back as it copies it out, and lends its output', async () => {
    const content = randomBytes(4 * 1024 * 1024)
    const source = lendingSource(frame([content]), 64 * 1024)
    const out: Buffer[] = []
    await pipeline(
      source.stream,
      new StoredFrameDecoder(),
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          out.push(Buffer.from(chunk))
          callback()
        },
      }),
    )
    expect(Buffer.concat(out).equals(content)).to.equal(true)
    expect(source.reused()).to.be.greaterThan(32)
  })
})
