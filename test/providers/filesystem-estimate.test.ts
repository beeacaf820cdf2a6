import {expect} from 'chai'
import {mkdirSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {createListingFile} from '../../src/archive/listing.js'
import {createMediaTar} from '../../src/archive/media-tar.js'
import {FilesystemMediaProvider} from '../../src/providers/media/filesystem.js'
import {collect} from '../helpers/tools.js'

describe('the media size estimate for progress', () => {
  it('is within 10% of the archive that create writes, without reading any content', async () => {
    const root = mkdtempSync(join(tmpdir(), 'divio-estimate-'))
    for (let folder = 0; folder < 5; folder++) {
      mkdirSync(join(root, `folder-${folder}`))
      for (let file = 0; file < 40; file++) {
        writeFileSync(join(root, `folder-${folder}`, `file-${file}.bin`), Buffer.alloc(1000 + file * 997, file))
      }
    }

    const provider = new FilesystemMediaProvider(root)
    const estimate = await provider.estimateArchiveBytes(new AbortController().signal)
    const {stream, summary} = createMediaTar(
      provider.entries({signal: new AbortController().signal}),
      createListingFile(mkdtempSync(join(tmpdir(), 'divio-estimate-listing-'))),
    )
    const actual = (await collect(stream)).length
    await summary
    expect(Math.abs(estimate - actual) / actual, `estimate ${estimate}, archive ${actual}`).to.be.below(0.1)
  })
})
