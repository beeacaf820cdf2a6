import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {generateIdentity} from '../../src/archive/age-keys.js'
import {BlobCheckError, PackReader, PackWriter} from '../../src/services/packs.js'
import {LocalStore} from '../../src/store/local.js'
import {Store} from '../../src/store/port.js'
import {requireTool} from '../helpers/tools.js'

const PREFIX = 'shop/live'

function blobOf(seed: number): {data: Buffer; id: string} {
  const data = randomBytes(1 + ((seed * 7919) % 40_000))
  return {data, id: createHash('sha256').update(data).digest('hex')}
}

/** A store that counts how often each object is opened for reading. */
function counting(store: Store): {gets: Map<string, number>; store: Store} {
  const gets = new Map<string, number>()
  return {
    gets,
    store: Object.assign(Object.create(store) as Store, {
      async get(key: string) {
        gets.set(key, (gets.get(key) ?? 0) + 1)
        return store.get(key)
      },
    }),
  }
}

describe('packs: blobs in age-encrypted tars', function () {
  const {fileContents, identity} = generateIdentity()
  let folder: string
  let store: LocalStore
  let blobs: {data: Buffer; id: string; pack: string}[]

  before(async () => {
    folder = mkdtempSync(join(tmpdir(), 'divio-packs-'))
    store = new LocalStore(folder)
    const writer = new PackWriter({
      packBytes: 128 * 1024,
      prefix: PREFIX,
      recipients: [identity.publicKey],
      signal: new AbortController().signal,
      stallTimeoutMs: 30_000,
      store,
    })
    blobs = []
    for (let seed = 1; seed <= 40; seed++) {
      const blob = blobOf(seed)

      blobs.push({...blob, pack: await writer.add(blob.id, blob.data)})
    }

    const written = await writer.close()
    expect(written.length).to.be.at.least(3)
    expect(new Set(blobs.map((blob) => blob.pack))).to.deep.equal(new Set(written.map((pack) => pack.name)))
  })

  it('open without this tool: age -d | tar -x gives files named by the SHA-256 of their content', function () {
    requireTool(this, 'age', 'age')
    const identityFile = join(folder, 'identity.txt')
    writeFileSync(identityFile, fileContents(new Date()), {mode: 0o600})
    const packs = readdirSync(join(folder, PREFIX, 'packs'))
    const out = join(folder, 'extracted')
    mkdirSync(out)
    for (const pack of packs) {
      const tar = execFileSync('age', ['-d', '-i', identityFile, join(folder, PREFIX, 'packs', pack)])
      execFileSync('tar', ['-x', '-C', out], {input: tar})
    }

    const extracted = readdirSync(out).sort()
    expect(extracted).to.deep.equal(blobs.map((blob) => blob.id).sort())
    for (const id of extracted) {
      expect(
        createHash('sha256')
          .update(readFileSync(join(out, id)))
          .digest('hex'),
      ).to.equal(id)
    }
  })

  it('reads every blob back; in the order written, each pack is opened once', async () => {
    const {gets, store: counted} = counting(store)
    const reader = new PackReader({identities: [identity], prefix: PREFIX, store: counted})
    for (const blob of blobs) {
      expect((await reader.read(blob.pack, blob.id)).equals(blob.data)).to.equal(true)
    }

    await reader.close()
    expect(
      [...gets.values()].every((count) => count === 1),
      JSON.stringify([...gets]),
    ).to.equal(true)
  })

  it('reads blobs in any order, going back to a pack start only when it must', async () => {
    const reader = new PackReader({identities: [identity], prefix: PREFIX, store})
    const shuffled = [...blobs].sort((a, b) => a.id.localeCompare(b.id))
    for (const blob of shuffled) {
      expect((await reader.read(blob.pack, blob.id)).equals(blob.data)).to.equal(true)
    }

    await reader.close()
  })

  it('a blob that is not in its pack, or a pack with a flipped byte, is an error, never wrong data', async () => {
    const reader = new PackReader({identities: [identity], prefix: PREFIX, store})
    const missing = await reader.read(blobs[0].pack, '0'.repeat(64)).catch((error: unknown) => error)
    expect(missing).to.be.instanceOf(BlobCheckError)
    expect(String(missing)).to.include('not in the pack')
    await reader.close()

    const damaged = mkdtempSync(join(tmpdir(), 'divio-packs-damaged-'))
    execFileSync('cp', ['-R', join(folder, 'shop'), damaged])
    const packFile = join(damaged, PREFIX, 'packs', blobs[0].pack)
    const bytes = readFileSync(packFile)
    bytes[Math.floor(bytes.length / 2)] ^= 0x01
    writeFileSync(packFile, bytes)
    const damagedReader = new PackReader({identities: [identity], prefix: PREFIX, store: new LocalStore(damaged)})
    const inDamagedPack = blobs.filter((blob) => blob.pack === blobs[0].pack)
    let failure: unknown
    for (const blob of inDamagedPack) {
      failure = await damagedReader.read(blob.pack, blob.id).then(
        (data) => (data.equals(blob.data) ? undefined : new Error('wrong data returned')),
        (error: unknown) => error,
      )
      if (failure) break
    }

    await damagedReader.close().catch(() => {})
    expect(failure, 'some blob of the damaged pack must fail').to.be.instanceOf(Error)
    expect(String(failure)).to.not.include('wrong data returned')
  })

  it('the store shows no content hash: pack names are random', () => {
    const names = readdirSync(join(folder, PREFIX, 'packs'))
    for (const name of names) expect(name).to.match(/^[\da-f]{32}\.age$/)
    for (const blob of blobs) expect(names.join(' ')).to.not.include(blob.id.slice(0, 16))
  })
})
