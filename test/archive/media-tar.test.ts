import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {setTimeout as delay} from 'node:timers/promises'

import {createListingFile} from '../../src/archive/listing.js'
import {createMediaTar, MediaEntry} from '../../src/archive/media-tar.js'
import {openUnder} from '../helpers/processes.js'
import {collect, requireTool} from '../helpers/tools.js'

function fileEntry(path: string, data: Buffer, declaredSize = data.length): MediaEntry {
  return {
    mode: 0o10_0644,
    mtime: new Date('2026-01-02T03:04:05Z'),
    open: async () => Readable.from([data]),
    path,
    size: declaredSize,
    type: 'file',
  }
}

async function* fromArray(entries: MediaEntry[]): AsyncIterable<MediaEntry> {
  yield* entries
}

describe('media tar', () => {
  it('is read by system tar, with every member, long and non-ASCII names, and MANIFEST.json last', async function () {
    requireTool(this, 'tar', 'tar')
    const folder = mkdtempSync(join(tmpdir(), 'media-tar-'))
    const longName = `${'verzeichnis-'.repeat(12)}/${'datei-ä-'.repeat(20)}.bin`
    const data = Buffer.from(Array.from({length: 70_000}, (_, index) => index % 256))
    const {stream, summary} = createMediaTar(
      fromArray([
        {mode: 0o4_0755, mtime: new Date(0), path: 'docs', size: 0, type: 'directory'},
        fileEntry('docs/a.txt', Buffer.from('alpha')),
        fileEntry(longName, data),
        fileEntry('empty', Buffer.alloc(0)),
        {linkTarget: 'docs/a.txt', mode: 0o12_0777, mtime: new Date(0), path: 'link', size: 0, type: 'symlink'},
      ]),
      createListingFile(folder),
    )
    const archive = await collect(stream)
    expect(await summary).to.deep.equal({files: 3, totalFileBytes: 70_005})
    expect(archive.length % 512).to.equal(0)
    const tarFile = join(folder, 'media.tar')
    writeFileSync(tarFile, archive)
    const members = execFileSync('tar', ['-tf', tarFile]).toString().trim().split('\n')
    expect(members).to.deep.equal([
      'media/docs/',
      'media/docs/a.txt',
      `media/${longName}`,
      'media/empty',
      'media/link',
      'MANIFEST.json',
    ])
    const extracted = execFileSync('tar', ['-xOf', tarFile, `media/${longName}`], {maxBuffer: 1 << 24})
    expect(extracted.equals(data)).to.equal(true)

    const listing = JSON.parse(execFileSync('tar', ['-xOf', tarFile, 'MANIFEST.json']).toString()) as {
      files: Record<string, unknown>[]
      format: string
    }
    expect(listing.format).to.equal('divio-media-listing')
    expect(listing.files.map((row) => row.path)).to.deep.equal(['docs', 'docs/a.txt', longName, 'empty', 'link'])
    expect(listing.files[1]).to.deep.equal({
      mode: '0644',
      mtime: '2026-01-02T03:04:05.000Z',
      path: 'docs/a.txt',
      sha256: createHash('sha256').update('alpha').digest('hex'),
      size: 5,
      type: 'file',
    })
    expect(listing.files[4]).to.include({linkTarget: 'docs/a.txt', type: 'symlink'})
    expect(JSON.parse(readFileSync(join(folder, 'MANIFEST.json'), 'utf8'))).to.deep.equal(listing)
  })

  it('fails, naming the file, when a file shrank while it was read', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'media-tar-'))
    const {stream, summary} = createMediaTar(
      fromArray([fileEntry('shrunk.bin', Buffer.alloc(10), 100)]),
      createListingFile(folder),
    )
    const error = await collect(stream).catch((error_: unknown) => error_)
    expect((error as Error).message).to.include('shrunk.bin shrank while it was being read')
    expect(await summary.catch((error_: Error) => error_.message)).to.include('shrank')
  })

  it('archives a file that grew at the size it was listed with, and leaves out a file that vanished', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'media-tar-'))
    // eslint-disable-next-line unicorn/no-useless-undefined -- undefined is the provider's "file vanished" answer
    const vanished: MediaEntry = {...fileEntry('gone', Buffer.alloc(1)), open: async () => undefined}
    const {stream} = createMediaTar(
      fromArray([fileEntry('grown', Buffer.from('0123456789'), 4), vanished]),
      createListingFile(folder),
    )
    const archive = await collect(stream)
    const tarFile = join(folder, 'media.tar')
    writeFileSync(tarFile, archive)
    expect(execFileSync('tar', ['-tf', tarFile]).toString().trim().split('\n')).to.deep.equal([
      'media/grown',
      'MANIFEST.json',
    ])
    expect(execFileSync('tar', ['-xOf', tarFile, 'media/grown']).toString()).to.equal('0123')
  })

  it('leaves no descriptor open on its listing: finished, failed, or stopped by its consumer', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'media-tar-'))
    const many = Array.from({length: 2000}, (_, index) => fileEntry(`f${index}`, Buffer.alloc(1000, index)))
    const finished = createMediaTar(fromArray(many), createListingFile(mkdtempSync(join(folder, 'finished-'))))
    await collect(finished.stream)
    await finished.summary
    expect(openUnder(folder), 'finished').to.deep.equal([])

    const failed = createMediaTar(
      fromArray([...many, fileEntry('shrunk.bin', Buffer.alloc(10), 100)]),
      createListingFile(mkdtempSync(join(folder, 'failed-'))),
    )
    await collect(failed.stream).catch(() => {})
    await failed.summary.catch(() => {})
    expect(openUnder(folder), 'failed').to.deep.equal([])

    const stopped = createMediaTar(fromArray(many), createListingFile(mkdtempSync(join(folder, 'stopped-'))))
    stopped.summary.catch(() => {})
    for await (const chunk of stopped.stream) if (chunk) break
    await new Promise((resolve) => {
      stopped.stream.once('close', resolve)
    })
    expect(openUnder(folder), 'stopped').to.deep.equal([])

    // Stopped before it starts: a transfer that failed at once (its store down) destroys the archive
    // before reading it, so the archive's own clean-up never runs.
    const unread = createMediaTar(fromArray(many), createListingFile(mkdtempSync(join(folder, 'unread-'))))
    unread.summary.catch(() => {})
    unread.stream.destroy()
    await new Promise((resolve) => {
      unread.stream.once('close', resolve)
    })
    // What an open started by then would take to finish: a few round trips through the thread pool.
    for (let round = 0; round < 20; round++) await delay(5)
    expect(openUnder(folder), 'stopped before it started').to.deep.equal([])
  })
})
