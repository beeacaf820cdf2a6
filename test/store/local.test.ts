import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {FileHandle, open} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'

import {BackupError} from '../../src/errors.js'
import {giveBack} from '../../src/lib/buffer-loan.js'
import {LocalStore} from '../../src/store/local.js'
import {ObjectNotFoundError, ObjectUnreadableError} from '../../src/store/port.js'
import {holdStoreRead, skipWithoutFuse} from '../helpers/mounts.js'
import {collect} from '../helpers/tools.js'
import {storeContract} from './contract.js'

storeContract('local', async () => new LocalStore(mkdtempSync(join(tmpdir(), 'store-contract-'))), {givesBack: true})

describe('local store', () => {
  it('a put succeeds while a delete empties its folder (writers and prune share packs/)', async () => {
    const store = new LocalStore(mkdtempSync(join(tmpdir(), 'store-local-')))
    // Each round deletes the folder's only object while the next one is being put beside it.
    await store.put('env/packs/0', Readable.from([Buffer.from('0')]))
    for (let round = 1; round <= 40; round++) {
      await Promise.all([
        store.delete(`env/packs/${round - 1}`),
        store.put(`env/packs/${round}`, Readable.from([Buffer.from(String(round))])),
      ])
      expect((await collect(await store.get(`env/packs/${round}`))).toString()).to.equal(String(round))
    }
  })

  it('flushes a large put to disk as it writes it, before its own fsync; a small one only then', async () => {
    const root = mkdtempSync(join(tmpdir(), 'store-local-'))
    const store = new LocalStore(root)
    const probe = await open(join(root, 'probe'), 'w')
    const prototype = Object.getPrototypeOf(probe) as {datasync: () => Promise<void>; sync: () => Promise<void>}
    await probe.close()
    const {datasync, sync} = prototype
    const events: string[] = []
    prototype.datasync = async function (this: FileHandle) {
      events.push('flush ahead')
      return datasync.call(this)
    }

    prototype.sync = async function (this: FileHandle) {
      events.push('fsync')
      return sync.call(this)
    }

    try {
      const mebibyte = randomBytes(1024 * 1024)
      await store.put('env/big', Readable.from(Array.from({length: 70}, () => mebibyte)))
      // 70 MiB: a flush while it is written (one each 32 MiB, or fewer where one is still running),
      // then the file's and the folder's fsync.
      const ahead = events.filter((event) => event === 'flush ahead').length
      expect(ahead).to.be.within(1, 2)
      expect(events).to.deep.equal([...Array.from({length: ahead}, () => 'flush ahead'), 'fsync', 'fsync'])
      const before = events.length
      await store.put('env/small', Readable.from([mebibyte]))
      expect(events.slice(before)).to.deep.equal(['fsync', 'fsync'])
    } finally {
      prototype.datasync = datasync
      prototype.sync = sync
    }
  })

  // Anything but a regular file under an object's name (planted, or left by a tool): a FIFO would block
  // the open until a writer came, and a link to a device would never end.
  it("reads only regular files: a FIFO, or a link to /dev/zero, under an object's name is an unreadable object, at once", async () => {
    const root = mkdtempSync(join(tmpdir(), 'store-local-'))
    const store = new LocalStore(root)
    await store.put('env/id/manifest.json', Readable.from([Buffer.from('{}')]))
    mkdirSync(join(root, 'env', 'other'), {recursive: true})
    execFileSync('mkfifo', [join(root, 'env', 'other', 'manifest.json')])
    symlinkSync('/dev/zero', join(root, 'env', 'other', 'media.tar.age'))
    for (const key of ['env/other/manifest.json', 'env/other/media.tar.age']) {
      const outcome = await Promise.race([
        store.get(key).then(
          () => 'read',
          (error: unknown) => error,
        ),
        new Promise((resolve) => {
          setTimeout(() => resolve('still waiting'), 5000)
        }),
      ])
      // As good as missing to whoever only needs the object, and named for whoever reports it.
      expect(outcome, key).to.be.instanceOf(ObjectNotFoundError)
      expect((outcome as ObjectUnreadableError).reason, key).to.equal(
        `${join(root, key)} is ${key.endsWith('.json') ? 'a FIFO' : 'a device'}, not a regular file`,
      )
    }

    // A regular file still reads.
    expect((await collect(await store.get('env/id/manifest.json'))).toString()).to.equal('{}')
  })

  it('lends the chunks of a get: a reader that gives them back has the rest read into them, and closes the file', async () => {
    const store = new LocalStore(mkdtempSync(join(tmpdir(), 'store-local-')))
    const data = randomBytes(5 * 1024 * 1024 + 3)
    await store.put('app/env/id/object', Readable.from([data]))
    const stream = await store.get('app/env/id/object')
    const seen = new Set<ArrayBufferLike>()
    const copies: Buffer[] = []
    let reused = 0
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (seen.has(chunk.buffer)) reused++
      seen.add(chunk.buffer)
      copies.push(Buffer.from(chunk))
      giveBack(chunk)
    }

    expect(Buffer.concat(copies).equals(data)).to.equal(true)
    expect(reused).to.be.at.least(3)
    expect(stream.destroyed).to.equal(true)
    const descriptors = readdirSync('/proc/self/fd').map((fd) => {
      try {
        return readlinkSync(join('/proc/self/fd', fd))
      } catch {
        return ''
      }
    })
    expect(descriptors.filter((target) => target.endsWith('app/env/id/object'))).to.deep.equal([])
  })

  it('reads a small object into a small buffer, and a large one in chunks that grow to 1 MiB', async () => {
    // A buffer of 1 MiB for each manifest made V8 collect its whole heap dozens of times in a `list`.
    const store = new LocalStore(mkdtempSync(join(tmpdir(), 'store-local-')))
    await store.put('app/env/small', Readable.from([randomBytes(3000)]))
    await store.put('app/env/large', Readable.from([randomBytes(4 * 1024 * 1024)]))
    const buffers = async (key: string) => {
      const sizes: number[] = []
      for await (const chunk of (await store.get(key)) as AsyncIterable<Buffer>) sizes.push(chunk.buffer.byteLength)
      return sizes
    }

    expect(Math.max(...(await buffers('app/env/small')))).to.be.at.most(16 * 1024)
    const large = await buffers('app/env/large')
    expect(large.slice(0, 3)).to.deep.equal([16 * 1024, 32 * 1024, 64 * 1024])
    expect(large.at(-1)).to.equal(1024 * 1024)
  })

  it('deletes nothing, and says nothing is there, from a store folder that does not exist', async () => {
    const root = join(mkdtempSync(join(tmpdir(), 'store-local-')), 'not-mounted')
    const store = new LocalStore(root)
    await store.delete('app/env/id/object')
    expect(existsSync(root)).to.equal(false)
    const error = await store.get('app/env/id/object').catch((error_: unknown) => error_)
    expect((error as Error).message).to.include('does not exist')
  })

  it('writes files with mode 0600 and removes emptied folders on delete', async () => {
    const root = mkdtempSync(join(tmpdir(), 'store-local-'))
    const store = new LocalStore(root)
    await store.put('app/env/id/object', Readable.from([Buffer.from('x')]))
    expect(statSync(join(root, 'app/env/id/object')).mode & 0o777).to.equal(0o600)
    await store.delete('app/env/id/object')
    expect(readdirSync(root)).to.deep.equal([])
  })

  it('lists a partial file left by a killed writer under its own name, never under the real key', async () => {
    const root = mkdtempSync(join(tmpdir(), 'store-local-'))
    const store = new LocalStore(root)
    await store.put('app/env/id/manifest.json', Readable.from([Buffer.from('{}')]))
    writeFileSync(join(root, 'app/env/id/media.tar.age.partial-abc123'), 'half')
    const keys: string[] = []
    for await (const object of store.list('app/env/')) keys.push(object.key)
    expect(keys).to.deep.equal(['app/env/id/manifest.json', 'app/env/id/media.tar.age.partial-abc123'])
    expect(await store.stat('app/env/id/media.tar.age')).to.equal(undefined)
  })
})

/**
 * A store folder on a mount whose server has gone away (a FUSE mirror that stops answering): every
 * call of the store fails as a stall of the store once it has not answered for the stall timeout, and
 * at once when the command's signal aborts, instead of waiting with the kernel. The calls themselves
 * stay with their threads until the mount answers again, which the test lets it do at the end.
 */
describe('local store calls, bounded', () => {
  it('a listing of many objects with a signal adds one listener to it, not one a call (no MaxListeners warning)', async () => {
    const root = mkdtempSync(join(tmpdir(), 'store-local-'))
    const plain = new LocalStore(root)
    for (let index = 0; index < 100; index++) {
      await plain.put(`env/${String(index).padStart(3, '0')}/manifest.json`, Readable.from([Buffer.from('{}')]))
    }

    const warnings: Error[] = []
    const onWarning = (warning: Error) => warnings.push(warning)
    process.on('warning', onWarning)
    try {
      const stop = new AbortController()
      const store = new LocalStore(root, {signal: stop.signal, stallTimeoutMs: 60_000})
      let listed = 0
      for await (const object of store.list('env/')) listed += object.key.endsWith('manifest.json') ? 1 : 0
      expect(listed).to.equal(100)
      await sleep(10)
      expect(warnings.map((warning) => warning.message)).to.deep.equal([])
    } finally {
      process.off('warning', onWarning)
    }
  })
})

describe('local store on a mount that hangs', function () {
  const operations: Array<[string, (store: LocalStore) => Promise<unknown>]> = [
    ['delete', (store) => store.delete('env/id/manifest.json')],
    ['get', (store) => store.get('env/id/manifest.json')],
    ['isEmpty', (store) => store.isEmpty()],
    [
      'list',
      async (store) => {
        for await (const object of store.list('env/')) expect(object).to.exist
      },
    ],
    ['put', (store) => store.put('env/id/other.json', Readable.from([Buffer.from('{}')]))],
    ['stat', (store) => store.stat('env/id/manifest.json')],
  ]

  before(function () {
    skipWithoutFuse(this)
  })

  async function hungStore(run: (root: string, mount: Awaited<ReturnType<typeof holdStoreRead>>) => Promise<void>) {
    const root = join(mkdtempSync(join(tmpdir(), 'store-hung-')), 'store')
    await new LocalStore(root, {createRoot: true}).put('env/id/manifest.json', Readable.from([Buffer.from('{"a":1}')]))
    const mount = await holdStoreRead(root, 'env/id/manifest.json', 4)
    try {
      await run(root, mount)
    } finally {
      await mount.release()
    }
  }

  /** What a call came to: its error, 'answered', or 'still waiting' far past every bound here. */
  function outcomeOf(call: Promise<unknown>): Promise<unknown> {
    return Promise.race([
      call.then(
        () => 'answered',
        (error: unknown) => error,
      ),
      sleep(20_000).then(() => 'still waiting'),
    ])
  }

  it('every call fails as a stall of the store after the stall timeout', () =>
    hungStore(async (root, mount) => {
      mount.hang()
      for (const [name, call] of operations) {
        const outcome = await outcomeOf(call(new LocalStore(root, {stallTimeoutMs: 500})))
        expect(outcome, name).to.be.instanceOf(BackupError)
        expect((outcome as BackupError).code, name).to.equal('STORE_UNAVAILABLE')
        expect((outcome as BackupError).message, name).to.match(
          new RegExp(`^Stalled: the store folder ${root} did not answer an? [a-z ]+ within 1 s\\.$`),
        )
      }
    }))

  it('a read that stops half-way fails as a stall too, and the stream ends with it', () =>
    hungStore(async (root, mount) => {
      const object = await new LocalStore(root, {stallTimeoutMs: 500}).get('env/id/manifest.json')
      const outcome = await outcomeOf(collect(object))
      expect(mount.held(), 'the read reached the held offset').to.equal(true)
      expect((outcome as BackupError).message).to.equal(
        `Stalled: the store folder ${root} did not answer a read within 1 s.`,
      )
    }))

  it('every call ends at once when the signal aborts, with its reason', () =>
    hungStore(async (root, mount) => {
      mount.hang()
      for (const [name, call] of operations) {
        const stop = new AbortController()
        const reason = new Error('stopped')
        setTimeout(() => stop.abort(reason), 100)
        expect(await outcomeOf(call(new LocalStore(root, {signal: stop.signal}))), name).to.equal(reason)
      }
    }))
})
