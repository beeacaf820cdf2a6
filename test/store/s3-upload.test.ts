import type {S3Client} from '@aws-sdk/client-s3'

import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {Readable} from 'node:stream'

import {
  FIRST_PART_SIZE,
  MAX_PART_SIZE,
  MAX_PARTS,
  MIN_PART_SIZE,
  partSizeFor,
  SharedParts,
  uploadStream,
} from '../../src/store/s3-upload.js'

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

/**
 * A client that answers every request at once and keeps each part's bytes, as S3 would, and which
 * ArrayBuffer each body was sent from. `failPart` fails that part number of every upload.
 */
function recordingClient(options: {failPart?: number} = {}) {
  const bodies: Array<{buffer: ArrayBuffer; bytes: Buffer; part: number}> = []
  const client = {
    async send(command: {constructor: {name: string}; input: {Body?: Buffer; PartNumber?: number}}) {
      const {Body, PartNumber} = command.input
      switch (command.constructor.name) {
        case 'CreateMultipartUploadCommand': {
          return {UploadId: 'upload'}
        }

        case 'PutObjectCommand':
        case 'UploadPartCommand': {
          if (PartNumber !== undefined && PartNumber === options.failPart) throw new Error('part refused')
          bodies.push({buffer: Body!.buffer as ArrayBuffer, bytes: Buffer.from(Body!), part: PartNumber ?? 0})
          return {ETag: `"${PartNumber}"`}
        }

        default: {
          return {}
        }
      }
    },
  }
  return {bodies, client: client as unknown as S3Client}
}

/**
 * An upload's object, from the parts it sent: by part number, since parts in flight at once may reach
 * the client in either order.
 */
function inPartOrder(bodies: Array<{bytes: Buffer; part: number}>): Buffer {
  return Buffer.concat(bodies.toSorted((a, b) => a.part - b.part).map(({bytes}) => bytes))
}

function upload(client: S3Client, bytes: Buffer, parts: SharedParts) {
  return uploadStream({
    bucket: 'b',
    client,
    concurrency: 2,
    key: 'k',
    parts,
    settings: {},
    source: Readable.from([bytes.subarray(0, bytes.length / 2), bytes.subarray(bytes.length / 2)]),
  })
}

describe('S3 part buffers', () => {
  it("pass from one upload to the next of a store, and each part is still the stream's bytes", async () => {
    const {bodies, client} = recordingClient()
    const parts = new SharedParts()
    // Three and a half parts, as a pack of 16 MiB is.
    const first = randomBytes(3.5 * FIRST_PART_SIZE)
    const second = randomBytes(3.5 * FIRST_PART_SIZE)
    await upload(client, first, parts)
    const used = new Set(bodies.map(({buffer}) => buffer))
    await upload(client, second, parts)
    const again = bodies.slice(4).filter(({buffer}) => used.has(buffer))
    expect(again.length, 'buffers of the first upload sent again by the second').to.be.at.least(2)
    expect(inPartOrder(bodies.slice(0, 4)).equals(first)).to.equal(true)
    expect(inPartOrder(bodies.slice(4)).equals(second)).to.equal(true)
  })

  it('keeps nothing from an upload that failed: a request cut short may still read its body', async () => {
    const failing = recordingClient({failPart: 3})
    const parts = new SharedParts()
    const error = await upload(failing.client, randomBytes(3.5 * FIRST_PART_SIZE), parts).catch(
      (error_: unknown) => error_,
    )
    expect(error).to.be.instanceOf(Error)
    const {bodies, client} = recordingClient()
    await upload(client, randomBytes(3.5 * FIRST_PART_SIZE), parts)
    const before = new Set(failing.bodies.map(({buffer}) => buffer))
    expect(bodies.filter(({buffer}) => before.has(buffer))).to.have.length(0)
  })
})
