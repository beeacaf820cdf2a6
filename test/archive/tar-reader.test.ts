import {expect} from 'chai'
import * as fc from 'fast-check'
import {randomBytes} from 'node:crypto'
import {PassThrough, Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {setImmediate as setImmediatePromise} from 'node:timers/promises'
import {HeaderData, Pax} from 'tar'

import {encodeTarHeader} from '../../src/archive/tar-header.js'
import {readTar, TarMember} from '../../src/archive/tar-reader.js'
import {lendingSource} from '../helpers/lending-source.js'

function archive(members: {data: Buffer; path: string}[]): Buffer {
  const parts: Buffer[] = []
  for (const {data, path} of members) {
    parts.push(
      encodeTarHeader({mode: 0o10_0644, mtime: new Date(0), path, size: data.length, type: 'File'}),
      data,
      Buffer.alloc((512 - (data.length % 512)) % 512),
    )
  }

  parts.push(Buffer.alloc(1024))
  return Buffer.concat(parts)
}

/** Gives `bytes` up to `cut`, then fails the way a decryption or a connection fails half-way. */
function failingAt(bytes: Buffer, cut: number): Readable {
  let pushed = false
  return new Readable({
    read() {
      if (pushed) return
      pushed = true
      this.push(bytes.subarray(0, cut))
      setImmediate(() => this.destroy(new Error(`source failed at byte ${cut}`)))
    },
  })
}

/** `bytes` in chunks of `size` bytes, as a source of any chunking would give them. */
function inChunks(bytes: Buffer, size: number): Readable {
  const chunks: Buffer[] = []
  for (let offset = 0; offset < bytes.length; offset += size) chunks.push(bytes.subarray(offset, offset + size))
  return Readable.from(chunks)
}

/** A member's contents, and how a consumer reads them. */
const memberRead = fc.record({
  data: fc.uint8Array({maxLength: 3000}).map((bytes) => Buffer.from(bytes)),
  read: fc.constantFrom('body', 'contents', 'eachChunk', 'skip'),
})

describe('tar reader', () => {
  it('gives every member whole, by body, by contents or skipped, in any mix and any chunking (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(memberRead, {maxLength: 8}),
        fc.integer({max: 1500, min: 1}),
        async (members, chunk) => {
          const bytes = archive(members.map(({data}, index) => ({data, path: `m${index}`})))
          let index = 0
          for await (const read of readTar(inChunks(bytes, chunk))) {
            const {data, read: how} = members[index++]
            expect(read.size).to.equal(data.length)
            if (how === 'contents') expect((await read.contents()).equals(data)).to.equal(true)
            if (how === 'body') expect(Buffer.concat(await read.body.toArray()).equals(data)).to.equal(true)
            if (how === 'eachChunk') expect((await eachChunkJoined(read)).equals(data)).to.equal(true)
          }

          expect(index).to.equal(members.length)
        },
      ),
      {numRuns: 200},
    )
  })

  for (const keepsNoBody of [false, true]) {
    it(`gives every member whole from a source that refills the chunks given back${keepsNoBody ? ', to a consumer that keeps no body' : ''} (property)`, async () => {
      // What the reader skips or copies it gives back, and each chunk it split between members once the
      // last member in it is done (many members share a chunk, and none gets it whole): to any consumer
      // those it handed no view of, to one that keeps no body all of them. One it still needed shows as
      // wrong bytes in a member after it.
      let reused = 0
      await fc.assert(
        fc.asyncProperty(
          fc.array(memberRead, {maxLength: 12}),
          fc.integer({max: 6000, min: 1}),
          async (members, chunk) => {
            const bytes = archive(members.map(({data}, index) => ({data, path: `m${index}`})))
            const source = lendingSource(bytes, chunk)
            let index = 0
            for await (const read of readTar(source.stream, {keepsNoBody})) {
              const {data, read: how} = members[index++]
              expect(read.path).to.equal(`m${index - 1}`)
              if (how === 'contents') expect((await read.contents()).equals(data)).to.equal(true)
              if (how === 'body') expect(Buffer.concat(await read.body.toArray()).equals(data)).to.equal(true)
              if (how === 'eachChunk') expect((await eachChunkJoined(read)).equals(data)).to.equal(true)
            }

            expect(index).to.equal(members.length)
            reused += source.reused()
          },
        ),
        {numRuns: 200},
      )
      expect(reused, 'chunks given back').to.be.greaterThan(0)
    })
  }

  it('leaves every view a consumer keeps as it was, while giving back the chunks it copied from (property)', async () => {
    // A consumer that may keep a body (an upload in flight) holds each chunk it was given until the
    // end; the reader gives back only what was read whole or copied (contents, skipped members). A
    // chunk given back too soon is refilled by the source, and a view kept of it then reads wrong.
    let reused = 0
    await fc.assert(
      fc.asyncProperty(
        fc.array(memberRead, {maxLength: 16}),
        fc.integer({max: 6000, min: 1}),
        async (members, chunk) => {
          const bytes = archive(members.map(({data}, index) => ({data, path: `m${index}`})))
          const source = lendingSource(bytes, chunk)
          const kept: Array<{data: Buffer; parts: Buffer[]}> = []
          let index = 0
          for await (const read of readTar(source.stream)) {
            const {data, read: how} = members[index++]
            if (how === 'contents') expect((await read.contents()).equals(data)).to.equal(true)
            if (how === 'body') kept.push({data, parts: await read.body.toArray()})
            if (how === 'eachChunk') {
              const parts: Buffer[] = []
              await read.eachChunk((part) => parts.push(part))
              kept.push({data, parts})
            }
          }

          expect(index).to.equal(members.length)
          for (const {data, parts} of kept) expect(Buffer.concat(parts).equals(data)).to.equal(true)
          reused += source.reused()
        },
      ),
      {numRuns: 300},
    )
    expect(reused, 'chunks given back').to.be.greaterThan(0)
  })

  it('gives back a chunk of small members it copied to any consumer, and one it handed on only to a consumer that keeps no body', async () => {
    const members = Array.from({length: 400}, (_, index) => ({data: randomBytes(100 + index), path: `f${index}`}))
    const bytes = archive(members)
    const chunkBytes = 64 * 1024
    const chunks = Math.ceil(bytes.length / chunkBytes)
    const readAll = async (keepsNoBody: boolean, how: 'body' | 'contents') => {
      const source = lendingSource(bytes, chunkBytes)
      let index = 0
      for await (const read of readTar(source.stream, {keepsNoBody})) {
        const data = how === 'contents' ? await read.contents() : Buffer.concat(await read.body.toArray())
        expect(data.equals(members[index++].data)).to.equal(true)
      }

      expect(index).to.equal(members.length)
      return source.reused()
    }

    // Each chunk goes back once the reader has moved past it; the source makes up to two ahead.
    expect(await readAll(true, 'body')).to.be.at.least(chunks - 3)
    expect(await readAll(true, 'contents')).to.be.at.least(chunks - 3)
    expect(await readAll(false, 'contents')).to.be.at.least(chunks - 3)
    // By default a consumer may keep a body's chunks (an upload in flight): nothing it saw goes back.
    expect(await readAll(false, 'body')).to.equal(0)
  })

  it('keeps a global pax record after the chunk it came in is given back', async () => {
    const global = new Pax({mtime: new Date(1_600_000_000_000)} as unknown as HeaderData, true).encode()
    const members = Array.from({length: 300}, (_, index) => ({data: randomBytes(700), path: `f${index}`}))
    const bytes = Buffer.concat([global, archive(members)])
    const source = lendingSource(bytes, 4096)
    const times = new Set<number>()
    for await (const read of readTar(source.stream, {keepsNoBody: true})) times.add(read.mtime.getTime())
    expect(source.reused(), 'chunks given back').to.be.greaterThan(100)
    expect([...times]).to.deep.equal([1_600_000_000_000])
  })

  it('passes small members to eachChunk at once, and fails a consumer that moves on before a read across chunks ends', async () => {
    const members = [
      {data: randomBytes(100), path: 'small'},
      {data: randomBytes(200_000), path: 'large'},
      {data: randomBytes(3000), path: 'after'},
    ]
    const seen: string[] = []
    const reading = (async () => {
      for await (const member of readTar(inChunks(archive(members), 64 * 1024))) {
        seen.push(member.path)
        const parts: Buffer[] = []
        const read = member.eachChunk((chunk) => parts.push(Buffer.from(chunk)))
        // The first member is in the source's first chunk: no promise, and all of it passed already.
        if (member.path === 'small') {
          expect(read).to.equal(undefined)
          expect(Buffer.concat(parts).equals(members[0].data)).to.equal(true)
        }

        // The large one spans chunks; not waiting for it would let two reads take the archive at once.
        if (member.path === 'large') expect(read).to.be.a('promise')
        read?.catch(() => {})
      }
    })()
    await reading.then(
      () => expect.fail('a member was read on while the one before was still being read'),
      (error: Error) => expect(error.message).to.equal('large: read after the archive moved on'),
    )
    expect(seen).to.deep.equal(['small', 'large'])
  })

  it('reads header numbers as the octal text they are: padding, digits, padding; anything else refused (property)', async () => {
    // The reference is the field as text, stripped and matched as tar(5) describes it.
    const reference = (field: Buffer): number | undefined => {
      const text = field
        .toString('latin1')
        .replace(/[\0 ]+$/, '')
        .replace(/^ +/, '')
      if (text === '') return 0
      return /^[0-7]+$/.test(text) ? Number.parseInt(text, 8) : undefined
    }

    // Fields of the shape tar writes (spaces, octal digits, spaces or NULs), half of them with one byte
    // changed to another printable one, a NUL or a space: random bytes alone are almost never valid.
    const padding = fc.array(fc.constantFrom(0x00, 0x20), {maxLength: 8})
    const wellFormed = fc
      .tuple(
        fc.array(fc.constant(0x20), {maxLength: 3}),
        fc.array(fc.integer({max: 0x37, min: 0x30}), {maxLength: 8}),
        padding,
      )
      .map(([spaces, digits, end]) => Buffer.from([...spaces, ...digits, ...end, 0, 0, 0, 0, 0, 0, 0, 0].slice(0, 8)))
    const changed = fc
      .tuple(wellFormed, fc.nat({max: 7}), fc.oneof(fc.integer({max: 0x7e, min: 0x20}), fc.constant(0)))
      .map(([field, at, byte]) => {
        field[at] = byte
        return field
      })
    await fc.assert(
      fc.asyncProperty(fc.oneof(wellFormed, changed), async (field) => {
        const header = encodeTarHeader({mode: 0o10_0644, mtime: new Date(0), path: 'm', size: 0, type: 'File'})
        field.copy(header, 100)
        // The checksum, recomputed over the changed header with its own field taken as spaces.
        header.fill(0x20, 148, 156)
        let sum = 0
        for (const byte of header) sum += byte
        header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1')
        const read = async () => {
          const modes: number[] = []
          for await (const member of readTar(Readable.from([Buffer.concat([header, Buffer.alloc(1024)])]))) {
            modes.push(member.mode)
          }

          return modes[0]
        }

        const expected = reference(field)
        const actual = await read().catch((error: Error) => error)
        if (expected === undefined)
          expect(actual)
            .to.be.an('error')
            .with.property('message')
            .that.matches(/not a number/)
        else expect(actual).to.equal(expected)
      }),
      {numRuns: 500},
    )
  })

  for (const how of ['contents', 'eachChunk'] as const) {
    it(`a member cut short fails its ${how}, naming it`, async () => {
      const bytes = archive([{data: randomBytes(5000), path: 'photo.jpg'}])
      const reading = (async () => {
        for await (const member of readTar(Readable.from([bytes.subarray(0, 3000)]))) {
          await (how === 'contents' ? member.contents() : member.eachChunk(() => {}))
        }
      })()
      await reading.then(
        () => expect.fail('a member cut short was read whole'),
        (error: Error) => expect(error.message).to.equal('the archive is truncated: photo.jpg is cut short'),
      )
    })
  }

  for (const how of ['body', 'eachChunk'] as const) {
    it(`a source that fails at any byte fails the reader promptly, even in the middle of a member read by ${how}`, async () => {
      const members = [
        {data: randomBytes(3000), path: 'a'},
        {data: randomBytes(70_000), path: 'b'},
        {data: randomBytes(10), path: 'c'},
      ]
      const bytes = archive(members)
      for (let cut = 0; cut < bytes.length - 1024; cut += 509) {
        const read = (async () => {
          const seen: string[] = []
          for await (const member of readTar(failingAt(bytes, cut))) {
            const chunks: Buffer[] = []
            if (how === 'body') for await (const chunk of member.body) chunks.push(chunk as Buffer)
            else await member.eachChunk((chunk) => chunks.push(chunk))
            expect(Buffer.concat(chunks).equals(members.find((m) => m.path === member.path)!.data)).to.equal(true)
            seen.push(member.path)
          }

          return seen
        })()
        const outcome = await Promise.race([
          read.then(
            () => 'finished',
            (error: Error) => error.message,
          ),
          new Promise<string>((resolve) => {
            // A hang guard far above the microseconds this takes: the answer, not the time, is checked.
            setTimeout(() => resolve('hung'), 60_000).unref()
          }),
        ])
        expect(outcome, `cut at ${cut}`).to.equal(`source failed at byte ${cut}`)
      }
    })
  }

  it('a consumer that stops early (restore at MANIFEST.json) destroys the source, and leaves no error unheard', async () => {
    // The shape of the restore crash: many members, read from a file stream behind a pipeline, and
    // the consumer leaving after a few. A source destroyed while still fed must not raise an error
    // on a stream nobody listens to (mocha fails the test on any uncaught exception).
    const members = Array.from({length: 1000}, (_, index) => ({data: randomBytes(2048), path: `media/f${index}`}))
    const bytes = archive(members)
    const source = new PassThrough()
    const feeding = pipeline(Readable.from(chunks(bytes, 4096)), source).catch((error: Error) => error)
    let seen = 0
    for await (const member of readTar(source)) {
      seen++
      if (member.path === 'media/f9') break
    }

    expect(seen).to.equal(10)
    expect(source.destroyed).to.equal(true)
    expect(await feeding).to.be.an('error')
    for (let tick = 0; tick < 5; tick++) await setImmediatePromise()
  })

  it('reads the archive to its end: zero padding after the end blocks is accepted, anything else refused', async () => {
    const bytes = archive([{data: Buffer.from('hello'), path: 'a'}])
    const read = async (input: Buffer) => {
      const paths: string[] = []
      for await (const member of readTar(Readable.from([input]))) paths.push(member.path)
      return paths
    }

    expect(await read(Buffer.concat([bytes, Buffer.alloc(8192)]))).to.deep.equal(['a'])
    const trailing = await read(Buffer.concat([bytes, Buffer.from('not zero')])).catch((error: Error) => error)
    expect(trailing)
      .to.be.an('error')
      .with.property('message')
      .that.matches(/data follows its end-of-archive block/)
    const cut = await read(bytes.subarray(0, 512 + 5)).catch((error: Error) => error)
    expect(cut)
      .to.be.an('error')
      .with.property('message')
      .that.matches(/truncated/)
  })

  it('keeps names byte for byte, from ustar fields and pax records alike', async () => {
    const short = 'caf\uDCE9'
    const long = `${'\uDCE9'.repeat(150)}/x`
    const input = archive([
      {data: Buffer.from('1'), path: short},
      {data: Buffer.from('2'), path: long},
    ])
    const paths: string[] = []
    for await (const member of readTar(Readable.from([input]))) paths.push(member.path)
    expect(paths).to.deep.equal([short, long])
  })
})

async function eachChunkJoined(member: TarMember): Promise<Buffer> {
  const parts: Buffer[] = []
  // Copied as they come: a consumer that keeps no body keeps no view past its member.
  await member.eachChunk((part) => parts.push(Buffer.from(part)))
  return Buffer.concat(parts)
}

function* chunks(bytes: Buffer, size: number): Generator<Buffer> {
  for (let offset = 0; offset < bytes.length; offset += size) yield bytes.subarray(offset, offset + size)
}
