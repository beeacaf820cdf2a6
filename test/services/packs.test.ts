import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {createHash, randomBytes, randomFillSync} from 'node:crypto'
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {generateIdentity} from '../../src/archive/age-keys.js'
import {BufferLender} from '../../src/lib/buffer-loan.js'
import {ActivityWatchdog} from '../../src/lib/stall.js'
import {STORED_MAGIC} from '../../src/lib/zstd-stored.js'
import {BlobCheckError, PackReader} from '../../src/media-format/packs/reader.js'
import {storeFile} from '../../src/media-format/packs/store-file.js'
import {PackCodec, PackWriter, WrittenPack} from '../../src/media-format/packs/writer.js'
import {noProgress} from '../../src/services/context.js'
import {LocalStore} from '../../src/store/local.js'
import {Store} from '../../src/store/port.js'
import {countingGets} from '../helpers/counting-store.js'
import {requireTool} from '../helpers/tools.js'

const PREFIX = 'shop/live'

/** Odd seeds: random bytes, which do not compress; even ones: text, which does. */
function blobOf(seed: number): {data: Buffer; id: string} {
  const size = 1 + ((seed * 7919) % 40_000)
  const data =
    seed % 2 === 1
      ? randomBytes(size)
      : Buffer.from(
          `{"row": ${seed}, "name": "customer ${seed}", "note": "lorem ipsum"}\n`.repeat(size / 60 + 1),
        ).subarray(0, size)
  return {data, id: createHash('sha256').update(data).digest('hex')}
}

/** A pack writer into `store`, encrypted to `identity`, as a backup makes one. */
function packWriter(
  store: Store,
  identity: {publicKey: Uint8Array},
  options: {codec: 'auto' | PackCodec; packBytes?: number},
): PackWriter {
  return new PackWriter({
    ...options,
    prefix: PREFIX,
    recipients: [identity.publicKey],
    signal: new AbortController().signal,
    stallTimeoutMs: 30_000,
    store,
  })
}

describe('packs: blobs in age-encrypted tars', function () {
  const {fileContents, identity} = generateIdentity()
  let folder: string
  let store: LocalStore
  let blobs: {data: Buffer; id: string; pack: string}[]
  let written: WrittenPack[]

  before(async () => {
    folder = mkdtempSync(join(tmpdir(), 'divio-packs-'))
    store = new LocalStore(folder)
    const writer = packWriter(store, identity, {codec: 'auto', packBytes: 128 * 1024})
    blobs = []
    for (let seed = 1; seed <= 40; seed++) {
      const blob = blobOf(seed)

      blobs.push({...blob, pack: await writer.add(blob.id, blob.data)})
    }

    written = await writer.close()
    expect(written.length).to.be.at.least(3)
    expect(new Set(blobs.map((blob) => blob.pack))).to.deep.equal(new Set(written.map((pack) => pack.name)))
  })

  it('puts blobs that compress into zstd packs and the rest into stored framing, and records which is which', () => {
    const codecOf = new Map(written.map((pack) => [pack.name, pack.codec]))
    for (const [index, blob] of blobs.entries()) {
      const small = blob.data.length < 512
      if (!small) expect(codecOf.get(blob.pack), `blob ${index}`).to.equal(index % 2 === 0 ? 'stored' : 'zstd')
    }

    for (const pack of written) {
      expect(pack.object.compression).to.equal(pack.codec === 'zstd' ? 'zstd' : undefined)
      const stored = readFileSync(join(folder, PREFIX, 'packs', pack.name))
      expect(stored.length).to.equal(pack.object.bytes)
    }

    // The text packs hold far more text than their size: they are compressed.
    const textPacks = written.filter((pack) => pack.codec === 'zstd')
    const textBytes = blobs.filter((blob) => textPacks.some((pack) => pack.name === blob.pack))
    const stored = textPacks.reduce((sum, pack) => sum + pack.object.bytes, 0)
    expect(stored * 4).to.be.below(textBytes.reduce((sum, blob) => sum + blob.data.length, 0))
  })

  it('open without this tool: age -d | zstd -dcf | tar -x gives files named by the SHA-256 of their content', function () {
    requireTool(this, 'age', 'age')
    requireTool(this, 'zstd', 'zstd')
    const identityFile = join(folder, 'identity.txt')
    writeFileSync(identityFile, fileContents(new Date()), {mode: 0o600})
    const packs = readdirSync(join(folder, PREFIX, 'packs'))
    const out = join(folder, 'extracted')
    mkdirSync(out)
    let storedPacks = 0
    for (const pack of packs) {
      const plaintext = execFileSync('age', ['-d', '-i', identityFile, join(folder, PREFIX, 'packs', pack)])
      const tar = execFileSync('zstd', ['-dcqf'], {input: plaintext})
      execFileSync('tar', ['-x', '-C', out], {input: tar})
      if (plaintext.subarray(0, 4).equals(STORED_MAGIC)) {
        // The framing costs at most 200 bytes a blob, against a tar's 512 of header and up to 511 of padding.
        const members = execFileSync('tar', ['-t'], {input: tar}).toString().trim().split('\n').length
        const blobBytes = blobs.filter((blob) => blob.pack === pack).reduce((sum, blob) => sum + blob.data.length, 0)
        expect(plaintext.length).to.be.below(blobBytes + 200 * members + 100)
        storedPacks++
      }
    }

    expect(storedPacks).to.be.at.least(1)
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
    const {gets, store: counted} = countingGets(store)
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

  it('a blob whose bytes are not its id fails its read and its stream, small or large, never wrong data', async () => {
    // A pack that age authenticates (its writer had the recipient) holding a blob under another id.
    const planted = mkdtempSync(join(tmpdir(), 'divio-packs-planted-'))
    const plantedStore = new LocalStore(planted)
    const writer = packWriter(plantedStore, identity, {codec: 'auto'})
    const sizes = {large: 300 * 1024, small: 1000}
    const named: Record<string, {id: string; pack: string}> = {}
    for (const [kind, size] of Object.entries(sizes)) {
      const id = createHash('sha256').update(kind).digest('hex')
      named[kind] = {id, pack: await writer.add(id, randomBytes(size))}
    }

    await writer.close()
    for (const {id, pack} of Object.values(named)) {
      for (const how of ['read', 'stream'] as const) {
        const reader = new PackReader({identities: [identity], prefix: PREFIX, store: plantedStore})
        const chunks: Buffer[] = []
        const failure = await (
          how === 'read'
            ? reader.read(pack, id)
            : (async () => {
                for await (const chunk of reader.stream(pack, id)) chunks.push(chunk)
              })()
        ).then(
          () => new Error('read without a failure'),
          (error: unknown) => error,
        )
        await reader.close().catch(() => {})
        expect(failure, `${how} of ${id.slice(0, 8)}`).to.be.instanceOf(BlobCheckError)
        expect(String(failure)).to.match(/its content hashes to [\da-f]{12}…/)
      }
    }
  })

  it('the store shows no content hash: pack names are random', () => {
    const names = readdirSync(join(folder, PREFIX, 'packs'))
    for (const name of names) expect(name).to.match(/^[\da-f]{32}\.age$/)
    for (const blob of blobs) expect(names.join(' ')).to.not.include(blob.id.slice(0, 16))
  })
})

describe('packs written as plain tars, before the stored framing', () => {
  it('read as before, by this tool and by the stock tools', async function () {
    requireTool(this, 'age', 'age')
    requireTool(this, 'zstd', 'zstd')
    const {fileContents, identity} = generateIdentity()
    const folder = mkdtempSync(join(tmpdir(), 'divio-packs-plain-'))
    const store = new LocalStore(folder)
    const writer = packWriter(store, identity, {codec: 'none'})
    const blobs = [1, 3, 5].map((seed) => blobOf(seed))
    const packs: string[] = []
    // One at a time, as backups add them.
    for (const blob of blobs) packs.push(await writer.add(blob.id, blob.data))
    const [pack] = await writer.close()
    expect(pack.codec).to.equal('none')
    const reader = new PackReader({identities: [identity], prefix: PREFIX, store})
    for (const [index, blob] of blobs.entries())
      expect((await reader.read(packs[index], blob.id)).equals(blob.data)).to.equal(true)
    await reader.close()

    const identityFile = join(folder, 'identity.txt')
    writeFileSync(identityFile, fileContents(new Date()), {mode: 0o600})
    const plaintext = execFileSync('age', ['-d', '-i', identityFile, join(folder, PREFIX, 'packs', pack.name)])
    // A plain tar begins with its first blob's hex name.
    expect(plaintext.subarray(0, 64).toString()).to.equal(blobs[0].id)
    const listed = execFileSync('tar', ['-t'], {input: execFileSync('zstd', ['-dcqf'], {input: plaintext})})
    expect(listed.toString().trim().split('\n')).to.deep.equal(blobs.map((blob) => blob.id))
  })
})

describe('the pack writer and the buffers it is lent', () => {
  it('gives a blob back to its lender once framed, never a borrowed one, and keeps no view of either', async () => {
    const {identity} = generateIdentity()
    const store = new LocalStore(mkdtempSync(join(tmpdir(), 'divio-packs-lent-')))
    const writer = packWriter(store, identity, {codec: 'stored'})
    const lender = new BufferLender(8)
    const written: {id: string; original: Buffer; pack: string}[] = []
    for (const [size, borrowed] of [
      [1024 * 1024, false],
      [1024 * 1024, true],
      [5000, false],
      [5000, true],
    ] as const) {
      const buffer = Buffer.allocUnsafeSlow(size)
      randomFillSync(buffer)
      const original = Buffer.from(buffer)
      const id = createHash('sha256').update(buffer).digest('hex')
      const pack = await writer.add(id, lender.lend(buffer), {borrowed})
      const back = lender.borrowBack()
      expect(back !== undefined, `${size} bytes, borrowed: ${borrowed}`).to.equal(!borrowed)
      // The caller writes its next bytes into it, as a reader does: the pack must not change.
      buffer.fill(0xee)
      written.push({id, original, pack})
    }

    await writer.close()
    const reader = new PackReader({identities: [identity], prefix: PREFIX, store})
    for (const {id, original, pack} of written) expect((await reader.read(pack, id)).equals(original)).to.equal(true)
    await reader.close()
  })
})

describe('a backup reading a file into blobs', () => {
  /** A lender that counts the buffers given back to it. */
  class CountingLender extends BufferLender {
    received = 0

    override receive(buffer: ArrayBuffer): void {
      this.received++
      super.receive(buffer)
    }
  }

  /** Reads `path` (of `size` bytes) into blobs as a backup does, the blobs already stored in `known` not stored again. */
  async function readIntoBlobs(
    writer: PackWriter,
    path: string,
    size: number,
    known: ReadonlyMap<string, string>,
  ): Promise<{blobs: [string, string][]; lender: CountingLender; newBytes: number}> {
    const lender = new CountingLender(8)
    const watchdog = new ActivityWatchdog({source: 'the test file', timeoutMs: 30_000})
    try {
      const entry = {localPath: path, mode: 0o644, mtime: new Date(), path: 'file', size, type: 'file' as const}
      const read = await storeFile(
        entry,
        writer,
        {buffers: lender, known, stored: new Map()},
        {progress: noProgress, watchdog},
      )
      return {blobs: read!.blobs, lender, newBytes: read!.newBytes}
    } finally {
      watchdog.stop()
    }
  }

  it('gives every blob it reads back to the reader, whether it stores it or has it already', async () => {
    const {identity} = generateIdentity()
    const folder = mkdtempSync(join(tmpdir(), 'divio-packs-read-'))
    const store = new LocalStore(join(folder, 'store'))
    mkdirSync(join(folder, 'store'))
    // Three whole blobs and a short one, of bytes that do not compress (stored packs).
    const size = 3 * 1024 * 1024 + 5000
    const path = join(folder, 'clip.bin')
    const content = randomBytes(size)
    writeFileSync(path, content)

    const writer = packWriter(store, identity, {codec: 'auto'})
    const first = await readIntoBlobs(writer, path, size, new Map())
    expect(first.blobs).to.have.length(4)
    expect(first.newBytes).to.equal(size)
    expect(first.lender.received, 'stored blobs, given back by the pack writer').to.equal(4)

    // One byte changed in the second blob: the other three are known, read and given back here.
    content[1024 * 1024 + 10] ^= 0xff
    writeFileSync(path, content)
    const again = await readIntoBlobs(writer, path, size, new Map(first.blobs))
    expect(again.newBytes).to.equal(1024 * 1024)
    expect(again.blobs.filter(([id], index) => id === first.blobs[index][0])).to.have.length(3)
    expect(again.lender.received, 'every blob, stored or known').to.equal(4)

    // Nothing changed: no blob is stored, and every one still goes back.
    const unchanged = await readIntoBlobs(writer, path, size, new Map(again.blobs))
    expect(unchanged.newBytes).to.equal(0)
    expect(unchanged.lender.received).to.equal(4)

    await writer.close()
    const reader = new PackReader({identities: [identity], prefix: PREFIX, store})
    const parts = []
    for (const [id, pack] of again.blobs) parts.push(await reader.read(pack, id))
    await reader.close()
    expect(Buffer.concat(parts).equals(content)).to.equal(true)
  })
})
