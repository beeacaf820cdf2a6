import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {once} from 'node:events'
import {
  createWriteStream,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {setTimeout as sleep} from 'node:timers/promises'

import {Manifest} from '../../src/domain/manifest.js'
import {BackupError} from '../../src/errors.js'
import {CheckedContents} from '../../src/media-format/checked-contents.js'
import {storedMedia} from '../../src/media-format/index.js'
import {StoredMedia, TarStream} from '../../src/media-format/port.js'
import {BackupContext} from '../../src/services/context.js'
import {createBackup} from '../../src/services/create.js'
import {ObjectCheckError, readVerified} from '../../src/services/read.js'
import {Store} from '../../src/store/port.js'
import {contextFor} from '../helpers/context.js'
import {countingGets} from '../helpers/counting-store.js'
import {openUnder} from '../helpers/processes.js'
import {cli, makeProject, Project, snapshotTree, writerKeyFile} from '../helpers/project.js'
import {writeRandomFile} from '../helpers/tools.js'

/** Each entry's mode and mtime (whole seconds) below `root` (a link's own), by path. */
function metadataOf(root: string): Record<string, string> {
  const entries = readdirSync(root, {recursive: true}).map(String).sort()
  return Object.fromEntries(
    entries.map((path) => {
      const info = lstatSync(join(root, path))
      return [path, `${(info.mode & 0o7777).toString(8)} ${Math.floor(info.mtimeMs / 1000)}`]
    }),
  )
}

/**
 * Stops reading media.tar, and expects its check to settle (a hang fails the test by its timeout), as
 * failed, with nothing the read staged in `tempDir` (a packed backup's decrypted index, the listing
 * being built) still open: the caller removes the folder next, and an open descriptor would keep the
 * plaintext on disk.
 */
async function stopReading({checked, stream}: TarStream, tempDir: string): Promise<void> {
  stream.destroy()
  const outcome = await checked.then(
    () => 'resolved',
    () => 'rejected',
  )
  expect(outcome).to.equal('rejected')
  expect(openUnder(tempDir)).to.deep.equal([])
}

/**
 * The media-format port's contract: what verify, download, export, url and info rely on, held by
 * each format the same way, through the port alone.
 */
for (const format of ['tar', 'packs'] as const) {
  describe(`media format contract: ${format}`, function () {
    let project: Project
    let context: BackupContext
    let manifest: Manifest
    let media: StoredMedia

    const identities = () => context.keys.identities()

    before(async () => {
      project = makeProject()
      // The first create makes the owner's identity and this machine's writer key.
      expect((await cli(project, ['create', '--db-only'])).status).to.equal(0)
      const folder = join(project.root, 'media')
      mkdirSync(join(folder, 'photos'), {recursive: true})
      // Text, which compresses, and a "video", which does not: both kinds of pack, in the packs format.
      writeFileSync(join(folder, 'notes.txt'), 'A line of notes, again and again.\n'.repeat(20_000))
      writeRandomFile(join(folder, 'photos', 'clip.mp4'), 3 * 1024 * 1024 + 5)
      const variables = {
        ...project.env,
        DIVIO_BACKUP_IDENTITY_FILE: project.identityFile,
        DIVIO_BACKUP_MEDIA_FORMAT: format,
        DIVIO_BACKUP_WRITER_KEY_FILE: writerKeyFile(project),
      }
      context = await contextFor(project, variables)
      const {id} = await createBackup(context, {database: false, media: true, trigger: 'on-demand'})
      manifest = JSON.parse(readFileSync(join(project.store, 'shop', 'local', id, 'manifest.json'), 'utf8')) as Manifest
      media = storedMedia(manifest)!
    })

    it('backs up in the format the environment asks for', () => {
      expect(media).to.not.equal(undefined)
      expect('format' in manifest.components.media! ? 'packs' : 'tar').to.equal(format)
    })

    it('names its own objects, each of which authenticates to the plaintext it records', async () => {
      const names = readdirSync(join(project.store, 'shop', 'local', manifest.id))
      expect(media.ownObjects.length).to.be.greaterThan(0)
      for (const {compression, object, plaintext} of media.ownObjects) {
        expect(names).to.include(object.name)
        await readVerified(context, manifest, {compression, identities: await identities(), object, plaintext})
      }
    })

    it('checks out in full and by sample', async () => {
      for (const samplePercent of [undefined, 100]) {
        const reports = await media.checkContent(context, await identities(), {
          checked: new CheckedContents(),
          samplePercent,
        })
        expect(
          reports.every((report) => report.ok),
          JSON.stringify(reports),
        ).to.equal(true)
      }
    })

    it('gives back media.tar: a standard tar of the tree, MANIFEST.json last', async () => {
      const path = join(project.root, `media-${format}.tar`)
      const {tar} = media
      if ('build' in tar) {
        const tempDir = join(project.root, 'build-temp')
        mkdirSync(tempDir)
        await tar.build(context, await identities(), path, tempDir)
      } else {
        const {compression, object, plaintext} = tar.object
        const sink = createWriteStream(path)
        await readVerified(context, manifest, {compression, identities: await identities(), object, plaintext, sink})
      }

      const members = execFileSync('tar', ['-tf', path], {encoding: 'utf8'}).trim().split('\n')
      expect(members.at(-1)).to.equal('MANIFEST.json')
      const out = join(project.root, `extracted-${format}`)
      mkdirSync(out)
      execFileSync('tar', ['-xf', path, '-C', out])
      expect(snapshotTree(join(out, 'media'))).to.deep.equal(snapshotTree(join(project.root, 'media')))
    })

    it('streams the same media.tar, and says when all of it has checked out', async () => {
      const tempDir = join(project.root, `open-temp-${format}`)
      mkdirSync(tempDir)
      const {checked, stream} = await media.openTar(context, await identities(), tempDir)
      const path = join(tempDir, 'streamed.tar')
      await pipeline(stream, createWriteStream(path))
      await checked
      const out = join(tempDir, 'extracted')
      mkdirSync(out)
      execFileSync('tar', ['-xf', path, '-C', out])
      expect(snapshotTree(join(out, 'media'))).to.deep.equal(snapshotTree(join(project.root, 'media')))
      expect(execFileSync('tar', ['-tf', path], {encoding: 'utf8'})).to.equal(
        execFileSync('tar', ['-tf', join(project.root, `media-${format}.tar`)], {encoding: 'utf8'}),
      )
    })

    it('writes the media into a new folder, the same tree, with nothing left open in its temp folder', async () => {
      const tempDir = join(project.root, `extract-temp-${format}`)
      mkdirSync(tempDir)
      const folder = join(project.root, `written-${format}`)
      const summary = await media.extract(context, await identities(), {folder, tempDir})
      expect(snapshotTree(folder)).to.deep.equal(snapshotTree(join(project.root, 'media')))
      // The same modes, and times to the second, as stock tar gives the media.tar the format gives back
      // (whose headers hold whole seconds unless a name needs a pax header).
      const byTar = join(tempDir, 'by-tar')
      mkdirSync(byTar)
      execFileSync('tar', ['-xf', join(project.root, `media-${format}.tar`), '-C', byTar])
      expect(metadataOf(folder)).to.deep.equal(metadataOf(join(byTar, 'media')))
      const files = readdirSync(join(project.root, 'media'), {recursive: true, withFileTypes: true}).filter((entry) =>
        entry.isFile(),
      )
      expect(summary.files).to.equal(files.length)
      expect(summary.bytes).to.equal(
        files.reduce((total, entry) => total + statSync(join(entry.parentPath, entry.name)).size, 0),
      )
      expect(openUnder(tempDir)).to.deep.equal([])
    })

    it('a media.tar built from parts, whose read fails at once, returns only once its file is closed', async () => {
      const {tar} = media
      // The tar format stores media.tar whole: there is nothing to build, and a reader streams the object.
      if (!('build' in tar)) {
        expect(tar.object.object.name).to.match(/^media\.tar/)
        return
      }

      // The last own object goes missing: its read fails at once, while media.tar is being written.
      const [own] = media.ownObjects.slice(-1)
      const stored = join(project.store, 'shop', 'local', manifest.id, own.object.name)
      const aside = `${stored}.aside`
      renameSync(stored, aside)
      try {
        const folder = join(project.root, `failing-build-${format}`)
        mkdirSync(folder)
        const outcome = await tar
          .build(context, await identities(), join(folder, 'media.tar'), folder)
          .catch((error: unknown) => error)
        expect(outcome).to.be.instanceOf(ObjectCheckError)
        // The caller removes the folder next: the file must not still be open, or being opened, there.
        expect(openUnder(folder).filter((path) => path.endsWith('/media.tar'))).to.deep.equal([])
      } finally {
        renameSync(aside, stored)
      }
    })

    it('a consumer that stops reading settles the check, rather than leaving it hanging', async () => {
      const tempDir = join(project.root, `stopped-temp-${format}`)
      mkdirSync(tempDir)
      const {checked, stream} = await media.openTar(context, await identities(), tempDir)
      await once(stream, 'readable')
      await stopReading({checked, stream}, tempDir)
    })

    it('a consumer that stops while a read of the store hangs settles the check, with nothing left open', async () => {
      const tempDir = join(project.root, `hung-temp-${format}`)
      mkdirSync(tempDir)
      // The store answers every read but those of the media's content, which never send a byte: a
      // hung mount, or a network that went quiet.
      const hung: Readable[] = []
      const {store} = context
      const stalled: BackupContext = {
        ...context,
        store: Object.assign(Object.create(store) as Store, {
          async get(key: string) {
            if (!key.includes('/packs/') && !key.endsWith('/media.tar.age')) return store.get(key)
            const never = new Readable({read() {}})
            hung.push(never)
            return never
          },
        }),
      }
      const {checked, stream} = await media.openTar(stalled, await identities(), tempDir)
      stream.resume()
      while (hung.length === 0) await sleep(10)
      // The read still hangs, and what the read staged in tempDir is closed all the same.
      await stopReading({checked, stream}, tempDir)

      // Writing the media into a folder, stopped (SIGINT) while a read hangs, ends with the stop, and
      // leaves neither the folder nor anything open.
      const stop = new AbortController()
      const folder = join(project.root, `hung-extract-${format}`)
      const stopping = {...stalled, signal: stop.signal}
      const reads = hung.length
      const extracting = media.extract(stopping, await identities(), {folder, tempDir}).then(
        () => 'resolved',
        (error: unknown) => error,
      )
      while (hung.length === reads) await sleep(10)
      const reason = new BackupError('INTERRUPTED', 'Interrupted by SIGINT.')
      stop.abort(reason)
      expect(await extracting).to.equal(reason)
      expect(existsSync(folder)).to.equal(false)
      expect(openUnder(tempDir)).to.deep.equal([])
    })

    it('links only to objects the store holds', async () => {
      const {targets} = await media.links(context)
      if (format === 'packs') expect(targets.length).to.be.greaterThan(1)
      for (const target of targets) expect(await context.store.stat(target.key), target.key).to.not.equal(undefined)
    })

    it('a flipped byte in any media object it stores fails its own objects or its content check', async () => {
      const environment = join(project.store, 'shop', 'local')
      const stored = [
        ...media.ownObjects.map((own) => join(environment, manifest.id, own.object.name)),
        ...(existsSync(join(environment, 'packs')) ? readdirSync(join(environment, 'packs')) : [])
          .filter((name) => name.endsWith('.age'))
          .map((name) => join(environment, 'packs', name)),
      ]
      for (const path of stored) {
        const original = readFileSync(path)
        const damaged = Buffer.from(original)
        damaged[Math.floor(damaged.length / 2)] ^= 0x01
        writeFileSync(path, damaged)
        try {
          const ownFailed = await Promise.all(
            media.ownObjects.map(async ({compression, object, plaintext}) =>
              readVerified(context, manifest, {compression, identities: await identities(), object, plaintext}).then(
                () => false,
                () => true,
              ),
            ),
          )
          const reports = ownFailed.includes(true)
            ? []
            : await media.checkContent(context, await identities(), {checked: new CheckedContents()})
          expect(ownFailed.includes(true) || reports.some((report) => !report.ok), path).to.equal(true)
          // A stream of media.tar reads all of it: the damage fails the stream or its check, by name.
          const tempDir = mkdtempSync(join(project.root, 'damaged-'))
          const checkFailure = await media.openTar(context, await identities(), tempDir).then(
            async ({checked, stream}) => {
              const reading = (async () => {
                for await (const chunk of stream) expect(chunk).to.be.instanceOf(Buffer)
              })().catch(() => {})
              const failure = await checked.then(
                () => {},
                (error: unknown) => error,
              )
              await reading
              return failure
            },
            (error: unknown) => error,
          )
          expect(checkFailure, path).to.be.instanceOf(ObjectCheckError)
          // Written into a folder (restore), the damage fails it by name too, and the folder is gone.
          const extractTemp = mkdtempSync(join(project.root, 'damaged-extract-'))
          const folder = join(extractTemp, 'media')
          const extractFailure = await media.extract(context, await identities(), {folder, tempDir: extractTemp}).then(
            () => {},
            (error: unknown) => error,
          )
          expect(extractFailure, path).to.be.instanceOf(ObjectCheckError)
          expect(existsSync(folder), path).to.equal(false)
          expect(openUnder(extractTemp), path).to.deep.equal([])
        } finally {
          writeFileSync(path, original)
          // A pack that failed is remembered on this machine; the next check starts afresh.
          rmSync(context.statePath, {force: true})
        }
      }
    })

    it('a run that checks several backups reads what they share once', async () => {
      // A second backup of the same tree, with a copy of one of its files.
      const copy = join(project.root, 'media', 'notes copy.txt')
      writeFileSync(copy, readFileSync(join(project.root, 'media', 'notes.txt')))
      const {id} = await createBackup(context, {database: false, media: true, trigger: 'on-demand'})
      rmSync(copy)
      const second = storedMedia(
        JSON.parse(readFileSync(join(project.store, 'shop', 'local', id, 'manifest.json'), 'utf8')) as Manifest,
      )!
      const {gets, store} = countingGets(context.store)
      const checked = new CheckedContents()
      for (const backup of [media, second]) {
        const reports = await backup.checkContent({...context, store}, await identities(), {checked})
        expect(
          reports.every((report) => report.ok),
          JSON.stringify(reports),
        ).to.equal(true)
      }

      // What the backups lead to outside their own folders, each read at most once (their manifests,
      // which a check reads to know which packs are trusted, aside).
      const shared = [...gets].filter(
        ([key]) => !key.endsWith('/manifest.json') && !key.includes(`/${manifest.id}/`) && !key.includes(`/${id}/`),
      )
      expect(shared.filter(([, count]) => count > 1)).to.deep.equal([])
      if (format === 'packs') expect(shared.length).to.be.greaterThan(1)
    })
  })
}
