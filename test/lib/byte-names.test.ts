import {expect} from 'chai'
import * as fc from 'fast-check'
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'

import {createMediaTar, ListingSink, MediaEntry} from '../../src/archive/media-tar.js'
import {readTar} from '../../src/archive/tar-reader.js'
import {decodeName, encodeName, fsPathBelow, isUtf8Name, printableName} from '../../src/lib/byte-names.js'
import {describeTree, treeDifferences} from '../helpers/big-tree.js'
import {cli, makeProject, writeEnvironments} from '../helpers/project.js'
import {collect, requireTool} from '../helpers/tools.js'

/** One path segment as a file system allows it: 1–255 bytes, no `/`, no NUL, not `.` or `..`. */
const segment = fc
  .uint8Array({maxLength: 255, minLength: 1})
  .map((bytes) => Buffer.from(bytes.map((byte) => (byte === 0x2f || byte === 0 ? 0x5f : byte))))
  .filter((bytes) => bytes.toString('latin1') !== '.' && bytes.toString('latin1') !== '..')

describe('byte names (PEP 383 surrogateescape)', () => {
  it('keeps UTF-8 names as their text, and escapes each byte that is not UTF-8', () => {
    expect(decodeName(Buffer.from('café 文件'))).to.equal('café 文件')
    const latin1 = Buffer.from('caf\u00E9', 'latin1')
    expect(decodeName(latin1)).to.equal('caf\uDCE9')
    expect(encodeName('caf\uDCE9')).to.deep.equal(latin1)
    expect(printableName('caf\uDCE9')).to.equal(String.raw`caf\xE9`)
    expect(isUtf8Name('caf\uDCE9')).to.equal(false)
    expect(isUtf8Name('😀')).to.equal(true)
    // An overlong encoding and a UTF-16 surrogate in UTF-8 are not valid UTF-8: escaped, byte for byte.
    expect(decodeName(Buffer.from([0xc0, 0xaf]))).to.equal('\uDCC0\uDCAF')
    expect(decodeName(Buffer.from([0xed, 0xa0, 0x80]))).to.equal('\uDCED\uDCA0\uDC80')
    // The point is JSON's text form, not a clone.
    // eslint-disable-next-line unicorn/prefer-structured-clone
    expect(JSON.parse(JSON.stringify('caf\uDCE9'))).to.equal('caf\uDCE9')
  })

  it('any bytes round-trip through decode and encode (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({maxLength: 300}), (bytes) => {
        expect(encodeName(decodeName(bytes))).to.deep.equal(Buffer.from(bytes))
      }),
      {numRuns: 5000},
    )
  })

  it('any text round-trips through encode and decode, and is UTF-8 (property)', () => {
    fc.assert(
      fc.property(fc.string({unit: 'binary'}), (text) => {
        expect(decodeName(encodeName(text))).to.equal(text)
        expect(isUtf8Name(text)).to.equal(true)
      }),
      {numRuns: 2000},
    )
  })

  it("a path below a folder is its bytes, a slash and the name's bytes, in a buffer of its own (property)", () => {
    fc.assert(
      fc.property(fc.string({unit: 'grapheme'}), fc.array(segment, {maxLength: 4}), (root, segments) => {
        const relative = segments.map((bytes) => decodeName(bytes)).join('/')
        const path = fsPathBelow(root, relative)
        const expected =
          relative === '' ? Buffer.from(root) : Buffer.concat([Buffer.from(`${root}/`), encodeName(relative)])
        expect(path.equals(expected)).to.equal(true)
        // Not a slice of Node's shared pool, whose slabs outlive the paths cut from them.
        expect(path.byteOffset).to.equal(0)
        expect(path.buffer.byteLength).to.equal(path.length)
      }),
      {numRuns: 2000},
    )
  })

  it('names of any bytes survive our tar, our reader and stock tar -x (property)', async function () {
    requireTool(this, 'tar', 'tar')
    // Each run's archive goes into a folder of its own, and stock tar extracts them all at the end, from
    // one shell: a start of tar for each run, forked from a test worker of hundreds of MiB, cost more
    // than the test's own work.
    const batch = mkdtempSync(join(tmpdir(), 'byte-names-'))
    const archives: Array<{folder: string; names: Buffer[]}> = []
    // A folder for every run, the failing ones and fast-check's shrinking runs too.
    let runs = 0
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.uniqueArray(segment, {maxLength: 12, minLength: 1, selector: (bytes) => bytes.toString('hex')}),
          async (names) => {
            const folder = join(batch, String(runs++))
            mkdirSync(folder)
            const entries: MediaEntry[] = names.map((name, index) => ({
              mode: 0o644,
              mtime: new Date(1_700_000_000_000),
              path: decodeName(name),
              prefetched: Promise.resolve({
                content: Buffer.from(`file ${index}`),
                sha256: createHash('sha256').update(`file ${index}`).digest('hex'),
              }),
              size: Buffer.byteLength(`file ${index}`),
              type: 'file',
            }))
            const {stream} = createMediaTar(Readable.from(entries), memorySink(folder))
            const archive = await collect(stream)
            const read: string[] = []
            for await (const member of readTar(Readable.from([archive]))) {
              read.push(member.path)
              await collect(member.body)
            }

            expect(read.slice(0, -1).map((path) => encodeName(path).toString('hex'))).to.deep.equal(
              names.map((name) => Buffer.concat([Buffer.from('media/'), name]).toString('hex')),
            )
            writeFileSync(join(folder, 'media.tar'), archive)
            archives.push({folder, names})
          },
        ),
        {numRuns: 200},
      )
      expect(archives).to.have.length.greaterThan(0)
      execFileSync(
        'sh',
        [
          '-c',
          'for d in "$@"; do mkdir "$d/out" && tar -xf "$d/media.tar" -C "$d/out" || exit 1; done',
          'sh',
          ...archives.map(({folder}) => folder),
        ],
        {
          env: {...process.env, LC_ALL: 'C'},
        },
      )
      for (const {folder, names} of archives) {
        const extracted = readdirSync(join(folder, 'out', 'media'), {encoding: 'buffer'}).map((name) =>
          name.toString('hex'),
        )
        expect(extracted.sort(), folder).to.deep.equal(names.map((name) => name.toString('hex')).sort())
      }
    } finally {
      rmSync(batch, {force: true, recursive: true})
    }
  })

  it('names of any bytes round-trip through create, download and tar -x, and restore (property, both formats)', async function () {
    requireTool(this, 'tar', 'tar')
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('tar', 'packs'),
        fc.uniqueArray(segment, {maxLength: 24, minLength: 8, selector: (bytes) => bytes.toString('hex')}),
        async (format, names) => {
          const project = makeProject()
          try {
            const media = join(project.root, 'media')
            rmSync(media, {force: true, recursive: true})
            mkdirSync(media)
            const [folderName, ...fileNames] = names
            const folder = Buffer.concat([Buffer.from(`${media}/`), folderName])
            mkdirSync(folder)
            for (const [index, name] of fileNames.entries()) {
              const parent = index % 2 ? folder : Buffer.from(media)
              writeFileSync(Buffer.concat([parent, Buffer.from('/'), name]), `content ${index}`)
            }

            const environment = {media: 'media', mediaFormat: format, store: './.divio/backups'}
            // eslint-disable-next-line perfectionist/sort-objects -- the order picks the default environment
            writeEnvironments(project, {live: environment, copy: {...environment, media: 'copy'}})
            const created = await cli(project, ['create', '--media-only', '--json'])
            expect(created.status, created.stderr).to.equal(0)
            expect(created.stderr).to.not.match(/skipped/)
            const {id} = created.json() as {id: string}
            const source = describeTree(media)

            const downloaded = await cli(project, ['download', id, '-o', 'out'])
            expect(downloaded.status, downloaded.stderr).to.equal(0)
            const extracted = join(project.root, 'extracted')
            mkdirSync(extracted)
            execFileSync('tar', ['-xf', join(project.root, 'out', 'media.tar'), '-C', extracted])
            expect(treeDifferences(source, describeTree(join(extracted, 'media')))).to.deep.equal([])

            const restored = await cli(project, [
              'restore',
              id,
              '--to-env',
              'copy',
              '--confirm',
              'copy',
              '--media-only',
            ])
            expect(restored.status, restored.stderr).to.equal(0)
            expect(treeDifferences(source, describeTree(join(project.root, 'copy')))).to.deep.equal([])
          } finally {
            rmSync(join(project.root, '..'), {force: true, recursive: true})
          }
        },
      ),
      {numRuns: 4},
    )
  })
})

/** A listing sink that spools into a file, as the real one does, without its checks. */
function memorySink(folder: string): ListingSink {
  const rows: string[] = []
  return {
    add(row) {
      rows.push(JSON.stringify(row))
    },
    async discard() {},
    async finish() {
      const path = join(folder, 'MANIFEST.json')
      writeFileSync(path, `{"files":[${rows.join(',\n')}]}\n`)
      return {bytes: Buffer.byteLength(`{"files":[${rows.join(',\n')}]}\n`), path}
    },
  }
}
