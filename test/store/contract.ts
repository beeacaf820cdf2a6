/* eslint-disable mocha/no-exports -- a shared suite, run by each store's own test file */
import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'

import {ObjectNotFoundError, Store} from '../../src/store/port.js'
import {lendingSource} from '../helpers/lending-source.js'
import {openUnder} from '../helpers/processes.js'
import {collect} from '../helpers/tools.js'

/**
 * The one suite every Store implementation must pass (see the contract on the Store interface).
 * `givesBack`: the store gives lent chunks back once it is done with them (buffer-loan.ts), which
 * only saves memory; every store must keep the bytes as they came.
 */
export function storeContract(name: string, makeStore: () => Promise<Store>, options: {givesBack: boolean}): void {
  describe(`store contract: ${name}`, () => {
    let store: Store
    /** Files for putFile, as a command stages them. */
    let folder: string
    let files = 0
    const fileOf = (data: Buffer): string => {
      const path = join(folder, `staged-${++files}`)
      writeFileSync(path, data)
      return path
    }

    before(() => {
      folder = mkdtempSync(join(tmpdir(), 'store-contract-'))
    })

    after(() => rmSync(folder, {force: true, recursive: true}))

    beforeEach(async () => {
      store = await makeStore()
    })

    it('returns exactly the bytes that were put, and their count', async () => {
      const data = Buffer.alloc(3 * 1024 * 1024 + 7, 'ab\u00FF')
      const {bytes} = await store.put('app/env/id/object.age', Readable.from([data.subarray(0, 10), data.subarray(10)]))
      expect(bytes).to.equal(data.length)
      expect((await collect(await store.get('app/env/id/object.age'))).equals(data)).to.equal(true)
      expect((await store.stat('app/env/id/object.age'))?.bytes).to.equal(data.length)
    })

    it(`keeps the bytes of lent chunks as they came${options.givesBack ? ', and gives every chunk back once written' : ''}`, async () => {
      const data = randomBytes(6 * 1024 * 1024 + 7)
      const source = lendingSource(data, 128 * 1024)
      const {bytes} = await store.put('app/env/id/lent.age', source.stream)
      expect(bytes).to.equal(data.length)
      expect((await collect(await store.get('app/env/id/lent.age'))).equals(data)).to.equal(true)
      // All but the first few, which fill the stages before the first write completes.
      if (options.givesBack) expect(source.reused()).to.be.greaterThan(24)
    })

    it('stores an empty object', async () => {
      await store.put('a/empty', Readable.from([]))
      expect((await store.stat('a/empty'))?.bytes).to.equal(0)
      expect((await collect(await store.get('a/empty'))).length).to.equal(0)
    })

    it('replaces an existing object', async () => {
      await store.put('a/b', Readable.from([Buffer.from('first')]))
      await store.put('a/b', Readable.from([Buffer.from('second')]))
      expect((await collect(await store.get('a/b'))).toString()).to.equal('second')
    })

    it('rejects get of a missing key with ObjectNotFoundError, and stat returns undefined', async () => {
      const error = await store.get('a/missing').catch((error_: unknown) => error_)
      expect(error).to.be.instanceOf(ObjectNotFoundError)
      expect(await store.stat('a/missing')).to.equal(undefined)
    })

    it('lists objects under a prefix in ascending key order, and nothing else', async () => {
      for (const key of ['app/live/2/m', 'app/live/1/z', 'app/live/1/a', 'app/test/1/a', 'app/live.old/x', 'other']) {
        await store.put(key, Readable.from([Buffer.from(key)]))
      }

      const keys: string[] = []
      for await (const object of store.list('app/live/')) keys.push(object.key)
      expect(keys).to.deep.equal(['app/live/1/a', 'app/live/1/z', 'app/live/2/m'])

      const all: string[] = []
      for await (const object of store.list('')) all.push(object.key)
      expect(all).to.deep.equal([...all].sort())
      expect(all).to.include.members(['app/live.old/x', 'app/test/1/a', 'other'])
    })

    it('is empty until the first put, and again after the last delete', async () => {
      expect(await store.isEmpty()).to.equal(true)
      await store.put('app/env/id/one', Readable.from([Buffer.from('1')]))
      expect(await store.isEmpty()).to.equal(false)
      await store.delete('app/env/id/one')
      expect(await store.isEmpty()).to.equal(true)
    })

    it('lists nothing under a prefix that does not exist', async () => {
      const keys: string[] = []
      for await (const object of store.list('nothing/here/')) keys.push(object.key)
      expect(keys).to.deep.equal([])
    })

    it('deletes idempotently', async () => {
      await store.put('a/gone', Readable.from([Buffer.from('x')]))
      await store.delete('a/gone')
      await store.delete('a/gone')
      expect(await store.stat('a/gone')).to.equal(undefined)
    })

    it('leaves no object when the source stream fails part-way', async () => {
      const failing = new Readable({
        read() {
          this.push(Buffer.alloc(1024 * 1024))
          this.destroy(new Error('source broke'))
        },
      })
      const error = await store.put('a/broken', failing).catch((error_: unknown) => error_)
      expect((error as Error).message).to.equal('source broke')
      expect(await store.stat('a/broken')).to.equal(undefined)
      const committed: string[] = []
      for await (const object of store.list('a/')) committed.push(object.key)
      expect(committed).to.not.include('a/broken')
    })

    it('leaves no object when the write is aborted', async () => {
      const controller = new AbortController()
      let sent = 0
      const endless = new Readable({
        read() {
          sent++
          if (sent === 3) controller.abort()
          this.push(Buffer.alloc(64 * 1024))
        },
      })
      const error = await store
        .put('a/aborted', endless, {signal: controller.signal})
        .catch((error_: unknown) => error_)
      expect(error).to.be.instanceOf(Error)
      expect(await store.stat('a/aborted')).to.equal(undefined)
    })

    it('ends when the write is aborted while its source has stalled, and leaves no object', async () => {
      const controller = new AbortController()
      // A source that gives one chunk and then nothing, as a read from a hung mount would.
      const stalled = new Readable({
        read() {
          if (this.readableLength === 0 && !controller.signal.aborted) {
            this.push(Buffer.alloc(64 * 1024))
            setImmediate(() => controller.abort(new Error('stopped by the user')))
          }
        },
      })
      const error = await store
        .put('a/stalled', stalled, {signal: controller.signal})
        .catch((error_: unknown) => error_)
      expect(error).to.be.instanceOf(Error)
      expect(await store.stat('a/stalled')).to.equal(undefined)
    })

    it('refuses keys that could escape the store', async () => {
      for (const key of ['../x', 'a/../../x', '/abs', 'a//b', '']) {
        const error = await store.put(key, Readable.from([Buffer.from('x')])).catch((error_: unknown) => error_)
        expect(error, key).to.be.instanceOf(Error)
        const fromFile = await store.putFile(key, fileOf(Buffer.from('x'))).catch((error_: unknown) => error_)
        expect(fromFile, key).to.be.instanceOf(Error)
      }
    })

    describe('putFile', () => {
      it('stores the bytes of the file, leaves the file as it was, and tells of every byte', async () => {
        for (const size of [0, 1, 3 * 1024 * 1024 + 7]) {
          const data = randomBytes(size)
          const path = fileOf(data)
          let told = 0
          const {bytes} = await store.putFile(`app/env/id/staged-${size}.age`, path, {
            onProgress(count) {
              told += count
            },
          })
          expect(bytes).to.equal(size)
          expect((await collect(await store.get(`app/env/id/staged-${size}.age`))).equals(data)).to.equal(true)
          expect(readFileSync(path).equals(data)).to.equal(true)
          expect(told).to.equal(size)
        }

        // The command removes its staged files next: one left open would keep its bytes on disk.
        expect(openUnder(folder)).to.deep.equal([])
      })

      it('rejects a missing file, and leaves no object', async () => {
        const error = await store.putFile('a/missing', join(folder, 'not-there')).catch((error_: unknown) => error_)
        expect(error).to.be.instanceOf(Error)
        expect(await store.stat('a/missing')).to.equal(undefined)
      })

      it('leaves no object when the write is aborted', async () => {
        const controller = new AbortController()
        const error = await store
          .putFile('a/aborted', fileOf(randomBytes(2 * 1024 * 1024)), {
            onProgress: () => controller.abort(new Error('stopped by the user')),
            signal: controller.signal,
          })
          .catch((error_: unknown) => error_)
        expect(error).to.be.instanceOf(Error)
        expect(await store.stat('a/aborted')).to.equal(undefined)
        expect(openUnder(folder)).to.deep.equal([])
      })
    })
  })
}
