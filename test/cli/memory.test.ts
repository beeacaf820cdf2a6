import {expect} from 'chai'
import {mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {bigTreeParent} from '../helpers/big-tree.js'
import {cli, makeProject, Project, repoRoot} from '../helpers/project.js'

const MiB = 1024 * 1024

/**
 * Peak RSS (MiB) of `create --media-only` over a media folder that `fill` writes, in the project made
 * `under` a folder (default: the run's temp folder).
 */
async function peakRssOfCreate(fill: (media: string) => void, under?: string): Promise<number> {
  const project = makeProject({under})
  try {
    return await measure(project, fill)
  } finally {
    // The store holds as much as the media: free the space before the next measurement.
    rmSync(under ?? join(project.root, '..'), {force: true, recursive: true})
  }
}

async function measure(project: Project, fill: (media: string) => void): Promise<number> {
  fill(join(project.root, 'media'))

  const report = join(project.root, 'rss.txt')
  // A process of its own: its peak RSS is what is measured.
  const result = await cli(
    project,
    ['create', '--media-only'],
    {NODE_OPTIONS: `--import=${join(repoRoot, 'test', 'fixtures', 'report-rss.mjs')}`, RSS_REPORT: report},
    {process: true},
  )
  expect(result.status, result.stderr).to.equal(0)
  const peak = Number(readFileSync(report, 'utf8')) / 1024
  return peak
}

/** Fills a media folder with `files` sparse files of `size` bytes each. */
const sparseFiles = (files: number, size: number) => (media: string) => {
  for (let index = 0; index < files; index++) {
    const path = join(media, `large-${index}.bin`)
    writeFileSync(path, '')
    truncateSync(path, size)
  }
}

describe('memory', () => {
  it('peak RSS of create does not grow with media size (50 MB vs 500 MB within 30 MB)', async () => {
    const small = await peakRssOfCreate(sparseFiles(1, 50 * MiB))
    const large = await peakRssOfCreate(sparseFiles(10, 50 * MiB))
    console.log(`      peak RSS: ${small.toFixed(0)} MiB at 50 MB of media, ${large.toFixed(0)} MiB at 500 MB`)
    expect(Math.abs(large - small)).to.be.lessThan(30)
    expect(large).to.be.lessThan(150)
  })

  it('peak RSS of create stays under 150 MiB over 100,000 tiny files', async function () {
    const peak = await peakRssOfCreate(
      (media) => {
        for (let index = 0; index < 100_000; index++) {
          const folder = join(media, String(index % 100))
          if (index < 100) mkdirSync(folder)
          writeFileSync(join(folder, `f${index}`), String(index))
        }
        // In memory where it can be: making and removing 100,000 files on a disk is seconds of system
        // time, and the peak RSS of the create does not depend on it.
      },
      mkdtempSync(join(bigTreeParent(), 'divio-memory-')),
    )
    console.log(`      peak RSS: ${peak.toFixed(0)} MiB over 100,000 tiny files`)
    expect(peak).to.be.lessThan(150)
  })
})
