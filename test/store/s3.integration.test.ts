import {CreateMultipartUploadCommand} from '@aws-sdk/client-s3'
import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'

import {parseS3Location} from '../../src/config/s3-location.js'
import {BackupError} from '../../src/errors.js'
import {S3_MAX_ATTEMPTS} from '../../src/lib/s3.js'
import {StoreCallOptions} from '../../src/store/port.js'
import {S3Store} from '../../src/store/s3.js'
import {BlackHole} from '../helpers/black-hole.js'
import {Fault, FaultyProxy} from '../helpers/faulty-proxy.js'
import {RecordedRequest, TestS3} from '../helpers/s3.js'
import {collect} from '../helpers/tools.js'
import {storeContract} from './contract.js'

describe('S3 store (s3rver)', () => {
  let s3: TestS3
  let buckets = 0

  before(async () => {
    s3 = await TestS3.start()
  })

  after(async () => {
    await s3?.stop()
  })

  async function freshStore(
    prefix = 'backups/',
    parameters: Record<string, string> = {},
  ): Promise<{bucket: string; store: S3Store}> {
    const bucket = `store-${++buckets}`
    await s3.createBucket(bucket)
    const url = new URL(s3.dsn(bucket, prefix, parameters))
    return {bucket, store: new S3Store(parseS3Location(url, 'store'), `s3://${bucket}/${prefix}`)}
  }

  /** Requests that create objects: PutObject and CreateMultipartUpload (not CreateBucket). */
  function writesTo(bucket: string): RecordedRequest[] {
    return s3.requests.filter(
      (request) =>
        request.path.startsWith(`/${bucket}/`) &&
        request.path !== `/${bucket}/` &&
        ((request.method === 'PUT' && request.query.uploadId === undefined) ||
          (request.method === 'POST' && 'uploads' in request.query)),
    )
  }

  storeContract('s3', async () => (await freshStore()).store, {givesBack: true})

  it('streams a large object as a multipart upload, with storage class and encryption on every object', async () => {
    const {bucket, store} = await freshStore()
    const data = randomBytes(21 * 1024 * 1024)
    const chunks = Array.from({length: 21}, (_, index) => data.subarray(index * 1024 * 1024, (index + 1) * 1024 * 1024))
    expect((await store.put('app/live/id/media.tar.age', Readable.from(chunks))).bytes).to.equal(data.length)
    await store.put('app/live/id/manifest.json', Readable.from([Buffer.from('{}')]))

    expect((await collect(await store.get('app/live/id/media.tar.age'))).equals(data)).to.equal(true)
    const parts = s3.requests.filter((request) => request.method === 'PUT' && request.query.partNumber !== undefined)
    expect(parts.filter((request) => request.path.startsWith(`/${bucket}/`))).to.have.length(5)
    const writes = writesTo(bucket)
    expect(writes).to.have.length(2)
    for (const request of writes) {
      expect(request.headers['x-amz-storage-class'], request.path).to.equal('STANDARD_IA')
      expect(request.headers['x-amz-server-side-encryption'], request.path).to.equal('AES256')
      // manifest.json is served as JSON; the encrypted objects are opaque bytes.
      expect(request.headers['content-type'], request.path).to.equal(
        request.path.endsWith('.json') ? 'application/json' : undefined,
      )
    }

    expect(await s3.uploads(bucket)).to.deep.equal([])
  })

  it('sends aws:kms with its key id, and the storage class the DSN names', async () => {
    const {bucket, store} = await freshStore('', {
      kmsKeyId: 'alias/backups',
      sse: 'aws:kms',
      storageClass: 'ONEZONE_IA',
    })
    await store.put('a/b', Readable.from([Buffer.from('x')]))
    const [write] = writesTo(bucket)
    expect(write.headers['x-amz-storage-class']).to.equal('ONEZONE_IA')
    expect(write.headers['x-amz-server-side-encryption']).to.equal('aws:kms')
    expect(write.headers['x-amz-server-side-encryption-aws-kms-key-id']).to.equal('alias/backups')
  })

  it('aborts the multipart upload when the source fails after some parts were sent', async () => {
    const {bucket, store} = await freshStore()
    let sent = 0
    const failing = new Readable({
      read() {
        sent++
        if (sent > 20) this.destroy(new Error('dump died'))
        else this.push(randomBytes(1024 * 1024))
      },
    })
    const error = await store.put('app/live/id/database.dump.age', failing).catch((error_: Error) => error_)
    expect((error as Error).message).to.equal('dump died')
    expect(
      s3.requests.some((request) => request.path.startsWith(`/${bucket}/`) && 'uploads' in request.query),
    ).to.equal(true)
    expect(await s3.uploads(bucket)).to.deep.equal([])
    expect(await store.stat('app/live/id/database.dump.age')).to.equal(undefined)
  })

  it('lists an open multipart upload as a partial object, and deleting it aborts the upload', async () => {
    const {bucket, store} = await freshStore('shop/')
    await store.put('app/live/20261101T020000Z-aaaaaa/database.dump.age', Readable.from([Buffer.from('done')]))
    await s3
      .client()
      .send(
        new CreateMultipartUploadCommand({Bucket: bucket, Key: 'shop/app/live/20261101T020000Z-aaaaaa/media.tar.age'}),
      )
    const listed = []
    for await (const object of store.list('app/live/')) listed.push(object)
    expect(listed.map((object) => object.key.replace(/partial-.+$/, 'partial-…'))).to.deep.equal([
      'app/live/20261101T020000Z-aaaaaa/database.dump.age',
      'app/live/20261101T020000Z-aaaaaa/media.tar.age.partial-…',
    ])
    expect(Date.now() - listed[1].modifiedAt.getTime()).to.be.lessThan(60_000)

    await store.delete(listed[1].key)
    await store.delete(listed[1].key)
    expect(await s3.uploads(bucket)).to.deep.equal([])
  })

  it('rides out transient faults: 503, SlowDown and resets on writes, a connection cut mid-read', async () => {
    const {bucket} = await freshStore()
    const seen = new Map<string, number>()
    const proxy = await FaultyProxy.start(s3.port, ({method, query}) => {
      const kind = `${method} ${query.has('uploads') ? 'create' : query.has('partNumber') ? `part ${query.get('partNumber')}` : query.has('uploadId') ? 'complete' : 'object'}`
      const count = (seen.get(kind) ?? 0) + 1
      seen.set(kind, count)
      if (count > 1) return
      if (kind === 'POST create') return {code: 'SlowDown', status: 503}
      if (kind === 'PUT part 1') return 'reset'
      if (kind === 'PUT part 2') return {code: 'InternalError', status: 500}
      if (kind === 'POST complete') return {code: 'ServiceUnavailable', status: 503}
      if (kind === 'GET object') return 'cut'
    })
    try {
      const url = new URL(s3.dsn(bucket, 'backups/', {endpoint: proxy.endpoint}))
      const store = new S3Store(parseS3Location(url, 'store'), 'the test store')
      const data = randomBytes(20 * 1024 * 1024)
      await store.put('app/live/id/media.tar.age', Readable.from([data]))
      expect((await collect(await store.get('app/live/id/media.tar.age'))).equals(data)).to.equal(true)
      expect(
        proxy.injected.map(({fault}) => (typeof fault === 'object' && 'code' in fault ? fault.code : fault)),
      ).to.have.members(['SlowDown', 'reset', 'InternalError', 'ServiceUnavailable', 'cut'])
      expect(await s3.uploads(bucket)).to.deep.equal([])
    } finally {
      await proxy.stop()
    }
  })

  describe('putFile: one PutObject read from the file', () => {
    let folder: string

    before(() => {
      folder = mkdtempSync(join(tmpdir(), 'put-file-'))
    })

    after(() => rmSync(folder, {force: true, recursive: true}))

    /** A store behind a proxy that answers each PutObject of an object as `faults` says, in turn. */
    async function storeWithFaults(faults: Fault[]) {
      const {bucket} = await freshStore()
      let puts = 0
      const proxy = await FaultyProxy.start(s3.port, ({method, query}) =>
        method === 'PUT' && !query.has('partNumber') ? faults[puts++] : undefined,
      )
      const url = new URL(s3.dsn(bucket, 'backups/', {endpoint: proxy.endpoint}))
      return {bucket, proxy, puts: () => puts, store: new S3Store(parseS3Location(url, 'store'), 'the test store')}
    }

    it('sends a pack-sized file in one request, with no multipart upload', async () => {
      const {bucket, store} = await freshStore()
      const data = randomBytes(17 * 1024 * 1024)
      const path = join(folder, 'large')
      writeFileSync(path, data)
      const before = s3.requests.length
      expect(await store.putFile('app/live/packs/large.age', path)).to.deep.equal({bytes: data.length})
      const sent = s3.requests.slice(before)
      expect(sent).to.have.length(1)
      expect(sent[0].method).to.equal('PUT')
      expect(sent[0].query).to.not.have.any.keys('uploads', 'uploadId', 'partNumber')
      expect((await s3.read(bucket, 'backups/app/live/packs/large.age')).equals(data)).to.equal(true)
    })

    it('rides out a reset, SlowDown and a 500, reading the file anew for each try', async () => {
      const {bucket, proxy, puts, store} = await storeWithFaults([
        'reset',
        {code: 'SlowDown', status: 503},
        {code: 'InternalError', status: 500},
      ])
      try {
        const data = randomBytes(3 * 1024 * 1024 + 11)
        const path = join(folder, 'faults')
        writeFileSync(path, data)
        let told = 0
        const {bytes} = await store.putFile('app/live/packs/faults.age', path, {
          onProgress(count) {
            told += count
          },
        })
        expect(bytes).to.equal(data.length)
        expect(puts()).to.equal(4)
        expect((await s3.read(bucket, 'backups/app/live/packs/faults.age')).equals(data)).to.equal(true)
        // Each try read the file from its start: a try that failed had read some or all of it.
        expect(told).to.be.above(data.length)
      } finally {
        await proxy.stop()
      }
    })

    it('gives up at once on an error that a retry cannot mend, with the store error and no object', async () => {
      const {bucket, proxy, puts, store} = await storeWithFaults([{code: 'AccessDenied', status: 403}])
      try {
        const path = join(folder, 'denied')
        writeFileSync(path, randomBytes(1024))
        const error = await store.putFile('app/live/packs/denied.age', path).catch((error_: unknown) => error_)
        expect(error).to.be.instanceOf(BackupError)
        expect((error as BackupError).exitCode).to.equal(7)
        expect((error as BackupError).message).to.match(
          /S3 denied access to .+ \(AccessDenied\): injected by the test\./,
        )
        expect(puts()).to.equal(1)
        expect(await s3.keys(bucket)).to.deep.equal([])
      } finally {
        await proxy.stop()
      }
    })

    it('stops at the last try when every one fails, says so, and leaves no object', async () => {
      const {bucket, proxy, puts, store} = await storeWithFaults(
        Array.from({length: S3_MAX_ATTEMPTS + 2}, (): Fault => ({code: 'SlowDown', status: 503})),
      )
      // The backoff draws its waits from Math.random, as the SDK's does: zero keeps every try, without the wait.
      const {random} = Math
      Math.random = () => 0
      try {
        const path = join(folder, 'busy')
        writeFileSync(path, randomBytes(1024))
        const error = await store.putFile('app/live/packs/busy.age', path).catch((error_: unknown) => error_)
        expect(error).to.be.instanceOf(BackupError)
        expect((error as BackupError).message).to.match(/kept asking to slow down \(SlowDown\) after 8 attempts/)
        expect(puts()).to.equal(S3_MAX_ATTEMPTS)
        expect(await s3.keys(bucket)).to.deep.equal([])
      } finally {
        Math.random = random
        await proxy.stop()
      }
    })
  })

  it('names the bucket that does not exist, without the secret', async () => {
    const url = new URL(s3.dsn('no-such-bucket', 'x/'))
    const store = new S3Store(parseS3Location(url, 'store'), 's3://no-such-bucket/x/')
    const error = await store.put('a/b', Readable.from([Buffer.from('x')])).catch((error_: Error) => error_)
    expect((error as Error).message).to.equal('Cannot write a/b: the bucket of s3://no-such-bucket/x/ does not exist.')
    expect(JSON.stringify(error)).to.not.include(TestS3.secretAccessKey)
  })
})

describe('S3 store against an endpoint that accepts connections and never answers', () => {
  let blackHole: BlackHole

  before(async () => {
    blackHole = await BlackHole.start()
  })

  after(() => blackHole?.stop())

  function hungStore(options: StoreCallOptions): S3Store {
    const url = new URL(
      `s3://KEY:SECRET@hung/backups/?endpoint=${encodeURIComponent(blackHole.endpoint)}&forcePathStyle=true&region=us-east-1`,
    )
    return new S3Store(parseS3Location(url, 'store'), 's3://hung/backups/', options)
  }

  // Every operation, including those that take no signal of their own: the store's (the command's)
  // ends them all.
  const operations: Record<string, (store: S3Store) => Promise<unknown>> = {
    delete: (store) => store.delete('env/x'),
    get: (store) => store.get('env/x'),
    isEmpty: (store) => store.isEmpty(),
    async list(store) {
      for await (const object of store.list('env/')) expect.fail(`listed ${object.key}`)
    },
    put: (store) => store.put('env/x', Readable.from([Buffer.from('x')])),
    async putFile(store) {
      const folder = mkdtempSync(join(tmpdir(), 'hung-put-file-'))
      writeFileSync(join(folder, 'pack'), randomBytes(1024))
      try {
        await store.putFile('env/packs/x', join(folder, 'pack'))
      } finally {
        rmSync(folder, {force: true, recursive: true})
      }
    },
    stat: (store) => store.stat('env/x'),
  }
  for (const [name, operation] of Object.entries(operations)) {
    it(`${name} ends at once when the command's signal aborts`, async () => {
      const command = new AbortController()
      const store = hungStore({signal: command.signal})
      const settled = operation(store).then(
        () => 'resolved',
        (error: unknown) => error,
      )
      setTimeout(() => command.abort(new Error('interrupted')), 300)
      const started = Date.now()
      const outcome = await Promise.race([
        settled,
        new Promise((resolve) => {
          setTimeout(() => resolve('still waiting'), 5000)
        }),
      ])
      expect(outcome, name).to.not.equal('still waiting')
      expect(outcome, name).to.not.equal('resolved')
      expect(Date.now() - started).to.be.below(5000)
    })
  }

  it('a request that stays silent fails after the stall timeout, each try, and says so', async () => {
    const store = hungStore({stallTimeoutMs: 1000})
    const error = await store.stat('env/x').then(
      () => {},
      (error_: unknown) => error_,
    )
    expect(error).to.be.instanceOf(BackupError)
    expect((error as BackupError).exitCode).to.equal(7)
    expect((error as BackupError).message).to.equal(
      `Cannot read env/x at s3://hung/backups/: S3 sent nothing for 1 s, in each of ${S3_MAX_ATTEMPTS} tries.`,
    )
    expect((error as BackupError).suggestion).to.match(/DIVIO_BACKUP_STALL_SECONDS .*\(now 1 s; at most 60\)/)
  })
})
