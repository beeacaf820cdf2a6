import {expect} from 'chai'
import * as fc from 'fast-check'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {IndexEntry, isUnchanged, keyOrder, walkOrder} from '../../src/domain/media-index.js'
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
