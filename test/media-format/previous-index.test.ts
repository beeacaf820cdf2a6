import {expect} from 'chai'
import * as fc from 'fast-check'

import {IndexEntry, walkOrder} from '../../src/media-format/packs/media-index.js'
import {cursorsOver} from '../../src/media-format/packs/previous-index.js'

const order = (a: {path: string}, b: {path: string}) => walkOrder(a.path, b.path)

/** Paths of up to three levels from a small alphabet, so that the index and the walk share many. */
const path = fc
  .array(fc.constantFrom('a', 'b', 'c', 'ä', 'a b'), {maxLength: 3, minLength: 1})
  .map((parts) => parts.join('/'))

function sortedUnique(paths: string[]): string[] {
  return [...new Set(paths)].sort(walkOrder)
}

function entry(path: string): IndexEntry {
  return {mode: 0o644, mtimeMs: 0, path, size: path.length, type: 'file'}
}

/**
 * The entries in batches of `size`, as the index file is read.
 *
 * @yields each batch
 */
async function* batches(entries: IndexEntry[], size: number): AsyncGenerator<IndexEntry[], void> {
  for (let start = 0; start < entries.length; start += size) yield entries.slice(start, start + size)
}

describe('the previous index: two cursors over one reading', () => {
  it('each finds exactly the entries of the paths it asks for, and what is kept stays within the read-ahead and a batch (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(path, {maxLength: 60}),
        fc.array(path, {maxLength: 60}),
        fc.record({batch: fc.integer({max: 10, min: 1}), window: fc.integer({max: 8, min: 1})}),
        fc.array(fc.boolean(), {maxLength: 60}),
        async (indexPaths, walkPaths, {batch, window}, asksAhead) => {
          const index = sortedUnique(indexPaths).map((p) => entry(p))
          const walk = sortedUnique(walkPaths)
          const byPath = new Map(index.map((e) => [e.path, e]))
          const {ahead, current, kept} = cursorsOver(batches(index, batch), order)
          let askedAhead = 0
          for (const [position, target] of walk.entries()) {
            // The provider asks about the next files of its window before the walk reaches them.
            for (; askedAhead < Math.min(walk.length, position + window); askedAhead++) {
              if (asksAhead[askedAhead] === false) continue
              const wanted = walk[askedAhead]
              expect(await ahead.seek({path: wanted, type: 'file'}), `ahead: ${wanted}`).to.equal(byPath.get(wanted))
            }

            expect(await current.seek({path: target, type: 'file'}), `current: ${target}`).to.equal(byPath.get(target))
            // Kept: the index entries from the walk's place to the read-ahead's, and the rest of the
            // batch that holds the last of them (or the one read past it).
            const last = walk[Math.max(position, askedAhead - 1)]
            const between = index.filter((e) => order(e, {path: target}) >= 0 && order(e, {path: last}) <= 0).length
            expect(kept(), `kept at ${target}`).to.be.at.most(between + batch)
          }
        },
      ),
      {numRuns: 300},
    )
  })

  it('reads each line once, however far ahead the read-ahead runs', async () => {
    const index = Array.from({length: 1000}, (_, position) => entry(`f${String(position).padStart(4, '0')}`))
    let read = 0
    async function* counted(): AsyncGenerator<IndexEntry[], void> {
      for (let start = 0; start < index.length; start += 7) {
        const batch = index.slice(start, start + 7)
        read += batch.length
        yield batch
      }
    }

    const {ahead, current} = cursorsOver(counted(), order)
    for (const [position, line] of index.entries()) {
      if (position + 32 < index.length) expect(await ahead.seek(index[position + 32])).to.equal(index[position + 32])
      const found = current.seek(line)
      // The read-ahead has read past it: the answer comes without a promise.
      expect(found).to.not.be.instanceOf(Promise)
      expect(await found).to.equal(line)
    }

    expect(read).to.equal(index.length)
  })
})
