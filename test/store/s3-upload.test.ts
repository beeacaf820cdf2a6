import {expect} from 'chai'

import {FIRST_PART_SIZE, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, partSizeFor} from '../../src/store/s3-upload.js'

const MiB = 1024 ** 2
const TiB = 1024 ** 4

/** How many parts a stream of `bytes` takes under the schedule. */
function partsFor(bytes: number): {largest: number; parts: number} {
  let remaining = bytes
  let parts = 0
  let largest = 0
  while (remaining > 0) {
    parts++
    const size = partSizeFor(parts)
    largest = Math.max(largest, Math.min(size, remaining))
    remaining -= size
  }

  return {largest, parts}
}

describe('S3 part-size schedule', () => {
  it('fits 5 TiB, the largest S3 object, into at most 10,000 parts', () => {
    const {largest, parts} = partsFor(5 * TiB)
    expect(parts).to.be.at.most(MAX_PARTS)
    expect(largest).to.be.at.most(MAX_PART_SIZE)
  })

  it('keeps every part within S3 limits and never shrinks', () => {
    for (let part = 1; part <= MAX_PARTS; part++) {
      const size = partSizeFor(part)
      expect(size).to.be.within(MIN_PART_SIZE, MAX_PART_SIZE)
      if (part > 1) expect(size).to.be.at.least(partSizeFor(part - 1))
    }
  })

  it('uses small parts for small streams', () => {
    expect(partsFor(MiB)).to.deep.equal({largest: MiB, parts: 1})
    expect(partsFor(100 * MiB)).to.deep.equal({largest: FIRST_PART_SIZE, parts: 20})
    expect(partsFor(1024 * MiB).largest).to.equal(FIRST_PART_SIZE)
    // 10 GB, the top of the range where memory must stay flat, still uses the smallest parts.
    expect(partsFor(10 * 1000 ** 3).largest).to.equal(FIRST_PART_SIZE)
    expect(partsFor(11 * 1024 * MiB).largest).to.equal(2 * FIRST_PART_SIZE)
  })
})
