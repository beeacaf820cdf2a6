import {expect} from 'chai'
import * as fc from 'fast-check'

import {keyOrder} from '../../src/media-format/packs/media-index.js'
import {encodeKey, keyOfPath, KEYS_FOLDER, S3KeyPaths} from '../../src/providers/media/s3-key-paths.js'

/**
 * Keys as a bucket may hold them, from few enough names that files, folders of the same name and their
 * neighbours in key order (`a`, `a.`, `a/`) meet: separators and dots, long segments, the encoded
 * keys' own folder.
 */
const segment = fc.oneof(
  {arbitrary: fc.constantFrom('a', 'a.', 'a ', 'a-b', 'b', 'é', '~', '%', '50%~'), weight: 12},
  {arbitrary: fc.constantFrom('', '.', '..', 'x\0y', KEYS_FOLDER), weight: 3},
  {arbitrary: fc.integer({max: 700, min: 190}).map((length) => 'é'.repeat(length / 2)), weight: 1},
)
const key = fc
  .array(segment, {maxLength: 3, minLength: 1})
  .map((segments) => segments.join('/'))
  .filter((text) => text !== '')
/** A listing: unique keys in key order (UTF-8 bytes), each with a size (a key ending in `/` may hold bytes). */
const listing = fc
  .uniqueArray(fc.tuple(key, fc.constantFrom(0, 0, 7)), {maxLength: 40, selector: ([text]) => text})
  .map((objects) => objects.sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b))))

function isFolderMarker(text: string, size: number): boolean {
  return text.endsWith('/') && size === 0
}

describe('S3 keys as archive paths', () => {
  it('gives every key of any listing a path that extracts, of its own, that reads back as the key, in the listing order', () => {
    fc.assert(
      fc.property(listing, (objects) => {
        const paths = new S3KeyPaths()
        const mapped = objects.map(([text, size]) => ({key: text, size, ...paths.next(text, size)}))
        const files = new Set(mapped.filter(({type}) => type === 'file').map(({path}) => path))
        const all = new Set(mapped.map(({path}) => path))
        expect(all.size, 'one path a key').to.equal(mapped.length)
        // Plain checks in this loop, which runs for every key of thousands of listings: chai's
        // assertions were most of the test's time. A failure names the path and what is wrong.
        for (const {key: text, path, size, type} of mapped) {
          const parts = path.split('/')
          for (const part of parts) {
            if (['', '.', '..'].includes(part) || part.includes('\0') || Buffer.byteLength(part) > 255)
              expect.fail(`${JSON.stringify(path)}: the part ${JSON.stringify(part)} does not extract`)
          }

          // No file is also the folder of another path.
          for (let depth = 1; depth < parts.length; depth++)
            if (files.has(parts.slice(0, depth).join('/'))) expect.fail(`${path} under a file`)
          const back = keyOfPath(path, type)
          if (back !== text)
            expect.fail(`${JSON.stringify(path)} reads back as ${JSON.stringify(back)}, not ${JSON.stringify(text)}`)
          if (type !== 'file' && !isFolderMarker(text, size))
            expect.fail(`${JSON.stringify(text)} is a file, not a ${type}`)
          // A key that is a path, with no file named like one of its folders, keeps its name.
          const natural = isFolderMarker(text, size) ? text.slice(0, -1) : text
          const plain =
            natural.split('/').every((part) => !['', '.', '..'].includes(part) && !part.includes('\0')) &&
            natural.split('/').every((part) => Buffer.byteLength(part) <= 255) &&
            natural.split('/')[0] !== KEYS_FOLDER &&
            !objects.some(
              ([other, otherSize]) =>
                !isFolderMarker(other, otherSize) &&
                (natural.startsWith(`${other}/`) || (isFolderMarker(text, size) && other === natural)),
            )
          if (plain)
            expect({path, type}).to.deep.equal({path: natural, type: isFolderMarker(text, size) ? 'directory' : 'file'})
          else if (path !== natural && !path.startsWith(`${KEYS_FOLDER}/`))
            expect.fail(`${JSON.stringify(path)} is renamed, but not into ${KEYS_FOLDER}/`)
        }

        // An incremental backup merges its index with the listing in this order.
        const sorted = [...mapped].sort(keyOrder)
        expect(sorted.map(({key: text}) => text)).to.deep.equal(mapped.map(({key: text}) => text))
      }),
      {numRuns: 2000},
    )
  })

  it('keeps the names users see, and encodes only what cannot be a path', () => {
    const paths = new S3KeyPaths()
    const listed = ['a', 'a b', 'a/b', 'a/b/c', 'c', 'c (old)', 'c/', 'dir/', 'photos/', 'photos/cat.jpg', 'x//y'].map(
      (text) => paths.next(text, text === 'dir/' ? 26 : text.endsWith('/') ? 0 : 5),
    )
    expect(listed).to.deep.equal([
      {path: 'a', type: 'file'},
      {path: 'a b', type: 'file'},
      {path: `${KEYS_FOLDER}/a%2Fb~`, type: 'file'},
      {path: `${KEYS_FOLDER}/a%2Fb%2Fc~`, type: 'file'},
      {path: 'c', type: 'file'},
      {path: 'c (old)', type: 'file'},
      {path: `${KEYS_FOLDER}/c%2F~`, type: 'file'},
      {path: `${KEYS_FOLDER}/dir%2F~`, type: 'file'},
      {path: 'photos', type: 'directory'},
      {path: 'photos/cat.jpg', type: 'file'},
      {path: `${KEYS_FOLDER}/x%2F%2Fy~`, type: 'file'},
    ])
    // A long key is cut into segments of whole characters.
    const long = encodeKey(`${'%'.repeat(70)}/${'é'.repeat(300)}`)
    for (const part of long.split('/')) expect(Buffer.byteLength(part)).to.be.at.most(201)
    expect(keyOfPath(long, 'file')).to.equal(`${'%'.repeat(70)}/${'é'.repeat(300)}`)
    // Folders of the encoded keys, and names there that no key was encoded to (a folder's own file), are no key of their own.
    expect(keyOfPath(KEYS_FOLDER, 'directory')).to.equal(undefined)
    expect(keyOfPath(`${KEYS_FOLDER}/notes.txt`, 'file')).to.equal(`${KEYS_FOLDER}/notes.txt`)
    expect(keyOfPath(`${KEYS_FOLDER}/50%~`, 'file')).to.equal(`${KEYS_FOLDER}/50%~`)
  })

  it('refuses a listing out of key order, which would hide a file under a folder of the same name', () => {
    const paths = new S3KeyPaths()
    paths.next('b', 1)
    expect(() => paths.next('a/b', 1)).to.throw('out of key order')
    // Equal keys too: a listing that repeats itself.
    const again = new S3KeyPaths()
    again.next('a', 1)
    expect(() => again.next('a', 1)).to.throw('out of key order')
  })
})
