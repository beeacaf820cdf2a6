import {expect} from 'chai'
import * as fc from 'fast-check'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {
  IndexEntry,
  indexEntrySchema,
  isUnchanged,
  keyOrder,
  looksLikeIndexEntry,
  walkOrder,
} from '../../src/media-format/packs/media-index.js'
import {FilesystemMediaProvider} from '../../src/providers/media/filesystem.js'

const file = (fields: Partial<IndexEntry>): IndexEntry => ({
  ctimeMs: 2000,
  ino: 7,
  mode: 0o10_0644,
  mtimeMs: 1000,
  path: 'a.txt',
  size: 10,
  type: 'file',
  ...fields,
})

describe('media index', () => {
  describe('isUnchanged', () => {
    it('a file in a folder is unchanged only when size, mtime, inode and ctime all match', () => {
      expect(isUnchanged(file({}), file({}))).to.equal(true)
      for (const change of [{size: 11}, {mtimeMs: 1001}, {ino: 8}, {ctimeMs: 2001}, {type: 'directory' as const}]) {
        expect(isUnchanged(file({}), file(change)), JSON.stringify(change)).to.equal(false)
      }

      // An entry without inode or ctime (written by something that did not know them) is never trusted.
      expect(isUnchanged(file({ino: undefined}), file({ino: undefined}))).to.equal(false)
      expect(isUnchanged(file({ctimeMs: undefined}), file({ctimeMs: undefined}))).to.equal(false)
    })

    it('an S3 object is unchanged when its size and ETag match, whatever its dates say', () => {
      const object = (fields: Partial<IndexEntry>) =>
        file({ctimeMs: undefined, etag: '"abc"', ino: undefined, key: 'm/a.txt', ...fields})
      expect(isUnchanged(object({}), object({mtimeMs: 5}))).to.equal(true)
      expect(isUnchanged(object({}), object({etag: '"abd"'}))).to.equal(false)
      expect(isUnchanged(object({}), object({size: 11}))).to.equal(false)
      // A bucket that replaced a folder (or the reverse) between two backups: never the same file.
      expect(isUnchanged(file({}), object({}))).to.equal(false)
      expect(isUnchanged(object({}), file({}))).to.equal(false)
    })
  })

  describe('keyOrder', () => {
    it('is the byte order of S3 keys, not the walk order of a folder, nor JavaScript string order', () => {
      const entries = [
        {path: 'a0', type: 'file'},
        {path: 'a/b', type: 'file'},
        {path: 'a', type: 'directory'},
        {path: 'a.b', type: 'file'},
        {path: '\uFFFD', type: 'file'},
        {path: '\u{1F98A}', type: 'file'},
      ]
      expect([...entries].sort(keyOrder).map(({path}) => path)).to.deep.equal([
        'a.b',
        'a', // the marker "a/"
        'a/b',
        'a0',
        '\uFFFD', // UTF-8 EF BF BD
        '\u{1F98A}', // UTF-8 F0 9F A6 8A; as UTF-16 it would sort first
      ])
      expect(walkOrder('a/b', 'a.b')).to.be.lessThan(0)
    })
  })

  describe('walkOrder', () => {
    it('orders paths segment by segment, each segment as a string (property)', () => {
      const bySegments = (a: string, b: string) => {
        const left = a.split('/')
        const right = b.split('/')
        for (let index = 0; index < Math.min(left.length, right.length); index++) {
          if (left[index] !== right[index]) return left[index] < right[index] ? -1 : 1
        }

        return left.length - right.length
      }

      // Code units around '/' (0x2f) matter most: '.' and '-' sort below it, '0' above.
      const unit = fc.constantFrom('/', '.', '-', '0', 'a', 'B', ' ', '\uDCE9', 'ü', '🦊')
      const path = fc.array(unit, {maxLength: 8}).map((units) => units.join(''))
      fc.assert(
        fc.property(path, path, (a, b) => {
          expect(Math.sign(walkOrder(a, b)), `${a} vs ${b}`).to.equal(Math.sign(bySegments(a, b)))
        }),
        {numRuns: 5000},
      )
    })

    it('is the order in which the media folder is walked (property, on real trees)', async () => {
      const segment = fc.constantFrom('a', 'b', 'a.b', 'a-b', 'B', 'ü', '文', '🦊', 'z0')
      await fc.assert(
        fc.asyncProperty(fc.uniqueArray(fc.array(segment, {maxLength: 3, minLength: 1})), async (paths) => {
          const root = mkdtempSync(join(tmpdir(), 'walk-order-'))
          try {
            for (const parts of paths) {
              const path = join(root, ...parts)
              try {
                mkdirSync(join(path, '..'), {recursive: true})
                writeFileSync(path, '')
              } catch {
                // A path that is already a folder, or under a file: this tree has it the other way round.
              }
            }

            const walked: string[] = []
            for await (const entry of new FilesystemMediaProvider(root).entries({signal: new AbortController().signal}))
              walked.push(entry.path)
            expect(walked).to.deep.equal([...walked].sort(walkOrder))
          } finally {
            rmSync(root, {force: true, recursive: true})
          }
        }),
        {numRuns: 40},
      )
    })
  })
})

/** A field left out, among the damages. */
const ABSENT = Symbol('absent')

describe('media index lines', () => {
  it('the quick check accepts exactly what the schema accepts (property)', () => {
    const hex = (length: number) =>
      fc.string({maxLength: length, minLength: length, unit: fc.constantFrom(...'0123456789abcdef')})
    const valid = fc.record(
      {
        blobs: fc.array(
          fc.tuple(
            hex(64),
            hex(32).map((name) => `${name}.age`),
          ),
          {maxLength: 3},
        ),
        ctimeMs: fc.double({noNaN: true}),
        etag: fc.string(),
        ino: fc.integer(),
        key: fc.string(),
        linkTarget: fc.string(),
        mode: fc.integer(),
        mtimeMs: fc.double({noNaN: true}),
        path: fc.string({minLength: 1}),
        sha256: hex(64),
        size: fc.nat(),
        type: fc.constantFrom('directory', 'file', 'symlink'),
      },
      {requiredKeys: ['mode', 'mtimeMs', 'path', 'size', 'type']},
    )
    // Valid entries, then each damaged in one field: a wrong type, a bad value, or an unknown key.
    const damage = fc.tuple(
      fc.constantFrom(
        'blobs',
        'ctimeMs',
        'etag',
        'extra',
        'ino',
        'key',
        'linkTarget',
        'mode',
        'mtimeMs',
        'path',
        'sha256',
        'size',
        'type',
      ),
      fc.oneof(
        fc.constant(ABSENT),
        fc.constant(null),
        fc.constant(''),
        fc.constant(-1),
        fc.constant(1.5),
        fc.constant('file'),
        fc.constant([['x', 'y']]),
        fc.constant([[`${'a'.repeat(64)}`, `${'b'.repeat(32)}.age`, 'z']]),
        hex(63),
        fc.constant({}),
      ),
    )
    fc.assert(
      fc.property(valid, fc.option(damage), (entry, change) => {
        const candidate: Record<string, unknown> = {...entry}
        if (change) candidate[change[0]] = change[1]
        if (change && change[1] === ABSENT) delete candidate[change[0]]
        expect(looksLikeIndexEntry(candidate)).to.equal(indexEntrySchema.safeParse(candidate).success)
      }),
      {numRuns: 2000},
    )
  })
})
