import {expect} from 'chai'
import * as fc from 'fast-check'

import {lineBatches} from '../../src/lib/line-batches.js'
import {lendingSource} from '../helpers/lending-source.js'

/** What splitting the whole text at once gives: its lines, the last one only when no newline ends it. */
function linesOf(text: string): string[] {
  if (text === '') return []
  return (text.endsWith('\n') ? text.slice(0, -1) : text).split('\n')
}

describe('line batches', () => {
  it('give the lines of any text however it is cut, and give back every chunk once decoded (property)', async () => {
    // Lines of several-byte characters too, so that a chunk may end inside one. The source lends its
    // chunks and counts the ones given back: a decrypted listing's chunks wait for a collection unless
    // the splitter, their last reader, gives them back.
    const line = fc.string({maxLength: 40, unit: fc.constantFrom('a', 'é', '€', '𝄞', ',', '{', ' ')})
    let reused = 0
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, {maxLength: 30}),
        fc.boolean(),
        fc.integer({max: 64, min: 1}),
        async (lines, endsWithNewline, chunkBytes) => {
          const text = lines.join('\n') + (endsWithNewline && lines.length > 0 ? '\n' : '')
          const source = lendingSource(Buffer.from(text), chunkBytes)
          const read: string[] = []
          for await (const batch of lineBatches(source.stream)) read.push(...batch)
          expect(read).to.deep.equal(linesOf(text))
          reused += source.reused()
        },
      ),
      {numRuns: 300},
    )
    expect(reused, 'chunks given back and written again').to.be.greaterThan(0)
  })
})
