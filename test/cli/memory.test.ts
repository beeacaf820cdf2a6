import {expect} from 'chai'
import {readFileSync, rmSync, truncateSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {cli, makeProject, repoRoot} from '../helpers/project.js'

const MiB = 1024 * 1024

/** Peak RSS (MiB) of `create --media-only` over `files` media files of `size` bytes each. */
function peakRssOfCreate(files: number, size: number): number {
  const project = makeProject()
  for (let index = 0; index < files; index++) {
    const path = join(project.root, 'media', `large-${index}.bin`)
    writeFileSync(path, '')
    truncateSync(path, size)
  }

  const report = join(project.root, 'rss.txt')
  const result = cli(project, ['create', '--media-only'], {
    NODE_OPTIONS: `--import=${join(repoRoot, 'test', 'fixtures', 'report-rss.mjs')}`,
    RSS_REPORT: report,
  })
  expect(result.status, result.stderr).to.equal(0)
  const peak = Number(readFileSync(report, 'utf8')) / 1024
  // The store now holds as much as the media: free the disk before the next measurement.
  rmSync(join(project.root, '..'), {force: true, recursive: true})
  return peak
}

describe('memory', () => {
  it('peak RSS of create does not grow with media size (50 MB vs 500 MB within 30 MB)', () => {
    const small = peakRssOfCreate(1, 50 * MiB)
    const large = peakRssOfCreate(10, 50 * MiB)
    console.log(`      peak RSS: ${small.toFixed(0)} MiB at 50 MB of media, ${large.toFixed(0)} MiB at 500 MB`)
    expect(Math.abs(large - small)).to.be.lessThan(30)
    expect(large).to.be.lessThan(150)
  })
})
