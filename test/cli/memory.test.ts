import {expect} from 'chai'
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync} from 'node:fs'
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
  return peakRss(project, ['create', '--media-only'])
}

/** Peak RSS (MiB) of one command, in a process of its own: its peak RSS is what is measured. */
async function peakRss(project: Project, args: string[]): Promise<number> {
  const report = join(project.root, 'rss.txt')
  const result = await cli(
    project,
    args,
    {NODE_OPTIONS: `--import=${join(repoRoot, 'test', 'fixtures', 'report-rss.mjs')}`, RSS_REPORT: report},
    {process: true},
  )
  expect(result.status, result.stderr).to.equal(0)
  return Number(readFileSync(report, 'utf8')) / 1024
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

  it('peak RSS of create, and of a restore in place, stays under 150 MiB over 100,000 tiny files', async function () {
    // In memory where it can be: making and removing 100,000 files on a disk is seconds of system
    // time, and the peak RSS of the commands does not depend on it.
    const under = mkdtempSync(join(bigTreeParent(), 'divio-memory-'))
    try {
      const project = makeProject({under})
      const created = await measure(project, (media) => {
        for (let index = 0; index < 100_000; index++) {
          const folder = join(media, String(index % 100))
          if (index < 100) mkdirSync(folder)
          writeFileSync(join(folder, `f${index}`), String(index))
        }
      })
      console.log(`      peak RSS: ${created.toFixed(0)} MiB over 100,000 tiny files`)
      expect(created).to.be.lessThan(150)
      // The restore extracts beside the media, swaps, then removes the media it replaced: all 100,000
      // files again (a recursive fs.rm, which unlinks every name at once, took this to 280 MiB).
      const restored = await peakRss(project, [
        'restore',
        'latest',
        '--media-only',
        '--confirm',
        'local',
        '--no-safety-backup',
      ])
      console.log(`      peak RSS: ${restored.toFixed(0)} MiB restoring them in place`)
      expect(restored).to.be.lessThan(150)
      expect(readdirSync(join(project.root, 'media', '7'))).to.have.length(1000)
    } finally {
      rmSync(under, {force: true, recursive: true})
    }
  })
})
