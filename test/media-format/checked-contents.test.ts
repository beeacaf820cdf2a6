import {expect} from 'chai'
import * as fc from 'fast-check'

import {CheckedContents, KEY_BYTES} from '../../src/media-format/checked-contents.js'
import {contentKey, IndexEntry} from '../../src/media-format/packs/media-index.js'

const key = fc.uint8Array({maxLength: KEY_BYTES, minLength: KEY_BYTES}).map((bytes) => Buffer.from(bytes))
const hex = (length: number) =>
  fc.string({maxLength: length, minLength: length, unit: fc.constantFrom(...'0123456789abcdef')})

describe('what a run of verify checked (CheckedContents)', function () {
  it('holds exactly the keys added, through its growth (property, against a Set)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), key), {maxLength: 600}), (steps) => {
        // 256 bytes to start: 16 slots, grown several times over a run.
        const checked = new CheckedContents(1024 * 1024, 256)
        const added = new Set<string>()
        for (const [adding, bytes] of steps) {
          const name = bytes.toString('hex')
          if (adding) {
            checked.add(bytes)
            if (!/^0+$/.test(name)) added.add(name)
          }

          expect(checked.has(bytes), name).to.equal(added.has(name))
        }

        expect(checked.size).to.equal(added.size)
      }),
      {numRuns: 200},
    )
  })

  it('never holds the empty key, and stops remembering when full, never holding a key it was not given', () => {
    const checked = new CheckedContents(64 * KEY_BYTES, 64 * KEY_BYTES)
    const zeros = Buffer.alloc(KEY_BYTES)
    checked.add(zeros)
    expect(checked.has(zeros)).to.equal(false)

    const keys = Array.from({length: 100}, (_, index) => {
      const bytes = Buffer.alloc(KEY_BYTES)
      bytes.writeUInt32LE(Math.imul(index, 2_654_435_761) >>> 0, 0)
      bytes.writeUInt32LE(index + 1, 12)
      return bytes
    })
    for (const bytes of keys) checked.add(bytes)
    // Half of 64 slots: the first 32 are remembered, the rest only read again.
    expect(checked.size).to.equal(32)
    expect(keys.map((bytes) => checked.has(bytes))).to.deep.equal(keys.map((_, index) => index < 32))
  })

  it("a file's content key changes with its size, its SHA-256, and any blob or pack, never with its path", () => {
    const entry = fc.record({
      blobs: fc.array(
        fc.tuple(
          hex(64),
          hex(32).map((name) => `${name}.age`),
        ),
        {maxLength: 4},
      ),
      path: fc.string({minLength: 1}),
      sha256: fc.option(hex(64), {nil: undefined}),
      size: fc.nat(),
    })
    fc.assert(
      fc.property(entry, entry, (a, b) => {
        const file = (fields: typeof a): IndexEntry => ({...fields, mode: 0o644, mtimeMs: 0, type: 'file'})
        const same = a.size === b.size && a.sha256 === b.sha256 && JSON.stringify(a.blobs) === JSON.stringify(b.blobs)
        expect(contentKey(file(a)).equals(contentKey(file(b)))).to.equal(same)
        expect(contentKey(file(a)).equals(contentKey(file({...a, path: `${b.path}/moved`})))).to.equal(true)
      }),
      {numRuns: 300},
    )
  })
})
