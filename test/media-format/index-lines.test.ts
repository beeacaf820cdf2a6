import {expect} from 'chai'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {indexHeaderLine, indexLine} from '../../src/media-format/packs/media-index.js'
import {readIndexLines} from '../../src/media-format/packs/read.js'
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
})
