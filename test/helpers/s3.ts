import {
  CreateBucketCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3'
import {createHash, randomUUID} from 'node:crypto'
import {createWriteStream, mkdtempSync} from 'node:fs'
import {mkdir, readdir, readFile, rename, rm, stat} from 'node:fs/promises'
import {createRequire} from 'node:module'
import {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import S3rver from 's3rver'

import {collect} from './tools.js'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

const ACCESS_KEY_ID = 'AKIATESTBACKUPS'
// With "/" and "+", so that DSNs must percent-encode it; distinct from everything else, so a leak shows.
const SECRET_ACCESS_KEY = 'tEsT/S3cret+9f3aQ'
// s3rver checks signatures against its own registry of accounts; add ours beside its default one.
const {DUMMY_ACCOUNT} = createRequire(import.meta.url)('s3rver/lib/models/account.js') as {
  DUMMY_ACCOUNT: {createKeyPair(accessKeyId: string, secretAccessKey: string): void}
}
DUMMY_ACCOUNT.createKeyPair(ACCESS_KEY_ID, SECRET_ACCESS_KEY)

/** What the server saw of one request: enough to check the headers the code under test sent. */
export interface RecordedRequest {
  headers: Record<string, string | string[] | undefined>
  method: string
  path: string
  query: Record<string, string | string[] | undefined>
}

// Koa's context, as far as the added operations use it.
interface KoaContext {
  body: unknown
  method: string
  path: string
  query: Record<string, string | string[] | undefined>
  request: {headers: Record<string, string | string[] | undefined>}
  status: number
}
type Middleware = (context: KoaContext, next: () => Promise<void>) => Promise<void>

/**
 * s3rver in this process on a free loopback port, so the real AWS SDK speaks real HTTP to it.
 *
 * s3rver 3.7 implements multipart uploads but not ListMultipartUploads or AbortMultipartUpload; both
 * are added here, on its own file layout, so tests can check that no upload is left open.
 */
export class TestS3 {
  static readonly accessKeyId = ACCESS_KEY_ID
  static readonly secretAccessKey = SECRET_ACCESS_KEY

  private constructor(
    private readonly server: S3rver,
    private readonly root: string,
    readonly port: number,
    /** Every request the server received, in order. */
    readonly requests: RecordedRequest[],
  ) {}

  /**
   * `listPageSize`: the most keys a listing page holds (S3's own limit, 1,000, when not given). S3 may
   * end a page before that, and a client follows the continuation token whatever the page's size, so a
   * test of listings over several pages needs only a few times this many objects, not thousands.
   */
  static async start(options: {listPageSize?: number} = {}): Promise<TestS3> {
    const root = mkdtempSync(join(tmpdir(), 's3rver-'))
    const server = new S3rver({address: '127.0.0.1', directory: root, port: 0, silent: true})
    const {middleware} = server as unknown as {middleware: Middleware[]}
    const requests: RecordedRequest[] = []
    middleware.unshift(async (context, next) => {
      requests.push({
        headers: {...context.request.headers},
        method: context.method,
        path: decodeURIComponent(context.path),
        query: {...context.query},
      })
      await next()
    })
    // Before the router, after the XML encoder: a plain object body is sent as XML.
    const {store} = server as unknown as {store: FilesystemStore}
    sortListings(store)
    atomicPuts(store)
    middleware.splice(-1, 0, missingOperations(root, store, Math.min(1000, options.listPageSize ?? 1000)))
    const address = (await server.run()) as AddressInfo
    return new TestS3(server, root, address.port, requests)
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`
  }

  client(): S3Client {
    return new S3Client({
      credentials: {accessKeyId: TestS3.accessKeyId, secretAccessKey: TestS3.secretAccessKey},
      endpoint: this.endpoint,
      forcePathStyle: true,
      region: 'us-east-1',
    })
  }

  async createBucket(name: string): Promise<void> {
    await this.client().send(new CreateBucketCommand({Bucket: name}))
  }

  /** An s3:// DSN for the code under test, with the credentials in it. */
  dsn(bucket: string, prefix = '', parameters: Record<string, string> = {}): string {
    const query = new URLSearchParams({endpoint: this.endpoint, ...parameters})
    return `s3://${TestS3.accessKeyId}:${encodeURIComponent(TestS3.secretAccessKey)}@${bucket}/${prefix}?${query}`
  }

  async keys(bucket: string, prefix = ''): Promise<string[]> {
    const keys: string[] = []
    let ContinuationToken: string | undefined
    do {
      const page = await this.client().send(
        new ListObjectsV2Command({Bucket: bucket, ContinuationToken, Prefix: prefix}),
      )
      for (const object of page.Contents ?? []) keys.push(object.Key!)
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (ContinuationToken)

    return keys
  }

  async read(bucket: string, key: string): Promise<Buffer> {
    const {Body} = await this.client().send(new GetObjectCommand({Bucket: bucket, Key: key}))
    return collect(Body as Readable)
  }

  async stop(): Promise<void> {
    await this.server.close()
    await rm(this.root, {force: true, recursive: true})
  }

  /** Multipart uploads still open in the bucket, through the SDK's ListMultipartUploads. */
  async uploads(bucket: string): Promise<string[]> {
    const page = await this.client().send(new ListMultipartUploadsCommand({Bucket: bucket}))
    return (page.Uploads ?? []).map((upload) => upload.Key!)
  }
}

interface ListOptions {
  delimiter?: string
  maxKeys?: number
  prefix?: string
  startAfter?: string
}
interface StoredObject {
  key: string
  lastModifiedDate: Date
  metadata: Record<string, string>
  size: number
}
interface FilesystemStore {
  getResourcePath(bucket: string, key: string, resource: string): string
  listObjects(
    bucket: string,
    options: ListOptions,
  ): Promise<{commonPrefixes: string[]; isTruncated: boolean; objects: StoredObject[]}>
  putMetadata(bucket: string, key: string, metadata: unknown, md5: string): Promise<void>
  putObject(object: {
    bucket: string
    content: Buffer | Readable
    key: string
    metadata: unknown
  }): Promise<{md5: string; size: number}>
  readonly rootDirectory: string
}

/**
 * s3rver walks its folders in directory order, so its listings are not sorted, and pages after the
 * first miss or repeat keys. S3 lists in ascending UTF-8 byte order; this lists the whole bucket through
 * s3rver itself, then sorts and pages the way S3 does.
 */
function sortListings(store: FilesystemStore): void {
  const listAll = store.listObjects.bind(store)
  store.listObjects = async (bucket, options) => {
    const {delimiter = '', maxKeys = Infinity, prefix = '', startAfter = ''} = options
    const everything = await listAll(bucket, {prefix})
    const objects = everything.objects.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)))
    const page: typeof objects = []
    const commonPrefixes = new Set<string>()
    let isTruncated = false
    for (const object of objects) {
      if (Buffer.compare(Buffer.from(object.key), Buffer.from(startAfter)) <= 0) continue
      const cut = delimiter ? object.key.indexOf(delimiter, prefix.length) : -1
      if (cut !== -1) {
        commonPrefixes.add(object.key.slice(0, cut + delimiter.length))
        continue
      }

      if (page.length === maxKeys) {
        isTruncated = true
        break
      }

      page.push(object)
    }

    return {commonPrefixes: [...commonPrefixes].sort(), isTruncated, objects: page}
  }
}

/**
 * S3 stores an object (a PutObject, a completed multipart upload) only once all of it came, and
 * answers only once it is stored. s3rver opens the object's file as the request starts, so a request
 * cut short (an aborted upload) left an object of what had come, and it answers before the file is
 * written, so a read right after could see part of it. Here the body streams into a file beside the
 * bucket, which is renamed into place once all of it is written, before the answer: as on S3, a
 * request that breaks stores nothing, and a stored object is whole.
 */
function atomicPuts(store: FilesystemStore): void {
  store.putObject = async (object) => {
    const writing = join(store.rootDirectory, `.writing-${randomUUID()}`)
    const md5 = createHash('md5')
    let size = 0
    const count = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        md5.update(chunk)
        size += chunk.length
        callback(null, chunk)
      },
    })
    try {
      const source = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content
      await pipeline(source, count, createWriteStream(writing))
      const objectPath = store.getResourcePath(object.bucket, object.key, 'object')
      await mkdir(dirname(objectPath), {recursive: true})
      await rename(writing, objectPath)
    } finally {
      await rm(writing, {force: true})
    }

    const digest = md5.digest('hex')
    await store.putMetadata(object.bucket, object.key, object.metadata, digest)
    return {md5: digest, size}
  }
}

/**
 * What s3rver 3.7 lacks or gets wrong on Node 20: ListMultipartUploads, AbortMultipartUpload, and the
 * continuation tokens of ListObjectsV2 (it encrypts them with DES, which OpenSSL 3 no longer offers).
 */
function missingOperations(root: string, store: FilesystemStore, listPageSize: number): Middleware {
  return async (context, next) => {
    const [, bucket, ...keyParts] = context.path.split('/')
    const key = decodeURIComponent(keyParts.join('/'))
    const uploads = join(root, bucket, '._S3rver_uploads')
    if (context.method === 'GET' && key === '' && context.query['list-type'] === '2') {
      await listObjects(context, bucket, store, listPageSize)
    } else if (context.method === 'GET' && key === '' && 'uploads' in context.query) {
      await listUploads(context, bucket, uploads)
    } else if (context.method === 'DELETE' && key !== '' && typeof context.query.uploadId === 'string') {
      await abortUpload(context, key, join(uploads, context.query.uploadId))
    } else {
      await next()
    }
  }
}

async function listObjects(
  context: KoaContext,
  bucket: string,
  store: FilesystemStore,
  listPageSize: number,
): Promise<void> {
  const token = context.query['continuation-token']
  const prefix = String(context.query.prefix ?? '')
  const maxKeys = Math.min(listPageSize, Number(context.query['max-keys'] ?? 1000))
  const startAfter =
    typeof token === 'string'
      ? Buffer.from(token, 'base64url').toString('utf8')
      : String(context.query['start-after'] ?? '')
  const page = await store.listObjects(bucket, {maxKeys, prefix, startAfter})
  const last = page.objects.at(-1)?.key
  context.body = {
    ListBucketResult: {
      '@': {xmlns: 'http://s3.amazonaws.com/doc/2006-03-01/'},
      Contents: page.objects.map((object) => ({
        ETag: object.metadata.etag,
        Key: object.key,
        LastModified: object.lastModifiedDate.toISOString(),
        Size: object.size,
        StorageClass: object.metadata['x-amz-storage-class'] ?? 'STANDARD',
      })),
      ContinuationToken: token,
      IsTruncated: page.isTruncated,
      KeyCount: page.objects.length,
      MaxKeys: maxKeys,
      Name: bucket,
      NextContinuationToken:
        page.isTruncated && last !== undefined ? Buffer.from(last, 'utf8').toString('base64url') : undefined,
      Prefix: prefix,
    },
  }
}

async function listUploads(context: KoaContext, bucket: string, folder: string): Promise<void> {
  const prefix = String(context.query.prefix ?? '')
  const ids = await readdir(folder).catch(() => [] as string[])
  const uploads = []
  for (const id of ids) {
    const uploadKey = await readFile(join(folder, id, 'key'), 'utf8').catch(() => {})
    if (uploadKey === undefined || !uploadKey.startsWith(prefix)) continue
    const {birthtime} = await stat(join(folder, id))
    uploads.push({Initiated: birthtime.toISOString(), Key: uploadKey, StorageClass: 'STANDARD', UploadId: id})
  }

  uploads.sort((a, b) => (a.Key < b.Key ? -1 : a.Key > b.Key ? 1 : 0))
  context.body = {
    ListMultipartUploadsResult: {
      '@': {xmlns: 'http://s3.amazonaws.com/doc/2006-03-01/'},
      Bucket: bucket,
      IsTruncated: false,
      MaxUploads: 1000,
      Prefix: prefix,
      Upload: uploads,
    },
  }
}

async function abortUpload(context: KoaContext, key: string, folder: string): Promise<void> {
  const uploadKey = await readFile(join(folder, 'key'), 'utf8').catch(() => {})
  if (uploadKey !== key) {
    context.status = 404
    context.body = {Error: {Code: 'NoSuchUpload', Message: 'The specified upload does not exist.'}}
    return
  }

  await rm(folder, {force: true, recursive: true})
  context.status = 204
}
