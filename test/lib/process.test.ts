import {expect} from 'chai'
import {createReadStream, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {PassThrough, Readable} from 'node:stream'
import {finished, pipeline} from 'node:stream/promises'
import {setTimeout as sleep} from 'node:timers/promises'

import {ProcessError, streamFrom} from '../../src/lib/process.js'

describe('a program fed a stream (streamFrom)', () => {
  it('stops its input when it exits before reading it all, so that a file read into it is closed', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'stream-from-'))
    const script = join(folder, 'dump.sql')
    // Far more than a pipe holds, so that the program's exit leaves most of it unread.
    writeFileSync(script, Buffer.alloc(8 * 1024 * 1024, 'x'))
    const input = createReadStream(script)
    const {stream} = streamFrom('sh', ['-c', 'head -c 1 > /dev/null; exit 3'], {stdin: input})
    const failed = await pipeline(stream, new PassThrough().resume()).then(
      () => {},
      (error: unknown) => error,
    )
    expect(failed).to.be.instanceOf(ProcessError)
    // Bounded: a source left paused would never finish.
    const timer = new AbortController()
    await Promise.race([
      finished(input).catch(() => {}),
      sleep(10_000, undefined, {signal: timer.signal}).catch(() => {}),
    ])
    timer.abort()
    expect(input.destroyed, 'the input stopped').to.equal(true)
    expect(input.closed, 'its file closed').to.equal(true)
  })

  it('ends the program’s input once the source has ended, and passes on its output', async () => {
    const {stream} = streamFrom('cat', [], {stdin: Readable.from([Buffer.from('one '), Buffer.from('two')])})
    const chunks: Buffer[] = []
    for await (const chunk of stream) chunks.push(chunk as Buffer)
    expect(Buffer.concat(chunks).toString()).to.equal('one two')
  })
})
