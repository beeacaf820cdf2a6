import {expect} from 'chai'
import * as fc from 'fast-check'
import {randomBytes} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {gzipSync} from 'node:zlib'

import {looksCompressible, sampleEntropy} from '../../src/lib/compressibility.js'

describe('compressibility: which blobs go into zstd packs', () => {
  it('random, gzipped and encrypted-looking data are stored as they are, however short the sample', () => {
    // Short blobs are where counting under-reads entropy (see sampleEntropy): many sizes there, a few
    // large ones.
    fc.assert(
      fc.property(fc.integer({max: 4096, min: 512}), (size) => !looksCompressible(randomBytes(size))),
      {numRuns: 2000},
    )
    fc.assert(
      fc.property(fc.integer({max: 2_000_000, min: 4096}), (size) => !looksCompressible(randomBytes(size))),
      {numRuns: 20},
    )
    const source = readFileSync(new URL('../../src/lib/compressibility.ts', import.meta.url))
    expect(looksCompressible(gzipSync(Buffer.concat([source, source, source])))).to.equal(false)
  })

  it('text, code, JSON, zeros and repeated structures are compressed', () => {
    expect(looksCompressible(readFileSync(new URL('../../src/lib/compressibility.ts', import.meta.url)))).to.equal(true)
    expect(looksCompressible(Buffer.alloc(1 << 20))).to.equal(true)
    const rows = Array.from({length: 5000}, (_, id) => ({
      email: `user${id}@example.com`,
      id,
      joined: 1_700_000_000 + id,
    }))
    expect(looksCompressible(Buffer.from(JSON.stringify(rows)))).to.equal(true)
    fc.assert(
      fc.property(fc.string({maxLength: 3000, minLength: 600, unit: 'grapheme-ascii'}), (value) =>
        looksCompressible(Buffer.from(value)),
      ),
      {numRuns: 60},
    )
  })

  it('samples the middle of a blob, past a file header', () => {
    // A photo: a few KiB of low-entropy header, then compressed data.
    const photo = Buffer.concat([Buffer.alloc(6000, 0x20), randomBytes(200_000)])
    expect(looksCompressible(photo)).to.equal(false)
    expect(sampleEntropy(randomBytes(1 << 20))).to.be.within(7.95, 8.05)
    expect(sampleEntropy(randomBytes(512))).to.be.within(7.6, 8.2)
    expect(sampleEntropy(Buffer.alloc(4096))).to.equal(0)
  })

  it('tiny blobs are always tried: the probe would be guessing', () => {
    expect(looksCompressible(randomBytes(100))).to.equal(true)
  })
})
