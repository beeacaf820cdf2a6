import {Readable} from 'node:stream'

import {BufferLender} from '../../src/lib/buffer-loan.js'

/**
 * A source that lends its chunks (buffer-loan.ts) and writes each next chunk into a buffer given back,
 * if there is one: a stage that gives a chunk back before it is done with it sees that chunk's bytes
 * change under it, and what it writes is wrong. `reused` counts the chunks written into a buffer given
 * back, which shows that the stages after it gave them back at all.
 */
export function lendingSource(data: Buffer, chunkBytes: number): {reused: () => number; stream: Readable} {
  // Every buffer given back is kept: what is reused then depends only on how many the stages hold at once.
  const lender = new BufferLender(Number.POSITIVE_INFINITY)
  let reused = 0
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let offset = 0; offset < data.length; offset += chunkBytes) {
      const spare = lender.borrowBack()
      if (spare !== undefined) reused++
      const buffer = spare === undefined ? Buffer.allocUnsafeSlow(chunkBytes) : Buffer.from(spare)
      const length = data.copy(buffer, 0, offset, offset + chunkBytes)
      yield lender.lend(buffer.subarray(0, length))
    }
  }

  return {reused: () => reused, stream: Readable.from(chunks(), {highWaterMark: 1, objectMode: false})}
}
