import {DeleteObjectCommand, PutObjectCommand} from '@aws-sdk/client-s3'
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {createReadStream, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {Readable} from 'node:stream'

import {parseRecipient} from '../../src/archive/age-keys.js'
import {createEncryptStream} from '../../src/archive/age.js'
import {parseS3Location} from '../../src/config/s3-location.js'
import {BackupError} from '../../src/errors.js'
import {ENCODED_KEYS_SH} from '../../src/providers/media/s3-key-paths.js'
import {S3MediaProvider} from '../../src/providers/media/s3.js'
import {CraftedMember, craftTar, listingFor} from '../helpers/crafted-tar.js'
import {cli, makeProject, writeSignedManifest} from '../helpers/project.js'
import {TestS3} from '../helpers/s3.js'
import {collect} from '../helpers/tools.js'

const MiB = 1024 * 1024
/** The server's listing pages: what a bucket of several pages is made of, whatever S3's own 1,000. */
const LIST_PAGE_SIZE = 100

/**
 * 250+ objects, listed in pages of {@link LIST_PAGE_SIZE} (three pages): nested and unicode keys, empty
 * objects, a folder marker, and one object of 17 MiB (streamed, and uploaded back in parts).
 */
function mediaObjects(): Map<string, Buffer> {
  const objects = new Map<string, Buffer>()
  for (let index = 0; index < 250; index++) {
    const folder = `uploads/${index % 7}/${index % 13}`
    objects.set(`${folder}/file-${index}.bin`, randomBytes(index % 5000))
  }

  objects.set('ünïcødé/文件 with spaces ✓.txt', Buffer.from('unicode key\n'))
  objects.set('emoji/🦊.json', Buffer.from('{"fox": true}\n'))
  objects.set('empty.txt', Buffer.alloc(0))
  objects.set('folder-marker/', Buffer.alloc(0))
  objects.set('videos/big.mp4', randomBytes(17 * MiB + 123))
  return objects
}

async function putAll(s3: TestS3, bucket: string, prefix: string, objects: Map<string, Buffer>): Promise<void> {
  const client = s3.client()
  const entries = [...objects]
  const workers = Array.from({length: 16}, async (_, worker) => {
    for (let index = worker; index < entries.length; index += 16) {
      const [key, body] = entries[index]
      await client.send(new PutObjectCommand({Body: body, Bucket: bucket, Key: `${prefix}${key}`}))
    }
  })
  await Promise.all(workers)
}

/** Key (relative to `prefix`) → SHA-256 of the bytes, for everything under the prefix. */
async function contentsOf(s3: TestS3, bucket: string, prefix: string): Promise<Map<string, string>> {
  const contents = new Map<string, string>()
  const keys = await s3.keys(bucket, prefix)
  for (let index = 0; index < keys.length; index += 16) {
    await Promise.all(
      keys.slice(index, index + 16).map(async (key) => {
        const body = await s3.read(bucket, key)
        contents.set(key.slice(prefix.length), createHash('sha256').update(body).digest('hex'))
      }),
    )
  }

  return contents
}

describe('S3 media (s3rver)', function () {
  let s3: TestS3

  before(async () => {
    s3 = await TestS3.start({listPageSize: LIST_PAGE_SIZE})
  })

  after(async () => {
    await s3?.stop()
  })

  it('backs up 250+ objects (three listing pages) into the media tar and restores them into an empty bucket, every key and byte equal', async () => {
    await s3.createBucket('shop-media')
    const objects = mediaObjects()
    await putAll(s3, 'shop-media', 'media/', objects)
    // Outside the prefix: not part of the app's media.
    await s3.client().send(new PutObjectCommand({Body: 'x', Bucket: 'shop-media', Key: 'static/app.css'}))
    // What the bucket holds, from what was put: reading every object back would test s3rver.
    const original = new Map([...objects].map(([key, body]) => [key, createHash('sha256').update(body).digest('hex')]))

    const project = makeProject()
    project.env.DEFAULT_STORAGE_DSN = s3.dsn('shop-media', 'media/')
    const listedBefore = listingsOf('shop-media')
    const created = await cli(project, ['create', '--media-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    // Every page of the listing was read: the second and third through continuation tokens.
    expect(listingsOf('shop-media') - listedBefore).to.be.at.least(Math.ceil(objects.size / LIST_PAGE_SIZE))
    for (const secret of [TestS3.secretAccessKey, encodeURIComponent(TestS3.secretAccessKey)]) {
      expect(created.stdout + created.stderr).to.not.include(secret)
    }

    const {components, id} = created.json() as {components: {media: {files: number}}; id: string}
    // The folder marker is a folder in the archive, not a file.
    expect(components.media.files).to.equal(objects.size - 1)

    const out = join(project.root, 'downloaded')
    const downloaded = await cli(project, ['download', id, '-o', out])
    expect(downloaded.status, downloaded.stderr).to.equal(0)
    const tar = join(out, 'media.tar')
    const listing = JSON.parse(execFileSync('tar', ['-xOf', tar, 'MANIFEST.json']).toString()) as {
      files: Array<Record<string, unknown>>
    }
    const big = listing.files.find((file) => file.path === 'videos/big.mp4')
    expect(big).to.include({key: 'media/videos/big.mp4', size: 17 * MiB + 123, type: 'file'})
    expect(big?.sha256).to.equal(original.get('videos/big.mp4'))
    expect(big?.etag).to.match(/^"[0-9a-f]{32}(-\d+)?"$/)
    expect(new Date(String(big?.lastModified)).getTime()).to.be.closeTo(Date.now(), 10 * 60_000)
    expect(listing.files.find((file) => file.path === 'folder-marker')).to.include({type: 'directory'})
    const members = execFileSync('tar', ['-tf', tar], {maxBuffer: 1 << 26}).toString()
    expect(members).to.include('media/ünïcødé/文件 with spaces ✓.txt\n')
    expect(members).to.not.include('static/app.css')

    await s3.createBucket('restored-media')
    const target = new S3MediaProvider(
      parseS3Location(new URL(s3.dsn('restored-media', 'media/')), 'media'),
      's3://restored-media/media/',
    )
    const summary = await target.restore(createReadStream(tar), {})
    expect(summary.files).to.equal(objects.size - 1)
    expect(await contentsOf(s3, 'restored-media', 'media/')).to.deep.equal(original)
  })

  it('restore with clean removes what the archive does not hold, and refuses an archive that disagrees with its listing', async () => {
    await s3.createBucket('clean-media')
    await putAll(s3, 'clean-media', 'm/', new Map([['keep.txt', Buffer.from('keep')]]))
    const project = makeProject()
    project.env.DEFAULT_STORAGE_DSN = s3.dsn('clean-media', 'm')
    const created = await cli(project, ['create', '--media-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    const out = join(project.root, 'downloaded')
    expect((await cli(project, ['download', id, '-o', out])).status).to.equal(0)

    await putAll(s3, 'clean-media', 'm/', new Map([['added-later.txt', Buffer.from('new')]]))
    const provider = new S3MediaProvider(parseS3Location(new URL(s3.dsn('clean-media', 'm')), 'media'), 'the media')
    const kept = await provider.restore(createReadStream(join(out, 'media.tar')), {})
    expect(kept.deleted).to.equal(0)
    expect(await s3.keys('clean-media', 'm/')).to.deep.equal(['m/added-later.txt', 'm/keep.txt'])
    const cleaned = await provider.restore(createReadStream(join(out, 'media.tar')), {clean: true})
    expect(cleaned.deleted).to.equal(1)
    expect(await s3.keys('clean-media', 'm/')).to.deep.equal(['m/keep.txt'])

    // A damaged header, and a well-formed archive whose file differs from its MANIFEST.json.
    const damaged = readFileSync(join(out, 'media.tar'))
    damaged.write('media/keep.txx', damaged.indexOf('media/keep.txt'), 'utf8')
    const extracted = join(project.root, 'extracted')
    mkdirSync(extracted)
    execFileSync('tar', ['-xf', join(out, 'media.tar'), '-C', extracted])
    writeFileSync(join(extracted, 'media', 'keep.txt'), 'KEEP')
    const forged = join(project.root, 'forged.tar')
    execFileSync('tar', ['-cf', forged, '-C', extracted, 'media', 'MANIFEST.json'])

    await s3.createBucket('tampered-media')
    const victim = new S3MediaProvider(
      parseS3Location(new URL(s3.dsn('tampered-media', '')), 'media'),
      'the tampered media',
    )
    const broken = await victim.restore(Readable.from([damaged]), {}).catch((error_: BackupError) => error_)
    // Depending on where the parser notices, the damage or the missing file is reported.
    expect(broken).to.have.property('code', 'INTEGRITY')
    expect((broken as Error).message).to.match(/fails its checksum|do not match the archive's listing/)
    const mismatch = await victim.restore(createReadStream(forged), {}).catch((error_: BackupError) => error_)
    expect(mismatch).to.include({
      code: 'INTEGRITY',
      message: "The media files do not match the archive's listing (1 extracted, 1 listed, or different contents).",
    })
  })

  /** How many listing pages (ListObjectsV2) of the bucket the server has served so far. */
  function listingsOf(bucket: string): number {
    return s3.requests.filter(
      (request) =>
        request.method === 'GET' &&
        request.path.replace(/\/$/, '') === `/${bucket}` &&
        request.query['list-type'] === '2',
    ).length
  }

  /** GetObject requests for media objects (not the listings, which are GETs too), from `since` on. */
  function objectReads(bucket: string, since: number): string[] {
    return s3.requests
      .slice(since)
      .filter((request) => request.method === 'GET' && request.path.startsWith(`/${bucket}/`))
      .filter((request) => request.query['list-type'] === undefined)
      .map((request) => request.path.slice(`/${bucket}/`.length))
  }

  it('restoring a folder backup into a bucket leaves out a name that is not UTF-8 (no S3 key can hold it), and says so', async () => {
    const project = makeProject()
    writeFileSync(Buffer.from(`${join(project.root, 'media')}/caf\u00E9.txt`, 'latin1'), 'latin-1 name')
    const created = await cli(project, ['create', '--media-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const out = join(project.root, 'downloaded')
    expect((await cli(project, ['download', 'latest', '-o', out])).status).to.equal(0)
    await s3.createBucket('latin1-media')
    const provider = new S3MediaProvider(parseS3Location(new URL(s3.dsn('latin1-media', 'm')), 'media'), 'the media')
    const restored = await provider.restore(createReadStream(join(out, 'media.tar')), {})
    expect(restored.skipped).to.deep.include({
      path: 'caf\uDCE9.txt',
      why: 'its name is not UTF-8, and an S3 key must be',
    })
    expect(await s3.keys('latin1-media', 'm/')).to.include('m/uploads/readme.txt')
    expect((await s3.keys('latin1-media', 'm/')).some((key) => key.includes('caf'))).to.equal(false)
  })

  it('incremental media (packs): an unchanged re-backup downloads no object (0 GetObject), a change only what changed, and every backup downloads as the tar format does', async () => {
    const bucket = 'packed-media'
    await s3.createBucket(bucket)
    const objects = new Map<string, Buffer>()
    for (let index = 0; index < 120; index++)
      objects.set(`uploads/${index % 5}/file-${index}.bin`, randomBytes(index * 37))
    // Key order is not the walk order of a folder ("a.b" before "a/b" in S3); the index follows the listing.
    objects.set('a.b', Buffer.from('dot'))
    objects.set('a/b', Buffer.from('slash'))
    objects.set('ünïcødé/文件 ✓.txt', Buffer.from('unicode key\n'))
    objects.set('empty.txt', Buffer.alloc(0))
    objects.set('folder-marker/', Buffer.alloc(0))
    // Larger than one blob and than the provider's in-memory limit: streamed and cut into blobs.
    objects.set('videos/clip.mp4', randomBytes(3 * MiB + 5))
    await putAll(s3, bucket, 'media/', objects)

    const project = makeProject()
    project.env.DEFAULT_STORAGE_DSN = s3.dsn(bucket, 'media/')
    const packed = {DIVIO_BACKUP_MEDIA_FORMAT: 'packs'}
    const backUp = async () => {
      const since = s3.requests.length
      const created = await cli(project, ['create', '--media-only', '--json', '--verbose'], packed)
      expect(created.status, created.stderr).to.equal(0)
      const {id} = created.json() as {id: string}
      // The incremental format's own report (a tar backup has none).
      expect(created.stderr).to.match(/media: \d+ files, \d+ read/)
      return {id, reads: objectReads(bucket, since), stderr: created.stderr}
    }

    const first = await backUp()
    expect(first.reads).to.have.length(objects.size - 1) // every object but the folder marker

    const unchanged = await backUp()
    expect(unchanged.reads).to.deep.equal([])
    expect(unchanged.stderr).to.include(`${objects.size - 1} files, 0 read`)
    expect(unchanged.stderr).to.include('0 B of new blobs in 0 new pack(s)')

    // Rewrite one object (same size, new content), add one, delete one.
    const changed = new Map([
      ['uploads/3/file-3.bin', randomBytes(3 * 37)],
      ['uploads/new.bin', Buffer.from('added')],
    ])
    await putAll(s3, bucket, 'media/', changed)
    await s3.client().send(new DeleteObjectCommand({Bucket: bucket, Key: 'media/a.b'}))
    for (const [key, body] of changed) objects.set(key, body)
    objects.delete('a.b')
    const third = await backUp()
    expect(third.reads.sort()).to.deep.equal(['media/uploads/3/file-3.bin', 'media/uploads/new.bin'])

    // The same bucket in today's format, for comparison.
    const plain = await cli(project, ['create', '--media-only', '--json'])
    expect(plain.status, plain.stderr).to.equal(0)
    const listingOf = async (id: string) => {
      const out = join(project.root, `download-${id}`)
      const downloaded = await cli(project, ['download', id, '--media-only', '-o', out])
      expect(downloaded.status, downloaded.stderr).to.equal(0)
      const tar = join(out, 'media.tar')
      const extracted = join(out, 'tree')
      mkdirSync(extracted)
      execFileSync('tar', ['-xf', tar, '-C', extracted])
      return {
        listing: JSON.parse(readFileSync(join(extracted, 'MANIFEST.json'), 'utf8')) as {
          files: Record<string, unknown>[]
        },
        tree: extracted,
      }
    }

    const fromPacks = await listingOf(third.id)
    const fromTar = await listingOf((plain.json() as {id: string}).id)
    expect(fromPacks.listing).to.deep.equal(fromTar.listing)
    for (const [key, body] of objects) {
      if (key.endsWith('/')) continue
      expect(readFileSync(join(fromPacks.tree, 'media', key)).equals(body), key).to.equal(true)
    }

    const verified = await cli(project, ['verify', '--all'])
    expect(verified.status, verified.stderr).to.equal(0)

    // Restore the first backup into the bucket: the deleted object is back, the changed one as it was.
    const before = await cli(project, ['restore', first.id, '--media-only', '--confirm', 'local', '--no-safety-backup'])
    expect(before.status, before.stderr).to.equal(0)
    const restored = await contentsOf(s3, bucket, 'media/')
    expect(restored.get('a.b')).to.equal(createHash('sha256').update('dot').digest('hex'))
    expect(restored.has('uploads/new.bin')).to.equal(true) // restore without --clean keeps what is new
  })

  it('a backup made before keys were encoded, with a key that is a file and the folder of others: verify passes it, and it restores into a bucket as keys', async () => {
    const bucket = 'keys-before'
    await s3.createBucket(bucket)
    await putAll(s3, bucket, 'media/', new Map([['report', Buffer.from('placeholder')]]))
    const project = makeProject()
    project.env.DEFAULT_STORAGE_DSN = s3.dsn(bucket, 'media/')
    const created = await cli(project, ['create', '--media-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    // The archive as backups wrote it before: each key under its own name.
    const file = (path: string, body: string): CraftedMember => ({body, path, type: 'File'})
    const tar = craftTar([
      file('media/report', 'the report'),
      file('media/report/2024.pdf', 'the report of 2024'),
      listingFor([
        {body: 'the report', path: 'report'},
        {body: 'the report of 2024', path: 'report/2024.pdf'},
      ]),
    ])
    const recipient = /# public key: (\S+)/.exec(readFileSync(project.identityFile, 'utf8'))![1]
    const sealed = await collect(Readable.from([tar]).pipe(createEncryptStream([parseRecipient(recipient)])))
    const folder = join(project.store, 'shop', 'local', id)
    writeFileSync(join(folder, 'media.tar.age'), sealed)
    const manifest = JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf8')) as {
      components: {media: {object: {bytes: number; sha256: string}; plaintext: {bytes: number; sha256: string}}}
    }
    const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex')
    manifest.components.media.object = {...manifest.components.media.object, bytes: sealed.length, sha256: sha(sealed)}
    manifest.components.media.plaintext = {bytes: tar.length, sha256: sha(tar)}
    writeSignedManifest(project, join(folder, 'manifest.json'), manifest)

    const verified = await cli(project, ['verify', id])
    expect(verified.status, verified.stdout + verified.stderr).to.equal(0)
    await s3.client().send(new DeleteObjectCommand({Bucket: bucket, Key: 'media/report'}))
    const restored = await cli(project, ['restore', id, '--media-only', '--confirm', 'local', '--no-safety-backup'])
    expect(restored.status, restored.stderr).to.equal(0)
    expect(await contentsOf(s3, bucket, 'media/')).to.deep.equal(
      new Map([
        ['report', sha(Buffer.from('the report'))],
        ['report/2024.pdf', sha(Buffer.from('the report of 2024'))],
      ]),
    )
  })

  for (const format of ['tar', 'packs'] as const) {
    it(`keys that are no path of their own (a file that is also a folder, a folder object with bytes) back up, extract with stock tar and restore byte for byte (${format})`, async () => {
      const bucket = `keys-${format}`
      await s3.createBucket(bucket)
      // s3rver cannot hold `a//b`, `./x` or a segment of 300 bytes (it keeps objects as files); the
      // unit tests of s3-key-paths.ts take those.
      const objects = new Map<string, Buffer>([
        ['.divio-s3-keys/real', Buffer.from('a key inside the folder of encoded keys')],
        ['notes/', Buffer.from('bytes in a folder object')],
        ['photos/', Buffer.alloc(0)],
        ['photos/cat.jpg', randomBytes(2 * MiB)],
        ['report', Buffer.from('the report')],
        ['report (old)', Buffer.from('an older report')],
        ['report/2024.pdf', randomBytes(3000)],
        ['report/2024/q1.pdf', randomBytes(MiB + 3)],
        ['report/', Buffer.alloc(0)],
        ['report/literal%2F.txt', Buffer.from('a literal %2F, which is no slash')],
        [String.raw`report/50% ~off\x.pdf`, Buffer.from('escapes of its own')],
      ])
      await putAll(s3, bucket, 'media/', objects)
      const original = await contentsOf(s3, bucket, 'media/')
      const project = makeProject()
      project.env.DEFAULT_STORAGE_DSN = s3.dsn(bucket, 'media/')
      project.env.DIVIO_BACKUP_MEDIA_FORMAT = format
      const created = await cli(project, ['create', '--media-only', '--json'])
      expect(created.status, created.stderr).to.equal(0)
      // Every object is a file, but the folder markers `photos/` and `report/` (`report/` encoded: `report` is a file).
      expect((created.json() as {components: {media: {files: number}}}).components.media.files).to.equal(10)

      const out = join(project.root, 'downloaded')
      expect((await cli(project, ['download', 'latest', '--media-only', '-o', out])).status).to.equal(0)
      const tree = join(project.root, 'tree')
      mkdirSync(tree)
      execFileSync('tar', ['-xf', join(out, 'media.tar'), '-C', tree])
      const listing = JSON.parse(readFileSync(join(tree, 'MANIFEST.json'), 'utf8')) as {
        files: Array<{key: string; path: string; type: string}>
      }
      const pathOf = new Map(listing.files.map(({key, path}) => [key.slice('media/'.length), path]))
      expect(pathOf.get('report')).to.equal('report')
      expect(pathOf.get('report/2024.pdf')).to.equal('.divio-s3-keys/report%2F2024.pdf~')
      expect(pathOf.get('notes/')).to.equal('.divio-s3-keys/notes%2F~')
      expect(pathOf.get('.divio-s3-keys/real')).to.equal('.divio-s3-keys/.divio-s3-keys%2Freal~')
      for (const [key, body] of objects) {
        if (key.endsWith('/') && body.length === 0) continue
        expect(readFileSync(join(tree, 'media', pathOf.get(key)!)).equals(body), key).to.equal(true)
      }

      // By hand, as the export's README.txt says: the encoded keys go back under their own keys (an
      // `aws` that records what it is asked to copy stands in for the AWS CLI).
      const bin = join(project.root, 'bin')
      mkdirSync(bin)
      writeFileSync(
        join(bin, 'aws'),
        '#!/bin/sh\nprintf "%s %s\\n" "$4" "$(sha256sum < "$3" | cut -c1-64)" >> "$COPIED"\n',
        {
          mode: 0o755,
        },
      )
      const recipe = ENCODED_KEYS_SH.replace('/path/to/parent', tree).replace('BUCKET/PREFIX', `${bucket}/media`)
      const copied = join(project.root, 'copied.txt')
      execFileSync('sh', ['-c', recipe], {env: {...process.env, COPIED: copied, PATH: `${bin}:${process.env.PATH}`}})
      const byHand = readFileSync(copied, 'utf8').trim().split('\n').sort()
      const encoded = [...objects].filter(([key]) => pathOf.get(key)?.startsWith('.divio-s3-keys/'))
      expect(byHand).to.deep.equal(
        encoded
          .map(([key, body]) => `s3://${bucket}/media/${key} ${createHash('sha256').update(body).digest('hex')}`)
          .sort(),
      )

      expect((await cli(project, ['verify', 'latest'])).status).to.equal(0)
      // Into the emptied bucket, through the restore command's own checks: every key back, byte for byte.
      for (const key of await s3.keys(bucket, 'media/'))
        await s3.client().send(new DeleteObjectCommand({Bucket: bucket, Key: key}))
      await putAll(s3, bucket, 'media/', new Map([['report/2024.pdf/stray', Buffer.from('not in the backup')]]))
      const restored = await cli(project, [
        'restore',
        'latest',
        '--media-only',
        '--clean',
        '--confirm',
        'local',
        '--no-safety-backup',
      ])
      expect(restored.status, restored.stderr).to.equal(0)
      expect(await contentsOf(s3, bucket, 'media/')).to.deep.equal(original)
    })
  }
})
