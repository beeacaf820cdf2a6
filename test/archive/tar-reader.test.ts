import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {Readable} from 'node:stream'

import {encodeTarHeader} from '../../src/archive/tar-header.js'
import {readTar} from '../../src/archive/tar-reader.js'

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

describe('tar reader', () => {
  it('a source that fails at any byte fails the reader promptly, even in the middle of a member body', async function () {
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
          for await (const chunk of member.body) chunks.push(chunk as Buffer)
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
          setTimeout(() => resolve('hung'), 2000)
        }),
      ])
      expect(outcome, `cut at ${cut}`).to.equal(`source failed at byte ${cut}`)
    }
  })
})
