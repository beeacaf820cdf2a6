import {expect} from 'chai'
import * as fc from 'fast-check'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {IndexEntry, indexHeaderLine, indexLine} from '../../src/media-format/packs/media-index.js'
import {openIndexLines, readIndexLines} from '../../src/media-format/packs/read.js'
import {openUnder} from '../helpers/processes.js'

/**
 * Every command that reads a packed backup's index reads the decrypted file through readIndexLines,
 * and removes its folder afterwards: whichever way the reading ends, the file is closed by then.
 */
describe('the lines of a decrypted index', () => {
  let folder: string
  let path: string

  before(() => {
    folder = mkdtempSync(join(tmpdir(), 'index-lines-'))
    path = join(folder, 'backup.index')
    const folders = Array.from({length: 20_000}, (_, index) =>
      indexLine({mode: 0o755, mtimeMs: 0, path: `folder-${index}`, size: 0, type: 'directory'}),
    )
    writeFileSync(path, `${indexHeaderLine()}\n${folders.join('\n')}\n`)
  })

  after(() => rmSync(folder, {force: true, recursive: true}))

  it('are read to the end, and the file is closed', async () => {
    let count = 0
    for await (const entry of readIndexLines(path)) if (entry.type === 'directory') count++
    expect(count).to.equal(20_000)
    expect(openUnder(folder)).to.deep.equal([])
  })

  it('close the file when their reader stops early', async () => {
    for await (const entry of readIndexLines(path)) if (entry.path === 'folder-10') break
    expect(openUnder(folder)).to.deep.equal([])
  })

  it('close the file when their reader fails', async () => {
    const failure = await (async () => {
      for await (const entry of readIndexLines(path)) if (entry.path === 'folder-10') throw new Error('stop')
    })().catch((error: Error) => error.message)
    expect(failure).to.equal('stop')
    expect(openUnder(folder)).to.deep.equal([])
  })

  it('close the file when a line is damaged', async () => {
    const damaged = join(folder, 'damaged.index')
    writeFileSync(
      damaged,
      `${indexHeaderLine()}\n${indexLine({mode: 0o755, mtimeMs: 0, path: 'a', size: 0, type: 'directory'})}\n{"not": "an entry"}\n`,
    )
    const failure = await (async () => {
      for await (const entry of readIndexLines(damaged)) expect(entry.path).to.equal('a')
    })().catch((error: Error) => error)
    expect(failure).to.be.instanceOf(Error)
    expect(openUnder(folder)).to.deep.equal([])
  })

  it("are the entries written, whatever characters fall across the file's reads (property)", async () => {
    // Names of several-byte characters (and escaped non-UTF-8 bytes), long enough that lines and
    // characters straddle the reads of the file; the last line with or without its newline.
    const name = fc
      .array(fc.constantFrom('a', 'ä', '€', '😀', '\uDCE9', ' ', '"', '\\'), {
        maxLength: 400,
        minLength: 100,
        size: 'max',
      })
      .map((parts) => parts.join(''))
    await fc.assert(
      fc.asyncProperty(
        fc.array(name, {maxLength: 200, minLength: 20, size: 'max'}),
        fc.boolean(),
        async (names, endsWithNewline) => {
          const entries: IndexEntry[] = names.map((path, index) => ({
            mode: 0o755,
            mtimeMs: index,
            path,
            size: 0,
            type: 'directory',
          }))
          const file = join(folder, 'property.index')
          const text = indexHeaderLine() + entries.map((entry) => indexLine(entry)).join('')
          writeFileSync(file, endsWithNewline ? text : text.replace(/\n$/, ''))
          const read: IndexEntry[] = []
          for await (const entry of readIndexLines(file)) read.push(entry)
          expect(read).to.deep.equal(entries)
          const batched: IndexEntry[] = []
          for await (const batch of openIndexLines(file).batches) batched.push(...batch)
          expect(batched).to.deep.equal(entries)
          expect(openUnder(folder)).to.deep.equal([])
        },
      ),
      // Without shrinking: cases this size shrink for minutes, and the seed replays one.
      {endOnFailure: true, numRuns: 40},
    )
  })

  it('read a line that spans many reads of the file: a file of 30,000 blobs', async () => {
    const blob = (index: number): [string, string] => [index.toString(16).padStart(64, '0'), `${'a'.repeat(32)}.age`]
    const large: IndexEntry = {
      blobs: Array.from({length: 30_000}, (_, index) => blob(index)),
      mode: 0o644,
      mtimeMs: 0,
      path: 'large.bin',
      size: 30_000 * 1024 * 1024,
      type: 'file',
    }
    const small: IndexEntry = {mode: 0o755, mtimeMs: 1, path: 'z', size: 0, type: 'directory'}
    const file = join(folder, 'large.index')
    writeFileSync(file, indexHeaderLine() + indexLine(large) + indexLine(small))
    const read: IndexEntry[] = []
    for await (const entry of readIndexLines(file)) read.push(entry)
    expect(read).to.deep.equal([large, small])
  })

  it('refuse a file whose first line is not the header', async () => {
    const headless = join(folder, 'headless.index')
    writeFileSync(headless, indexLine({mode: 0o755, mtimeMs: 0, path: 'a', size: 0, type: 'directory'}))
    const failure = await (async () => {
      for await (const entry of readIndexLines(headless)) expect(entry).to.equal(undefined)
    })().catch((error: Error) => error.message)
    expect(failure).to.match(/not a divio media index/)
    expect(openUnder(folder)).to.deep.equal([])
  })
})
