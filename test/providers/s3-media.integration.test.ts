import {PutObjectCommand} from '@aws-sdk/client-s3'
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {createReadStream, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {Readable} from 'node:stream'

import {parseS3Location} from '../../src/config/s3-location.js'
import {BackupError} from '../../src/errors.js'
import {S3MediaProvider} from '../../src/providers/media/s3.js'
import {cliInBackground, makeProject} from '../helpers/project.js'
import {TestS3} from '../helpers/s3.js'

const MiB = 1024 * 1024

/** 1,100+ objects (more than one 1,000-key listing page): nested and unicode keys, empty objects, a folder marker, and one object over 64 MiB. */
function mediaObjects(): Map<string, Buffer> {
  const objects = new Map<string, Buffer>()
  for (let index = 0; index < 1100; index++) {
    const folder = `uploads/${index % 7}/${index % 13}`
    objects.set(`${folder}/file-${index}.bin`, randomBytes(index % 5000))
  }

  objects.set('ünïcødé/文件 with spaces ✓.txt', Buffer.from('unicode key\n'))
  objects.set('emoji/🦊.json', Buffer.from('{"fox": true}\n'))
  objects.set('empty.txt', Buffer.alloc(0))
  objects.set('folder-marker/', Buffer.alloc(0))
  objects.set('videos/big.mp4', randomBytes(65 * MiB + 123))
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
  this.timeout(300_000)
  let s3: TestS3

  before(async () => {
    s3 = await TestS3.start()
  })

  after(async () => {
    await s3?.stop()
  })

  it('backs up 1,100+ objects (two listing pages) into the media tar and restores them into an empty bucket, every key and byte equal', async () => {
    await s3.createBucket('shop-media')
    const objects = mediaObjects()
    await putAll(s3, 'shop-media', 'media/', objects)
    // Outside the prefix: not part of the app's media.
    await s3.client().send(new PutObjectCommand({Body: 'x', Bucket: 'shop-media', Key: 'static/app.css'}))
    const original = await contentsOf(s3, 'shop-media', 'media/')
    expect(original.size).to.equal(objects.size)

    const project = makeProject()
    project.env.DEFAULT_STORAGE_DSN = s3.dsn('shop-media', 'media/')
    const created = await cliInBackground(project, ['create', '--media-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    for (const secret of [TestS3.secretAccessKey, encodeURIComponent(TestS3.secretAccessKey)]) {
      expect(created.stdout + created.stderr).to.not.include(secret)
    }

    const {components, id} = created.json() as {components: {media: {files: number}}; id: string}
    // The folder marker is a folder in the archive, not a file.
    expect(components.media.files).to.equal(objects.size - 1)

    const out = join(project.root, 'downloaded')
    const downloaded = await cliInBackground(project, ['download', id, '-o', out])
    expect(downloaded.status, downloaded.stderr).to.equal(0)
    const tar = join(out, 'media.tar')
    const listing = JSON.parse(execFileSync('tar', ['-xOf', tar, 'MANIFEST.json']).toString()) as {
      files: Array<Record<string, unknown>>
    }
    const big = listing.files.find((file) => file.path === 'videos/big.mp4')
    expect(big).to.include({key: 'media/videos/big.mp4', size: 65 * MiB + 123, type: 'file'})
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
    const created = await cliInBackground(project, ['create', '--media-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    const out = join(project.root, 'downloaded')
    expect((await cliInBackground(project, ['download', id, '-o', out])).status).to.equal(0)

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
    expect((broken as Error).message).to.match(/checksum failure|do not match the archive's listing/)
    const mismatch = await victim.restore(createReadStream(forged), {}).catch((error_: BackupError) => error_)
    expect(mismatch).to.include({
      code: 'INTEGRITY',
      message: "The media files do not match the archive's listing (1 extracted, 1 listed, or different contents).",
    })
  })
})
