import {expect} from 'chai'
import * as fc from 'fast-check'
import {readdirSync, readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'

import {Manifest, MediaPacksComponent} from '../../src/domain/manifest.js'
import {CHANGE_TIME_WINDOW_MS, changeTimeSettled} from '../../src/media-format/packs/media-index.js'
import {createBackup} from '../../src/services/create.js'
import {contextFor} from '../helpers/context.js'
import {cli, makeProject, writerKeyFile} from '../helpers/project.js'

/**
 * A packed backup does not read a file whose size, mtime, inode and ctime are those its previous
 * backup recorded. A file written again within the tick of its change time keeps that change time:
 * read in that tick and then rewritten at the same size, it would keep its old blobs for good. The
 * rule against it (changeTimeSettled) is checked against a model of file systems' clocks, and end to
 * end with the walk's start placed against the files' change times.
 */
/** A file system's clock, in microseconds. */
interface FileClock {
  granularityUs: number
  skewUs: number
  tickUs: number
}

describe('change times close to a walk (racily clean files)', () => {
  it('a change time the rule settles is never the change time of a write after the walk started (property)', () => {
    // Times in whole microseconds, so that the model is exact. A file system stamps a write with its
    // clock, which may run apart from this machine's (a file server's), as read at its last tick, cut
    // to its granularity.
    const clock = fc.record({
      granularityUs: fc.constantFrom(1, 1000, 10_000, 1_000_000, 2_000_000),
      skewUs: fc.integer({max: 500_000, min: -500_000}),
      tickUs: fc.constantFrom(1, 1000, 4000, 10_000, 15_625),
    })
    const stamp = (at: number, {granularityUs, skewUs, tickUs}: FileClock) => {
      const coarse = Math.floor((at - skewUs) / tickUs) * tickUs
      return Math.floor(coarse / granularityUs) * granularityUs
    }

    fc.assert(
      fc.property(
        clock,
        fc.integer({max: 2_000_000_000_000, min: 1_000_000_000_000}),
        fc.integer({max: 10_000_000, min: -10_000_000}),
        fc.integer({max: 10_000_000, min: 0}),
        (fileClock, walkStartedUs, firstWriteOffset, readToSecondWrite) => {
          // Written before the walk started or while it ran, stat'ed and read by it, then written again:
          // the second write comes after the read, which comes after both the first and the start.
          const firstWrite = walkStartedUs + firstWriteOffset
          const secondWrite = Math.max(firstWrite, walkStartedUs) + readToSecondWrite
          const ctime = stamp(firstWrite, fileClock)
          if (changeTimeSettled(ctime / 1000, walkStartedUs / 1000)) {
            expect(stamp(secondWrite, fileClock)).to.not.equal(ctime)
          }
        },
      ),
      {numRuns: 20_000},
    )
  })

  it('settles a change time only when it lies more than the window before the walk', () => {
    const start = 1_800_000_000_000
    expect(changeTimeSettled(start - CHANGE_TIME_WINDOW_MS - 0.001, start)).to.equal(true)
    expect(changeTimeSettled(start - CHANGE_TIME_WINDOW_MS, start)).to.equal(false)
    expect(changeTimeSettled(start, start)).to.equal(false)
    expect(changeTimeSettled(start + 60_000, start)).to.equal(false)
    expect(changeTimeSettled(start - 1000, Number.NaN)).to.equal(false)
  })

  it('a file read too close to its last change is read again by the next backup, and not by the one after', async () => {
    const project = makeProject()
    // The first create makes the owner's identity and this machine's writer key.
    expect((await cli(project, ['create', '--db-only'])).status).to.equal(0)
    const variables = {
      ...project.env,
      DIVIO_BACKUP_IDENTITY_FILE: project.identityFile,
      DIVIO_BACKUP_MEDIA_FORMAT: 'packs',
      DIVIO_BACKUP_WRITER_KEY_FILE: writerKeyFile(project),
    }
    const media = join(project.root, 'media')
    const changeTimes = readdirSync(media, {recursive: true, withFileTypes: true})
      .filter((entry) => entry.isFile())
      .map((entry) => statSync(join(entry.parentPath, entry.name)).ctimeMs)
    expect(changeTimes).to.have.length(4)
    const earliest = Math.min(...changeTimes)
    const latest = Math.max(...changeTimes)

    /** Backs up the media with the walk starting at `walkStartedMs`, and returns how many files it read. */
    const filesReadWhenWalkStarts = async (walkStartedMs: number) => {
      const context = {...(await contextFor(project, variables)), wallClockMs: () => walkStartedMs}
      const {id} = await createBackup(context, {database: false, media: true, trigger: 'on-demand'})
      const manifest = JSON.parse(
        readFileSync(join(project.store, 'shop', 'local', id, 'manifest.json'), 'utf8'),
      ) as Manifest
      return (manifest.components.media as MediaPacksComponent).stored.filesRead
    }

    // Every file changed within the window before the walk: read, and known by no change time.
    expect(await filesReadWhenWalkStarts(earliest + CHANGE_TIME_WINDOW_MS)).to.equal(4)
    // So all are read again, this time well after their change.
    expect(await filesReadWhenWalkStarts(latest + CHANGE_TIME_WINDOW_MS + 1)).to.equal(4)
    // And are then known by it.
    expect(await filesReadWhenWalkStarts(latest + CHANGE_TIME_WINDOW_MS + 2)).to.equal(0)
  })
})
