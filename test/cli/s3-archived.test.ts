import {PutObjectCommand} from '@aws-sdk/client-s3'
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {CHANGED_WHILE_RUNNING} from '../../src/archive/media-tar.js'
import {Fault, FaultyProxy, ProxiedRequest} from '../helpers/faulty-proxy.js'
import {cli, makeProject, Project} from '../helpers/project.js'
import {TestS3} from '../helpers/s3.js'

const MiB = 1024 * 1024
/** Key under `media/` → its storage class, where S3 would have archived it; the others are STANDARD. */
const ARCHIVED: Record<string, string> = {
  'photos/2019/old.jpg': 'DEEP_ARCHIVE',
  'videos/2019/launch.mp4': 'GLACIER',
}

interface Failed {
  error: {code: string; message: string; suggestion: string}
}

/**
 * Objects that S3 has archived (a lifecycle rule moved them to Glacier or Deep Archive, or
 * Intelligent-Tiering to an archive tier): S3 lists them, and answers a GET with 403
 * InvalidObjectState until a restore request. s3rver keeps no storage class, so a proxy in front of
 * it names the classes in the listing and in a HEAD, and refuses the GETs as S3 does.
 */
describe('objects S3 has archived (s3rver, and a proxy that archives)', function () {
  let s3: TestS3
  let buckets = 0

  before(async () => {
    s3 = await TestS3.start()
  })

  after(async () => {
    await s3?.stop()
  })

  const READABLE: Record<string, Buffer> = {
    'docs/report.pdf': randomBytes(40_000),
    'photos/2026/new.jpg': randomBytes(3000),
    'videos/2026/demo.mp4': randomBytes(2 * MiB + 5),
  }

  /** A bucket of media with archived objects, the proxy that makes them so, and a project whose media it is. */
  async function archivedMedia(
    extra: (request: ProxiedRequest, bucket: string) => Fault = noFault,
  ): Promise<{bucket: string; project: Project; proxy: FaultyProxy}> {
    const bucket = `archived-${++buckets}`
    await s3.createBucket(bucket)
    const client = s3.client()
    const bodies = {
      ...READABLE,
      'photos/2019/old.jpg': randomBytes(5000),
      'videos/2019/launch.mp4': randomBytes(MiB + 9),
    }
    for (const [key, body] of Object.entries(bodies))
      await client.send(new PutObjectCommand({Body: body, Bucket: bucket, Key: `media/${key}`}))

    const proxy = await FaultyProxy.start(s3.port, (request) => {
      const own = extra(request, bucket)
      if (own !== undefined) return own
      const key = request.path.slice(`/${bucket}/media/`.length)
      if (request.method === 'GET' && request.query.has('list-type')) return {answer: {body: withStorageClasses}}
      if (request.method === 'GET' && request.path.startsWith(`/${bucket}/media/`) && ARCHIVED[key])
        return {code: 'InvalidObjectState', status: 403}
    })
    const project = makeProject()
    project.env.DEFAULT_STORAGE_DSN = s3.dsn(bucket, 'media/', {endpoint: proxy.endpoint})
    return {bucket, project, proxy}
  }

  function useConfig(project: Project, settings: Record<string, unknown>): void {
    mkdirSync(join(project.root, '.divio'), {recursive: true})
    writeFileSync(join(project.root, '.divio', 'backups.json'), JSON.stringify({environments: {local: settings}}))
  }

  for (const format of ['tar', 'packs'] as const) {
    it(`fails the backup by default, naming the object, its class and the two ways on; "archivedMedia": "skip" leaves out just those, saying so (${format})`, async () => {
      const {project, proxy} = await archivedMedia()
      try {
        project.env.DIVIO_BACKUP_MEDIA_FORMAT = format
        const failed = await cli(project, ['create', '--json'])
        expect(failed.status, failed.stderr).to.equal(7)
        const {error} = failed.json() as Failed
        expect(error.code).to.equal('SOURCE_UNAVAILABLE')
        // Either archived object may be read first: the small ones are read ahead.
        expect(error.message).to.match(
          /^Backup \S+ failed and was not committed: Cannot read the media object "media\/(photos\/2019\/old\.jpg" in \S+: it is archived \(storage class DEEP_ARCHIVE\)|videos\/2019\/launch\.mp4" in \S+: it is archived \(storage class GLACIER\)), and S3 serves it only after a restore request \(InvalidObjectState\)/,
        )
        expect(error.message).to.not.match(/credentials/)
        expect(error.suggestion).to.include('aws s3api restore-object --bucket archived-')
        expect(error.suggestion).to.include('"archivedMedia": "skip"')
        expect((await cli(project, ['list', '--json'])).json()).to.deep.equal([])

        useConfig(project, {archivedMedia: 'skip'})
        const created = await cli(project, ['create', '--json'])
        expect(created.status, created.stderr).to.equal(0)
        // Said once each, by the provider that knows why (not again as a file that changed while read).
        expect(created.stderr).to.not.include(CHANGED_WHILE_RUNNING)
        for (const [key, storageClass] of Object.entries(ARCHIVED)) {
          const said = created.stderr.split('\n').filter((line) => line.includes(JSON.stringify(key)))
          expect(said, `${key}: ${created.stderr}`).to.deep.equal([
            `warning: media ${JSON.stringify(key)} skipped: archived (storage class ${storageClass}), and S3 serves it only after a restore request ("archivedMedia": "skip")`,
          ])
        }

        const {components} = created.json() as {components: {media: {files: number}}}
        expect(components.media.files).to.equal(Object.keys(READABLE).length)
        expect((await cli(project, ['verify', 'latest'])).status).to.equal(0)
        const out = join(project.root, 'downloaded')
        const downloaded = await cli(project, ['download', 'latest', '--media-only', '-o', out])
        expect(downloaded.status, downloaded.stderr).to.equal(0)
        const tree = join(project.root, 'tree')
        mkdirSync(tree)
        execFileSync('tar', ['-xf', join(out, 'media.tar'), '-C', tree])
        const listed = (
          JSON.parse(readFileSync(join(tree, 'MANIFEST.json'), 'utf8')) as {files: Array<{path: string; type: string}>}
        ).files
          .filter((file) => file.type === 'file')
          .map((file) => file.path)
          .sort()
        expect(listed).to.deep.equal(Object.keys(READABLE).sort())
        for (const [key, body] of Object.entries(READABLE))
          expect(sha256(readFileSync(join(tree, 'media', key))), key).to.equal(sha256(body))
      } finally {
        await proxy.stop()
      }
    })
  }

  it('restore --clean deletes the objects the backup does not hold, but never an archived one', async () => {
    // `docs/cold.pdf`, added since, is in Intelligent-Tiering's archive tier: only its HEAD says so.
    const {bucket, project, proxy} = await archivedMedia((request, bucketName) => {
      if (request.path !== `/${bucketName}/media/docs/cold.pdf`) return
      if (request.method === 'HEAD') return {answer: {headers: {'x-amz-archive-status': 'DEEP_ARCHIVE_ACCESS'}}}
      return request.method === 'GET' ? {code: 'InvalidObjectState', status: 403} : undefined
    })
    try {
      useConfig(project, {archivedMedia: 'skip'})
      const created = await cli(project, ['create', '--media-only', '--json'])
      expect(created.status, created.stderr).to.equal(0)
      const {id} = created.json() as {id: string}

      const client = s3.client()
      for (const key of ['docs/cold.pdf', 'docs/extra.txt'])
        await client.send(new PutObjectCommand({Body: key, Bucket: bucket, Key: `media/${key}`}))
      const cleanRestore = ['restore', id, '--media-only', '--clean', '--confirm', 'local', '--no-safety-backup']
      const restored = await cli(project, [...cleanRestore, '--json'])
      expect(restored.status, restored.stderr).to.equal(0)
      const {media} = restored.json() as {media: {archivedKept: number; deleted: number}}
      expect({archivedKept: media.archivedKept, deleted: media.deleted}).to.deep.equal({archivedKept: 3, deleted: 1})
      expect((await s3.keys(bucket, 'media/')).sort()).to.deep.equal(
        [...Object.keys(READABLE), ...Object.keys(ARCHIVED), 'docs/cold.pdf'].map((key) => `media/${key}`).sort(),
      )

      const again = await cli(project, cleanRestore)
      expect(again.status, again.stderr).to.equal(0)
      expect(again.stdout).to.include(', 3 archived objects the backup does not hold left in place')
      expect(again.stdout).to.not.include('deleted')
    } finally {
      await proxy.stop()
    }
  })

  it('a backup whose objects a lifecycle rule archived: download and verify say so and how to read them, not that the credentials are wrong', async () => {
    const bucket = `store-${++buckets}`
    await s3.createBucket(bucket)
    const project = makeProject()
    project.env.DIVIO_BACKUP_STORE = s3.dsn(bucket, 'backups')
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const proxy = await FaultyProxy.start(s3.port, ({method, path}) =>
      method === 'GET' && path.endsWith('/media.tar.age') ? {code: 'InvalidObjectState', status: 403} : undefined,
    )
    try {
      project.env.DIVIO_BACKUP_STORE = s3.dsn(bucket, 'backups', {endpoint: proxy.endpoint})
      for (const args of [
        ['verify', 'latest', '--json'],
        ['download', 'latest', '-o', join(project.root, 'out'), '--json'],
      ]) {
        const result = await cli(project, args)
        expect(result.status, `${args[0]}: ${result.stderr}`).to.equal(7)
        const {error} = result.json() as Failed
        expect(error.message, args[0]).to.match(/media\.tar\.age: the object is archived \(InvalidObjectState\)/)
        expect(error.message, args[0]).to.not.match(/credentials/)
        expect(error.suggestion, args[0]).to.include('restore-object')
        expect(error.suggestion, args[0]).to.include('GLACIER_IR')
      }

      expect(proxy.injected.length).to.be.above(0)
    } finally {
      await proxy.stop()
    }
  })
})

/** The listing as S3 would give it for archived objects: their storage class, not STANDARD. */
function withStorageClasses(listing: string): string {
  return listing
    .split('</Contents>')
    .map((entry) => {
      const key = /<Key>media\/([^<]*)<\/Key>/.exec(entry)?.[1]
      const storageClass = key === 'docs/cold.pdf' ? 'INTELLIGENT_TIERING' : key && ARCHIVED[key]
      return storageClass
        ? entry.replace('<StorageClass>STANDARD</StorageClass>', `<StorageClass>${storageClass}</StorageClass>`)
        : entry
    })
    .join('</Contents>')
}

function noFault(): Fault {
  return undefined
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}
