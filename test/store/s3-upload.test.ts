import type {S3Client} from '@aws-sdk/client-s3'

import {expect} from 'chai'
import * as fc from 'fast-check'
import {randomBytes} from 'node:crypto'
import {PassThrough, Readable} from 'node:stream'

import {drainedOrClosed} from '../../src/lib/stream-close.js'
import {
  FIRST_PART_SIZE,
  MAX_PART_SIZE,
  MAX_PARTS,
  MIN_PART_SIZE,
  PartBudget,
  partSizeFor,
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

interface RecordedPart {
  buffer: ArrayBuffer
  bytes: Buffer
  key: string
  part: number
}

/**
 * A client that keeps each part's bytes, as S3 would, and which ArrayBuffer each body was sent from.
 * `refuse` picks the parts (by key and part number) it fails. `answer` is awaited before each part is
 * answered (by default at once); a request whose signal fires is cut short, as the SDK's is.
 * `onPart` sees each part as it is sent.
 */
function recordingClient(
  options: {answer?: () => Promise<void>; onPart?: () => void; refuse?: (key: string, part: number) => boolean} = {},
) {
  const bodies: RecordedPart[] = []
  const refused: ArrayBuffer[] = []
  const client = {
    async send(
      command: {constructor: {name: string}; input: {Body?: Buffer; Key?: string; PartNumber?: number}},
      sendOptions: {abortSignal?: AbortSignal} = {},
    ) {
      const {Body, Key, PartNumber} = command.input
      switch (command.constructor.name) {
        case 'CreateMultipartUploadCommand': {
          return {UploadId: `upload of ${Key}`}
        }

        case 'PutObjectCommand':
        case 'UploadPartCommand': {
          options.onPart?.()
          if (PartNumber !== undefined && options.refuse?.(Key!, PartNumber)) {
            refused.push(Body!.buffer as ArrayBuffer)
            throw new Error('part refused')
          }

          const answered = options.answer?.() ?? Promise.resolve()
          await (sendOptions.abortSignal === undefined
            ? answered
            : Promise.race([answered, rejectOn(sendOptions.abortSignal)]))
          const buffer = Body!.buffer as ArrayBuffer
          if (refused.includes(buffer)) throw new Error('the buffer of a refused part was sent again')
          bodies.push({buffer, bytes: Buffer.from(Body!), key: Key!, part: PartNumber ?? 0})
          return {ETag: `"${PartNumber}"`}
        }

        default: {
          return {}
        }
      }
    },
  }
  return {bodies, client: client as unknown as S3Client, refused}
}

function rejectOn(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason)
    signal.addEventListener('abort', () => reject(signal.reason), {once: true})
  })
}

/**
 * An upload's object, from the parts it sent: by part number, since parts in flight at once may reach
 * the client in either order.
 */
function inPartOrder(bodies: Array<{bytes: Buffer; part: number}>): Buffer {
  return Buffer.concat(bodies.toSorted((a, b) => a.part - b.part).map(({bytes}) => bytes))
}

function upload(
  client: S3Client,
  source: Buffer | Readable,
  parts: PartBudget,
  options: {key?: string; signal?: AbortSignal} = {},
) {
  return uploadStream({
    bucket: 'b',
    client,
    concurrency: 2,
    key: options.key ?? 'k',
    parts,
    settings: {},
    signal: options.signal,
    source: Buffer.isBuffer(source)
      ? Readable.from([source.subarray(0, source.length / 2), source.subarray(source.length / 2)])
      : source,
  })
}

/**
 * Feeds `objects` to as many uploads in turn, a chunk each time and waiting for each write to be
 * taken, as a packed backup's one writer feeds its open packs: an upload that waits for a buffer
 * stops the writer, and with it every other upload's source. An upload that failed is skipped.
 * `written` hears of each chunk written.
 */
async function feedInTurn(
  objects: Buffer[],
  start: (index: number, source: PassThrough) => Promise<unknown>,
  options: {chunk?: number; written?: (index: number, chunks: number) => void} = {},
): Promise<Array<PromiseSettledResult<unknown>>> {
  const chunk = options.chunk ?? MiB
  const sources = objects.map(() => new PassThrough({highWaterMark: MiB}))
  const uploads = sources.map(async (source, index) => start(index, source))
  // Settled together at the end: one that fails while the others are fed is not unhandled meanwhile.
  for (const upload of uploads) upload.catch(() => {})
  const longest = Math.max(...objects.map((object) => object.length))
  for (let chunks = 1, offset = 0; offset < longest; offset += chunk, chunks++) {
    for (const [index, source] of sources.entries()) {
      if (offset >= objects[index].length || source.destroyed) continue
      if (!source.write(objects[index].subarray(offset, offset + chunk))) await drainedOrClosed(source)

      options.written?.(index, chunks)
    }
  }

  for (const source of sources) source.end()
  return Promise.allSettled(uploads)
}

/** Answers after a few turns of the event loop, so that parts of several uploads are in flight at once. */
async function answerLater(): Promise<void> {
  for (let turn = 0; turn < 5; turn++)
    await new Promise((resolve) => {
      setImmediate(resolve)
    })
}

describe('S3 part buffers', () => {
  it("go from one upload to the next of a store, and each part is still the stream's bytes", async () => {
    const {bodies, client} = recordingClient()
    const parts = new PartBudget()
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
    expect(parts.inUse).to.equal(0)
  })

  it('never sends the buffer of a refused part again, and counts it back: a request cut short may still read its body', async () => {
    const failing = recordingClient({refuse: (_, part) => part === 3})
    const parts = new PartBudget()
    const error = await upload(failing.client, randomBytes(3.5 * FIRST_PART_SIZE), parts).catch(
      (error_: unknown) => error_,
    )
    expect(error).to.be.instanceOf(Error)
    expect(failing.refused).to.have.length(1)
    expect(parts.inUse).to.equal(0)
    const {bodies, client} = recordingClient()
    const object = randomBytes(3.5 * FIRST_PART_SIZE)
    await upload(client, object, parts)
    expect(bodies.filter(({buffer}) => buffer === failing.refused[0])).to.have.length(0)
    expect(inPartOrder(bodies).equals(object)).to.equal(true)
  })

  it('hold at most the budget and one for each other upload, when more uploads than it are fed in turn by one writer', async function () {
    // A deadlock would otherwise hold the suite for mocha's whole timeout; this takes about a second.
    this.timeout(120_000)
    const {bodies, client} = recordingClient({answer: answerLater})
    // Three uploads and a budget of two: were an upload to wait for a buffer while the others hold
    // theirs, waiting on the writer it stops, none would end.
    const budget = 2
    const parts = new PartBudget(budget)
    let peak = 0
    const watched = {
      send(...args: Parameters<S3Client['send']>) {
        peak = Math.max(peak, parts.inUse)
        return client.send(...args)
      },
    } as unknown as S3Client
    const objects = [0, 1, 2].map(() => randomBytes(3.5 * FIRST_PART_SIZE))
    const settled = await feedInTurn(objects, (index, source) => upload(watched, source, parts, {key: `pack-${index}`}))
    expect(settled.map(({status}) => status)).to.deep.equal(['fulfilled', 'fulfilled', 'fulfilled'])
    for (const [index, object] of objects.entries()) {
      expect(inPartOrder(bodies.filter(({key}) => key === `pack-${index}`)).equals(object)).to.equal(true)
    }

    // Without the budget, three uploads of two buffers each hold six.
    expect(peak).to.be.at.most(budget + objects.length - 1)
    expect(parts.inUse).to.equal(0)
  })

  it('lets an upload that waits for a buffer end when its signal fires, and counts its buffers back', async () => {
    const stopped = new AbortController()
    // Parts in flight are answered only when cut short: the upload's next buffer never comes back.
    const {client} = recordingClient({answer: () => new Promise(() => {})})
    const parts = new PartBudget(1)
    const source = new PassThrough()
    const waiting = upload(client, source, parts, {signal: stopped.signal})
    source.write(randomBytes(FIRST_PART_SIZE + 1))
    while (parts.inUse < 1)
      await new Promise((resolve) => {
        setImmediate(resolve)
      })
    stopped.abort(new Error('stopped by the user'))
    const error = await waiting.catch((error_: unknown) => error_)
    expect((error as Error).message).to.equal('stopped by the user')
    expect(parts.inUse).to.equal(0)
  })
})

describe('S3 part budget, property', () => {
  // One pool of bytes that every object is cut from: each object is checked under its own key.
  const pool = randomBytes(2.5 * FIRST_PART_SIZE + 1)
  const size = fc.oneof(
    fc.constantFrom(0, 1, FIRST_PART_SIZE - 1, FIRST_PART_SIZE, FIRST_PART_SIZE + 1, 2 * FIRST_PART_SIZE),
    fc.integer({max: 2.5 * FIRST_PART_SIZE, min: 0}),
  )
  const uploadCase = fc.record({
    /** Aborted by its caller after this many of its chunks were written, if it has more. */
    abortAfter: fc.option(fc.integer({max: 6, min: 1}), {nil: undefined}),
    offset: fc.nat(FIRST_PART_SIZE),
    refusePart: fc.option(fc.integer({max: 3, min: 1}), {nil: undefined}),
    size,
  })

  it('under any sizes, refusals, cancels and answer orders, each upload is its object or fails, and every buffer comes back', async function () {
    // A deadlock would otherwise hold the suite for mocha's whole timeout.
    this.timeout(300_000)
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          budget: fc.integer({max: 4, min: 1}),
          chunk: fc.constantFrom(64 * 1024, MiB, 3 * MiB),
          turns: fc.array(fc.nat(4), {maxLength: 16, minLength: 1}),
          uploads: fc.array(uploadCase, {maxLength: 4, minLength: 1}),
        }),
        async ({budget, chunk, turns, uploads}) => {
          const objects = uploads.map(({offset, size}) =>
            pool.subarray(Math.min(offset, pool.length - size)).subarray(0, size),
          )
          const parts = new PartBudget(budget)
          let peak = 0
          let answers = 0
          const {bodies, client} = recordingClient({
            async answer() {
              for (let turn = turns[answers++ % turns.length]; turn > 0; turn--) await new Promise(setImmediate)
            },
            onPart() {
              peak = Math.max(peak, parts.inUse)
            },
            refuse: (key, part) => uploads[Number(key)].refusePart === part,
          })
          const stops = uploads.map(() => new AbortController())
          const settled = await feedInTurn(
            objects,
            (index, source) => upload(client, source, parts, {key: String(index), signal: stops[index].signal}),
            {
              chunk,
              written(index, chunks) {
                if (chunks === uploads[index].abortAfter && chunks * chunk < objects[index].length) {
                  stops[index].abort(new Error('stopped'))
                }
              },
            },
          )

          for (const [index, {abortAfter, refusePart}] of uploads.entries()) {
            const object = objects[index]
            const partCount = object.length < FIRST_PART_SIZE ? 0 : Math.ceil(object.length / FIRST_PART_SIZE)
            const refused = refusePart !== undefined && refusePart <= partCount
            const stopped = abortAfter !== undefined && abortAfter * chunk < object.length
            if (refused || stopped) {
              expect(settled[index].status, `upload ${index}`).to.equal('rejected')
            } else {
              expect(settled[index].status, `upload ${index}`).to.equal('fulfilled')
              const sent = bodies.filter(({key}) => key === String(index))
              expect(inPartOrder(sent).equals(object), `object ${index}`).to.equal(true)
            }
          }

          expect(parts.inUse, 'buffers still held').to.equal(0)
          expect(peak, 'buffers held at once').to.be.at.most(budget + uploads.length - 1)
        },
      ),
      {numRuns: 40},
    )
  })
})
