import {expect} from 'chai'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {BackupError} from '../../src/errors.js'
import {catalogOf, findBackupFor} from '../../src/services/catalog.js'
import {readBackMedia, restoreMediaIntoScratch} from '../../src/services/drill-media.js'
import {contextFor} from '../helpers/context.js'
import {cli, makeProject, writerKeyFile} from '../helpers/project.js'
import {writeRandomFile} from '../helpers/tools.js'

// A name that is not UTF-8 (Latin-1 "é"), as an old upload handler writes it.
const LATIN1_NAME = Buffer.from('caf\u00E9.txt', 'latin1')

/**
 * A drill's media, between its restore into scratch and its read-back: what it restored is recorded
 * as written, and a file that changed on disk after it was written, or went missing, fails the
 * read-back by name, in both media formats; a large file (streamed, not written on the writer thread)
 * and a name that is not UTF-8 included.
 */
describe("drill's media: restored as restore writes it, then read back against what was written", function () {
  for (const format of ['tar', 'packs'] as const) {
    it(`${format} format`, async () => {
      const project = makeProject()
      const media = join(project.root, 'media')
      writeFileSync(Buffer.concat([Buffer.from(`${media}/`), LATIN1_NAME]), 'bonjour\n')
      writeRandomFile(join(media, 'large.bin'), 3 * 1024 * 1024)
      const env = {...project.env, DIVIO_BACKUP_MEDIA_FORMAT: format}
      const created = await cli(project, ['create', '--media-only'], env)
      expect(created.status, created.stderr).to.equal(0)
      const context = await contextFor(project, {
        ...env,
        DIVIO_BACKUP_IDENTITY_FILE: project.identityFile,
        DIVIO_BACKUP_WRITER_KEY_FILE: writerKeyFile(project),
      })
      const {manifest} = findBackupFor(context, await catalogOf(context), 'latest')

      const scratch = mkdtempSync(join(project.root, '..', 'scratch-'))
      const restored = await restoreMediaIntoScratch(context, manifest, scratch)
      expect(restored.files).to.equal(manifest.components.media!.files)
      const record = readFileSync(restored.record, 'utf8').trimEnd().split('\n')
      expect(record).to.have.length(restored.files)
      expect((await readBackMedia(context, restored, 100)).check).to.include({name: 'media', ok: true})
      expect((await readBackMedia(context, restored, 100)).check.detail).to.equal(
        `${restored.files} files restored and checked as they were written; ${restored.files} of ${restored.files} read back from disk`,
      )

      // Changed on disk after it was written: the large file, and the one with a Latin-1 name.
      const large = join(restored.folder, 'large.bin')
      const bytes = readFileSync(large)
      bytes[bytes.length - 1] ^= 1
      writeFileSync(large, bytes)
      writeFileSync(Buffer.concat([Buffer.from(`${restored.folder}/`), LATIN1_NAME]), 'bonsoir\n')
      const changed = await readBackMedia(context, restored, 100)
      expect(changed.check.ok).to.equal(false)
      expect(changed.check.detail).to.equal(
        'read back from disk, 2 files differ from what was restored: caf\uDCE9.txt, large.bin',
      )

      // A file that is gone does not read back either.
      rmSync(join(restored.folder, 'uploads', 'readme.txt'))
      const missing = await readBackMedia(context, restored, 100)
      expect(missing.check.ok).to.equal(false)
      expect(missing.check.detail).to.match(
        /^read back from disk, 3 files differ .*: caf\uDCE9\.txt, large\.bin, uploads\/readme\.txt$/,
      )

      // A record that cannot be written (here: its name is taken) fails the restore into scratch as the
      // temp folder's failure, whichever write meets it first: one during the extraction, as here (the
      // record of 1,500 more files fills the spool), or its last one.
      for (let index = 0; index < 1500; index++) writeFileSync(join(media, `thumb-${index}.jpg`), `thumbnail ${index}`)
      const more = await cli(project, ['create', '--media-only'], env)
      expect(more.status, more.stderr).to.equal(0)
      const {manifest: larger} = findBackupFor(context, await catalogOf(context), 'latest')
      for (const backup of [manifest, larger]) {
        const taken = mkdtempSync(join(project.root, '..', 'scratch-'))
        writeFileSync(join(taken, 'written-files.txt'), '')
        const failed = await restoreMediaIntoScratch(context, backup, taken).then(
          () => {},
          (error: unknown) => error as BackupError,
        )
        expect(failed).to.be.instanceOf(BackupError)
        expect(failed!.code).to.equal('OUTPUT_UNAVAILABLE')
        expect(failed!.message).to.include('written-files.txt')
        expect((failed!.cause as NodeJS.ErrnoException).code).to.equal('EEXIST')
      }
    })
  }
})
