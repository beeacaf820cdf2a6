import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, writeFileSync, writeSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Duplex, Readable, Transform, Writable} from 'node:stream'

import {generateIdentity} from '../../src/archive/age-keys.js'
import {createListingFile} from '../../src/archive/listing.js'
import {createMediaTar} from '../../src/archive/media-tar.js'
import {parseS3Location} from '../../src/config/s3-location.js'
import {BackupError} from '../../src/errors.js'
import {FilesystemMediaProvider} from '../../src/providers/media/filesystem.js'
import {transferComponent} from '../../src/services/transfer.js'
import {putFileAsStream} from '../../src/store/file-source.js'
import {LocalStore} from '../../src/store/local.js'
import {ObjectInfo, PutFileOptions, Store} from '../../src/store/port.js'
import {S3Store} from '../../src/store/s3.js'
import {BlackHole} from '../helpers/black-hole.js'
import {TestS3} from '../helpers/s3.js'
import {hasTool} from '../helpers/tools.js'

/**
 * Every stage of a backup transfer × {fails at once, fails mid-stream, stalls}, for the local store and
 * for S3, on the database path (compressed, as for MySQL) and on the media path (a real media tar).
 * Each case asserts the exit code, that the message names the failing location, and a time bound: no
 * fault may leave the transfer waiting. Faults are injected at each stage's boundary; the stores, the
 * media archive, zstd and the encryption around them are the real ones.
 */
const STALL_MS = 1500
/** Generous for a loaded machine, and far below "forever". */
const BOUND_MS = STALL_MS + 8000
const FAULT_AFTER = 512 * 1024

type Fault = 'at once' | 'mid-stream' | 'stalls'
type Stage = 'compressor' | 'encryption' | 'source' | 'staging' | 'store'

/** Passes data through, then fails or stops as told. */
function faultyTransform(fault: Fault, label: string): Transform {
  let seen = 0
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (fault === 'at once') return callback(new Error(`${label}: injected failure at once`))
      seen += chunk.length
      if (seen <= FAULT_AFTER) return callback(null, chunk)
      if (fault === 'mid-stream') return callback(new Error(`${label}: injected failure mid-stream`))
      // Stalls: never calls back, so nothing more passes.
    },
  })
}

function faultySource(fault: Fault, inner: Readable): Readable {
  const faulty = faultyTransform(fault, 'source')
  // Stopped with the transfer, as a real source is: pipe() alone would leave the inner archive paused
  // half-way, its listing file open until a collection.
  faulty.once('close', () => inner.destroy())
  return inner.pipe(faulty)
}

/** A store that fails or stalls in front of a real one. A stalled put never reads again and never settles. */
class FaultyStore implements Store {
  readonly description: string
  readonly local: boolean

  constructor(
    private readonly inner: Store,
    private readonly fault: Fault,
  ) {
    this.description = inner.description
    this.local = inner.local
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key)
  }

  get(key: string): Promise<Readable> {
    return this.inner.get(key)
  }

  isEmpty(): Promise<boolean> {
    return this.inner.isEmpty()
  }

  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix)
  }

  async put(key: string, source: Readable, options?: {signal?: AbortSignal}): Promise<{bytes: number}> {
    if (this.fault === 'at once') throw Object.assign(new Error('EIO: injected store failure'), {code: 'EIO'})
    if (this.fault === 'stalls') {
      source.on('data', () => {})
      await new Promise((resolve) => {
        source.once('data', resolve)
      })
      source.pause()
      return new Promise(() => {})
    }

    return this.inner.put(key, source.pipe(faultyTransform('mid-stream', 'store')), options)
  }

  putFile(key: string, path: string, options?: PutFileOptions): Promise<{bytes: number}> {
    // A stalled store opens nothing: its put never settles, so nothing would close what it opened.
    if (this.fault === 'stalls') return new Promise(() => {})
    return putFileAsStream(this, key, path, options)
  }

  stat(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.stat(key)
  }
}

/**
 * The file a staged transfer writes before the store takes it, failing or stopping as told: a full or
 * failing temp folder, or one on a hung mount. It is a real file, which the transfer must remove.
 */
function faultyStagingSink(fault: Fault, path: string): Writable {
  let descriptor: number | undefined
  let seen = 0
  return new Writable({
    construct(callback) {
      descriptor = openSync(path, 'wx', 0o600)
      callback()
    },
    destroy(error, callback) {
      if (descriptor !== undefined) closeSync(descriptor)
      descriptor = undefined
      callback(error)
    },
    write(chunk: Buffer, _encoding, callback) {
      // As the real sink does: a write to an open file reports no path, so it adds its own.
      if (fault === 'at once')
        return callback(Object.assign(new Error('ENOSPC: injected, no space left'), {code: 'ENOSPC', path}))
      seen += chunk.length
      if (seen > FAULT_AFTER && fault === 'mid-stream')
        return callback(Object.assign(new Error('EIO: injected staging failure'), {code: 'EIO', path}))
      if (seen > FAULT_AFTER && fault === 'stalls') return
      writeSync(descriptor!, chunk)
      callback()
    },
  })
}

const escaped = (text: string) => text.replaceAll(/[.*+?^${}()|[\]\\]/g, String.raw`\$&`)

/** The error names the stage that failed, or the one a stall was found at, with its exit code. */
function expectExplained(
  {exitCode, message}: BackupError,
  where: {fault: Fault; location: string; stage: Stage; stageIn?: string; store: string},
): void {
  const {fault, stage} = where
  const expected = {
    compressor: {code: 1, where: /compressor \(zstd\)/},
    encryption: {code: 1, where: /encrypt/i},
    source: {code: 7, where: new RegExp(escaped(where.location))},
    // The temp folder, never the store it was bound for.
    staging: {code: 7, where: new RegExp(`temp folder ${escaped(where.stageIn ?? '')}`)},
    store: {code: 7, where: new RegExp(`store ${escaped(where.store)}`)},
  }[stage]
  if (fault === 'stalls') {
    // A stall is reported as one, with the stage it was found at, and exit 7 (unavailable).
    expect(exitCode, message).to.equal(7)
    expect(message).to.match(/^Stalled: /)
    if (stage === 'compressor' || stage === 'encryption') expect(message).to.match(/compressor|encryption/)
    else expect(message).to.match(expected.where)
  } else {
    expect(exitCode, message).to.equal(expected.code)
    expect(message).to.match(expected.where)
    expect(message).to.match(/injected|EIO|disk is full/)
  }

  if (stage === 'staging') expect(message).to.not.include(where.store)
}

const recipient = generateIdentity().identity.publicKey

describe('a fault in any stage settles the whole transfer promptly, naming where it failed', function () {
  let s3: TestS3
  let buckets = 0
  let root: string
  let media: string

  before(async () => {
    s3 = await TestS3.start()
    root = mkdtempSync(join(tmpdir(), 'transfer-faults-'))
    media = join(root, 'media')
    mkdirSync(join(media, 'uploads'), {recursive: true})
    for (let index = 0; index < 8; index++) writeFileSync(join(media, 'uploads', `${index}.bin`), randomBytes(300_000))
  })

  after(async () => {
    await s3?.stop()
  })

  async function realStore(kind: 'local' | 's3'): Promise<Store> {
    if (kind === 'local') return new LocalStore(mkdtempSync(join(root, 'store-')))
    const bucket = `faults-${++buckets}`
    await s3.createBucket(bucket)
    return new S3Store(parseS3Location(new URL(s3.dsn(bucket, 'backups/')), 'store'), `s3://${bucket}/backups/`)
  }

  function databaseSource(): Readable {
    // A dump as the database provider streams it: a few MiB that arrive over time.
    return Readable.from(
      (function* () {
        for (let index = 0; index < 16; index++) yield randomBytes(256 * 1024)
      })(),
    )
  }

  function mediaSource(): Readable {
    const provider = new FilesystemMediaProvider(media)
    const listing = createListingFile(mkdtempSync(join(root, 'listing-')))
    return createMediaTar(provider.entries({signal: new AbortController().signal}), listing).stream
  }

  const stages: Stage[] = ['source', 'compressor', 'encryption', 'staging', 'store']
  const faults: Fault[] = ['at once', 'mid-stream', 'stalls']
  // A pack bound for S3 is staged in a file, then put from it (TransferOptions.stageIn).
  for (const storeKind of ['local', 's3', 's3, staged'] as const) {
    for (const path of ['database', 'media'] as const) {
      for (const stage of stages) {
        // Media is not compressed: there is no compressor stage on that path.
        if (stage === 'compressor' && path === 'media') continue
        // Only a staged transfer writes a file before the store.
        if (stage === 'staging' && storeKind !== 's3, staged') continue
        for (const fault of faults) {
          it(`${storeKind} store, ${path}: ${stage} ${fault}`, async function () {
            if (stage === 'compressor' && !hasTool('zstd')) this.skip()
            const store = await realStore(storeKind === 'local' ? 'local' : 's3')
            const stageIn = storeKind === 's3, staged' ? mkdtempSync(join(root, 'staging-')) : undefined
            const inner = path === 'database' ? databaseSource() : mediaSource()
            const source = stage === 'source' ? faultySource(fault, inner) : inner
            const location = path === 'database' ? 'the mysql database shop@db.internal' : `the media ${media}`
            const started = Date.now()
            const error = await transferComponent({
              compression: path === 'database' ? 'zstd' : 'none',
              key: `shop/live/20261202T000000Z-aaaaaa/${path}.age`,
              location,
              name: `${path}.age`,
              progress: {advance() {}, done() {}, expect() {}},
              recipients: [recipient],
              signal: new AbortController().signal,
              source,
              stageIn,
              stages: {
                compressor:
                  stage === 'compressor' ? () => Duplex.from(faultyTransform(fault, 'compressor')) : undefined,
                encryption:
                  stage === 'encryption'
                    ? (seal) => {
                        seal.destroy()
                        return faultyTransform(fault, 'encryption')
                      }
                    : undefined,
                stagingSink: stage === 'staging' ? (file) => faultyStagingSink(fault, file) : undefined,
              },
              stallTimeoutMs: STALL_MS,
              store: stage === 'store' ? new FaultyStore(store, fault) : store,
            }).then(
              () => {},
              (error_: unknown) => error_,
            )
            const elapsed = Date.now() - started
            expect(error, 'the transfer must fail').to.be.instanceOf(BackupError)
            expect(elapsed, (error as BackupError).message).to.be.below(BOUND_MS)
            expectExplained(error as BackupError, {fault, location, stage, stageIn, store: store.description})

            // Nothing is left under the backup's key: a failed transfer stores no object.
            const left: string[] = []
            for await (const object of store.list('shop/')) left.push(object.key)
            expect(left.filter((key) => !key.includes('.partial-'))).to.deep.equal([])
            // Nor in the staging folder; a store that never settles (and ignores its signal) holds its
            // file until the command removes its staging folder.
            if (stageIn !== undefined && !(stage === 'store' && fault === 'stalls'))
              expect(readdirSync(stageIn)).to.deep.equal([])
          })
        }
      }
    }
  }

  describe('real unreachable and unresponsive stores', () => {
    let blackHole: BlackHole

    before(async () => {
      blackHole = await BlackHole.start()
    })

    after(() => blackHole?.stop())

    function s3At(endpoint: string): S3Store {
      const url = new URL(
        `s3://hang/backups/?endpoint=${encodeURIComponent(endpoint)}&forcePathStyle=true&region=us-east-1`,
      )
      process.env.AWS_ACCESS_KEY_ID ??= 'test'
      process.env.AWS_SECRET_ACCESS_KEY ??= 'test'
      return new S3Store(parseS3Location(url, 'store'), 's3://hang/backups/')
    }

    for (const staged of [false, true]) {
      const title = staged ? ', staged in a file first' : ''
      const stageIn = () => (staged ? mkdtempSync(join(root, 'staging-')) : undefined)
      it(`an S3 endpoint that accepts and never answers fails as a stall of the store, promptly${title}`, async () => {
        const started = Date.now()
        const store = s3At(blackHole.endpoint)
        const error = await transferComponent({
          compression: 'none',
          key: 'shop/live/20261202T000000Z-aaaaaa/database.sqlite3.age',
          location: 'the sqlite database db.sqlite3',
          name: 'database.sqlite3.age',
          progress: {advance() {}, done() {}, expect() {}},
          recipients: [recipient],
          signal: new AbortController().signal,
          source: databaseSource(),
          stageIn: stageIn(),
          stallTimeoutMs: STALL_MS,
          store,
        }).then(
          () => {},
          (error_: unknown) => error_,
        )
        expect(error).to.be.instanceOf(BackupError)
        expect((error as BackupError).exitCode).to.equal(7)
        expect((error as BackupError).message).to.match(/^Stalled: the store s3:\/\/hang\/backups\//)
        expect(Date.now() - started).to.be.below(BOUND_MS)
      })

      it(`an abort (SIGINT/SIGTERM) settles a transfer whose store hangs, at once${title}`, async () => {
        const controller = new AbortController()
        const started = Date.now()
        setTimeout(() => controller.abort(new BackupError('INTERRUPTED', 'Interrupted by SIGTERM.')), 300)
        const error = await transferComponent({
          compression: 'none',
          key: 'shop/live/20261202T000000Z-aaaaaa/media.tar.age',
          location: `the media ${media}`,
          name: 'media.tar.age',
          progress: {advance() {}, done() {}, expect() {}},
          recipients: [recipient],
          signal: controller.signal,
          source: mediaSource(),
          stageIn: stageIn(),
          stallTimeoutMs: 60_000,
          store: s3At(blackHole.endpoint),
        }).then(
          () => {},
          (error_: unknown) => error_,
        )
        expect(error).to.be.instanceOf(Error)
        expect(Date.now() - started).to.be.below(3000)
      })
    }
  })

  it('seals an object it knows to be small on this thread, and any other for a local store on the cipher thread', async () => {
    const store = new LocalStore(mkdtempSync(join(root, 'store-')))
    let objects = 0
    const sealedOffThread = async (bytes?: number) => {
      let offThread: boolean | undefined
      await transferComponent({
        bytes,
        compression: 'none',
        key: `shop/live/20261202T000000Z-aaaaaa/object-${++objects}.age`,
        location: 'a staged file',
        name: 'object.age',
        progress: {advance() {}, done() {}, expect() {}},
        recipients: [recipient],
        signal: new AbortController().signal,
        source: Readable.from([randomBytes(1000)]),
        stages: {
          encryption(seal) {
            offThread = seal.offThread
            return seal
          },
        },
        stallTimeoutMs: STALL_MS,
        store,
      })
      return offThread
    }

    expect(await sealedOffThread(1000), 'a staged index of 1,000 bytes').to.equal(false)
    expect(await sealedOffThread(4 * 1024 * 1024), 'one of 4 MiB').to.equal(false)
    expect(await sealedOffThread(4 * 1024 * 1024 + 1), 'one of more').to.equal(true)
    expect(await sealedOffThread(), 'a stream of unknown size').to.equal(true)
  })

  it('leaves no partial file in a local store after a failed transfer', async () => {
    const folder = mkdtempSync(join(root, 'store-'))
    const store = new LocalStore(folder)
    await transferComponent({
      compression: 'none',
      key: 'shop/live/20261202T000000Z-aaaaaa/media.tar.age',
      location: 'the media',
      name: 'media.tar.age',
      progress: {advance() {}, done() {}, expect() {}},
      recipients: [recipient],
      signal: new AbortController().signal,
      source: faultySource('mid-stream', databaseSource()),
      stallTimeoutMs: STALL_MS,
      store,
    }).catch(() => {})
    const walk = (path: string): string[] =>
      readdirSync(path, {withFileTypes: true}).flatMap((entry) =>
        entry.isDirectory() ? walk(join(path, entry.name)) : [join(path, entry.name)],
      )
    expect(walk(folder)).to.deep.equal([])
  })
})
