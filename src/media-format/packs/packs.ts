import {createHash, randomBytes} from 'node:crypto'
import {PassThrough, Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {X25519Identity} from '../../archive/age-keys.js'
import {createDecryptStream} from '../../archive/age.js'
import {encodeTarHeader} from '../../archive/tar-header.js'
import {readTar} from '../../archive/tar-reader.js'
import {PackObject} from '../../domain/manifest.js'
import {looksCompressible} from '../../lib/compressibility.js'
import {canCompress, ZSTD_MAGIC, zstdDecompressor} from '../../lib/zstd.js'
import {noProgress} from '../../services/context.js'
import {transferComponent} from '../../services/transfer.js'
import {ObjectNotFoundError, Store} from '../../store/port.js'

/**
 * Packs (DESIGN §14): immutable objects that hold many blobs, so that the store sees a few objects of
 * about PACK_TARGET_BYTES instead of one per file (S3 Standard-IA bills at least 128 KiB an object).
 *
 * A pack is an age-encrypted tar whose members are blobs, each named by the SHA-256 of its content
 * (hex); the tar is compressed with zstd when its blobs are (see PackWriter). Anyone with the
 * identity opens one with `age -d -i KEY PACK | zstd -dcf | tar -x`, without this tool (`-f` passes an
 * uncompressed tar through). Readers tell the two apart by the zstd magic number: a tar of blobs
 * begins with a blob's hex name, never with it. The manifest records which packs are compressed.
 * The pack's own name is random, so a listing of the store shows neither names nor content hashes.
 */

/** About where a pack is closed: big enough to amortise per-object costs, small enough to rewrite. */
export const PACK_TARGET_BYTES = 16 * 1024 * 1024
const BLOCK = 512
const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK)
const ZEROS = Buffer.alloc(BLOCK)
/** Small blobs and headers are written in batches of this size. */
const BATCH_BYTES = 128 * 1024
/** The blobs' mtime in the tar: constant, so that a pack says nothing about when files changed. */
const EPOCH = new Date(0)

/** `packs/<32 hex>.age`, relative to an environment's folder. */
export function packKey(prefix: string, name: string): string {
  return `${prefix}/packs/${name}`
}

export function newPackName(): string {
  return `${randomBytes(16).toString('hex')}.age`
}

/** How a pack's plaintext (a tar of blobs) is stored inside its age encryption. */
export type PackCodec = 'none' | 'zstd'

interface OpenPack {
  /** Headers and small blobs, gathered before they are written. */
  batch: Buffer
  blobs: number
  bytes: number
  codec: PackCodec
  filled: number
  input: PassThrough
  name: string
  upload: Promise<WrittenPack>
}

export interface WrittenPack {
  blobs: number
  codec: PackCodec
  name: string
  object: PackObject
}

/**
 * Appends blobs into packs and uploads each pack as it fills, while the previous one may still be
 * completing. With `codec: 'auto'` (backups), blobs that look compressible go into zstd packs and the
 * rest (photos, videos, archives) into plain ones, so that no CPU goes into compressing what does not
 * shrink: two packs may be open at once, one of each kind. Memory holds at most the blob being
 * written, the open packs' batches and their uploads' buffers.
 *
 * `add` resolves once the blob is accepted (the pack it lands in is not durable until `close` or the
 * pack's rollover resolves); `close` resolves with every pack written, each complete in the store. A
 * failure of any upload rejects the next call.
 */
export class PackWriter {
  private readonly current = new Map<PackCodec, OpenPack>()
  /** Packs ended and still being stored, oldest first. */
  private readonly finishing: Promise<WrittenPack>[] = []
  private readonly written: WrittenPack[] = []

  constructor(
    private readonly options: {
      /** `auto`: each blob by whether it looks compressible (see looksCompressible). */
      codec: 'auto' | PackCodec
      packBytes?: number
      /** Folder of the packs' environment in the store: `<app>/<env>`. */
      prefix: string
      recipients: readonly Uint8Array[]
      signal: AbortSignal
      stallTimeoutMs: number
      store: Store
    },
  ) {}

  /** Bytes written into the open packs so far (0 when none is open). */
  get openBytes(): number {
    let bytes = 0
    for (const pack of this.current.values()) bytes += pack.bytes
    return bytes
  }

  /** Adds one blob, whose id is the SHA-256 of `data` (hex); returns the name of the pack it goes into. */
  async add(id: string, data: Buffer): Promise<string> {
    const codec = this.options.codec === 'auto' ? autoCodec(data) : this.options.codec
    const pack = this.current.get(codec) ?? this.open(codec)
    const header = encodeTarHeader({mode: 0o10_0600, mtime: EPOCH, path: id, size: data.length, type: 'File'})
    const padding = (BLOCK - (data.length % BLOCK)) % BLOCK
    // Small blobs are gathered into batches: a stream write per tiny file (and a message to the
    // encryption thread for each) cost more than the file. A large blob goes as it is, uncopied.
    await this.append(pack, header)
    if (data.length >= BATCH_BYTES / 2) {
      await this.flushBatch(pack)
      await write(pack.input, data)
    } else {
      await this.append(pack, data)
    }

    if (padding > 0) await this.append(pack, ZEROS.subarray(0, padding))
    pack.blobs++
    pack.bytes += header.length + data.length + padding
    if (pack.bytes >= (this.options.packBytes ?? PACK_TARGET_BYTES)) await this.finish(pack)
    return pack.name
  }

  /** Finishes the open packs, and resolves with every pack this writer wrote, in order. */
  async close(): Promise<WrittenPack[]> {
    await this.rollover()
    while (this.finishing.length > 0) this.written.push(await this.finishing.shift()!)
    return this.written
  }

  /** Stops the unfinished packs' uploads, which leaves no object (the store's put contract). */
  destroy(error: Error): void {
    for (const pack of this.current.values()) pack.input.destroy(error)
    this.current.clear()
  }

  /** Finishes the open packs now, whatever their size: the next blob starts a new one. */
  async rollover(): Promise<void> {
    for (const pack of this.current.values()) await this.finish(pack)
  }

  private async append(pack: OpenPack, bytes: Buffer): Promise<void> {
    if (BATCH_BYTES - pack.filled < bytes.length) await this.flushBatch(pack)
    pack.filled += bytes.copy(pack.batch, pack.filled)
  }

  private async finish(pack: OpenPack): Promise<void> {
    this.current.delete(pack.codec)
    await this.flushBatch(pack)
    pack.input.end(END_OF_ARCHIVE)
    this.finishing.push(pack.upload)
    // One pack may complete in the background while the next one fills: its last writes (and the
    // store's fsync) overlap the reading of the next blobs, instead of stalling them at every pack.
    while (this.finishing.length > 1) this.written.push(await this.finishing.shift()!)
  }

  private async flushBatch(pack: OpenPack): Promise<void> {
    if (pack.filled === 0) return
    const full = pack.batch.subarray(0, pack.filled)
    pack.batch = Buffer.allocUnsafe(BATCH_BYTES)
    pack.filled = 0
    await write(pack.input, full)
  }

  private open(codec: PackCodec): OpenPack {
    const {prefix, recipients, signal, stallTimeoutMs, store} = this.options
    const name = newPackName()
    const input = new PassThrough({highWaterMark: 256 * 1024})
    const upload = transferComponent({
      compression: codec,
      key: packKey(prefix, name),
      location: 'a pack of media blobs',
      name,
      progress: noProgress,
      recipients,
      signal,
      source: input,
      stallTimeoutMs,
      store,
    }).then(({object}): WrittenPack => ({
      blobs: 0,
      codec,
      name,
      object: codec === 'zstd' ? {...object, compression: 'zstd'} : object,
    }))
    // A rejected upload is reported by finish(); until then the rejection must not go unhandled.
    upload.catch(() => {})
    const pack = {batch: Buffer.allocUnsafe(BATCH_BYTES), blobs: 0, bytes: 0, codec, filled: 0, input, name, upload}
    this.current.set(codec, pack)
    return pack
  }
}

/** zstd for what looks compressible, when this process can write zstd at all (see canCompress). */
function autoCodec(data: Buffer): PackCodec {
  return canCompress() && looksCompressible(data) ? 'zstd' : 'none'
}

async function write(stream: PassThrough, chunk: Buffer): Promise<void> {
  if (stream.destroyed) throw stream.errored ?? new Error('the pack upload stopped')
  if (stream.write(chunk)) return
  // Whichever comes first; both listeners go, so that a long pack does not pile them up.
  await new Promise<void>((resolve) => {
    const done = () => {
      stream.off('drain', done)
      stream.off('close', done)
      resolve()
    }

    stream.on('drain', done)
    stream.on('close', done)
  })
  if (stream.destroyed) throw stream.errored ?? new Error('the pack upload stopped')
}

export class BlobCheckError extends Error {
  constructor(
    readonly pack: string,
    readonly blob: string,
    reason: string,
  ) {
    super(`pack ${pack}, blob ${blob.slice(0, 12)}…: ${reason}`)
    this.name = 'BlobCheckError'
  }
}

/**
 * Reads blobs out of packs in the order they are asked for, keeping a few packs open (OPEN_PACKS):
 * asking for a blob further on in an open pack skips forward, anything else opens that pack from its
 * start. Reads in the order the blobs were written therefore read each pack once. Every blob is authenticated by age
 * and checked against its id (SHA-256) before it is returned.
 *
 * A blob is looked for in the pack its index names and, when it is not there (the pack is gone, or a
 * copy holds it), in the packs that pack's trusted forwards lead to, depth first, in order
 * (`forwards`: pack → the packs that hold its live blobs). Each is tried until one holds it, so a
 * forward that leads to a pack without the blob costs a read, never the blob.
 */
export class PackReader {
  /** The packs open for reading, the most recently used last. */
  private readonly open: OpenForReading[] = []

  constructor(
    private readonly options: {
      forwards?: ReadonlyMap<string, readonly string[]>
      identities: readonly X25519Identity[]
      prefix: string
      store: Store
    },
  ) {}

  async close(): Promise<void> {
    for (const pack of this.open.splice(0)) await release(pack)
  }

  async read(pack: string, blob: string): Promise<Buffer> {
    const chunks: Buffer[] = []
    for await (const chunk of this.stream(pack, blob)) chunks.push(chunk)
    return Buffer.concat(chunks)
  }

  /**
   * A blob's bytes as they are decrypted, without gathering them: each chunk is authenticated by age
   * before it is yielded, and the blob as a whole is checked against its id at its end (a mismatch
   * rejects there, so a consumer must not act on a blob before the generator has finished).
   *
   * @yields the blob's bytes, in order
   */
  async *stream(pack: string, blob: string): AsyncGenerator<Buffer> {
    const {body, stored} = await this.locate(pack, blob)
    const hash = createHash('sha256')
    for await (const chunk of body) {
      hash.update(chunk as Buffer)
      yield chunk as Buffer
    }

    const actual = hash.digest('hex')
    if (actual !== blob) throw new BlobCheckError(stored, blob, `its content hashes to ${actual.slice(0, 12)}…`)
  }

  private async drop(pack: OpenForReading): Promise<void> {
    const at = this.open.indexOf(pack)
    if (at !== -1) this.open.splice(at, 1)
    await release(pack)
  }

  /** The body of `blob`: forward from where an open pack is, else from the start of each candidate. */
  private async locate(pack: string, blob: string): Promise<{body: Readable; stored: string}> {
    const opened = this.open.find((candidate) => candidate.name === pack)
    if (opened !== undefined) {
      this.touch(opened)
      const body = await seek(opened, blob)
      if (body !== undefined) return {body, stored: opened.stored}
      await this.drop(opened)
    }

    let found = false
    let last: string | undefined
    for (const candidate of packCandidates(pack, this.options.forwards)) {
      const source = await getIfThere(this.options.store, packKey(this.options.prefix, candidate))
      if (source === undefined) continue
      found = true
      last = candidate
      const {tar} = await packPlaintext(source, this.options.identities)
      const reading: OpenForReading = {members: readTar(tar), name: pack, stored: candidate, tar}
      if (this.open.length >= OPEN_PACKS) await this.drop(this.open[0])
      this.open.push(reading)
      const body = await seek(reading, blob)
      if (body !== undefined) return {body, stored: candidate}
      await this.drop(reading)
    }

    if (!found) throw new ObjectNotFoundError(packKey(this.options.prefix, pack))
    throw new BlobCheckError(last ?? pack, blob, 'not in the pack')
  }

  private touch(pack: OpenForReading): void {
    this.open.splice(this.open.indexOf(pack), 1)
    this.open.push(pack)
  }
}

/**
 * Packs kept open at once by a reader. Backups write compressible and incompressible blobs into packs
 * of their own at the same time, so a folder read in order alternates between two packs; a few more
 * cover files copied from earlier backups. Each costs its streams' buffers, a few hundred KiB.
 */
const OPEN_PACKS = 4

interface OpenForReading {
  members: AsyncGenerator<{body: Readable; path: string}, void>
  /** The pack asked for, by its name in the index. */
  name: string
  /** The pack actually read: the same, or one its forwards lead to. */
  stored: string
  tar: Readable
}

/** Stops reading a pack: its streams, and the decompressor's thread or process with them, end here. */
async function release(pack: OpenForReading): Promise<void> {
  await pack.members.return()
  pack.tar.destroy()
}

/** Skips to the member named `blob` in an open pack; its body, or undefined at the pack's end. */
async function seek(pack: OpenForReading, blob: string): Promise<Readable | undefined> {
  for (let member = await pack.members.next(); !member.done; member = await pack.members.next()) {
    if (member.value.path === blob) return member.value.body
  }

  return undefined
}

/**
 * Where the blobs named as in `pack` may be: the pack itself, then, depth first and in order, the
 * packs its forwards lead to. Readers try them in this order.
 */
export function packCandidates(pack: string, forwards: ReadonlyMap<string, readonly string[]> = new Map()): string[] {
  const order: string[] = []
  const visit = (name: string) => {
    if (order.includes(name)) return
    order.push(name)
    for (const target of forwards.get(name) ?? []) visit(target)
  }

  visit(pack)
  return order
}

/**
 * A pack's tar, decrypted and, when it is compressed, decompressed. Resolves once the first bytes are
 * decrypted (they tell the codec); an error of any stage reaches `tar`, and `done` settles when every
 * stage has (`ciphertext`, a stage the stored bytes pass through first: a hash, say). A reader that
 * stops early destroys `tar`, which stops every stage: a decompressor left waiting for input would
 * keep the process alive.
 */
export async function packPlaintext(
  source: Readable,
  identities: readonly X25519Identity[],
  ciphertext: Transform = new PassThrough(),
): Promise<{done: Promise<void>; tar: Readable}> {
  const decrypted = new PassThrough()
  const decrypting = pipeline(source, ciphertext, createDecryptStream(identities), decrypted)
  decrypting.catch((error: Error) => decrypted.destroy(error))
  const head = await peek(decrypted, ZSTD_MAGIC.length)
  if (!head.equals(ZSTD_MAGIC)) return {done: decrypting, tar: decrypted}
  const tar = new PassThrough()
  const decompressing = pipeline(decrypted, zstdDecompressor(), tar)
  decompressing.catch((error: Error) => tar.destroy(error))
  const done = Promise.all([decrypting, decompressing]).then(() => {})
  done.catch(() => {})
  return {done, tar}
}

/** The first `length` bytes of a stream (fewer if it ends first), left in it to be read again. */
async function peek(stream: Readable, length: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let bytes = 0
  try {
    while (bytes < length && !stream.readableEnded) {
      const chunk = stream.read() as Buffer | null
      if (chunk === null) {
        await new Promise<void>((resolve, reject) => {
          const settle = () => {
            stream.off('readable', settle)
            stream.off('end', settle)
            stream.off('error', settle)
            if (stream.errored) reject(stream.errored)
            else resolve()
          }

          stream.on('readable', settle)
          stream.on('end', settle)
          stream.on('error', settle)
        })
        if (stream.destroyed && stream.errored) throw stream.errored
        continue
      }

      chunks.push(chunk)
      bytes += chunk.length
    }
  } finally {
    if (chunks.length > 0) stream.unshift(Buffer.concat(chunks))
  }

  return Buffer.concat(chunks).subarray(0, length)
}

async function getIfThere(store: Store, key: string): Promise<Readable | undefined> {
  try {
    return await store.get(key)
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return undefined
    throw error
  }
}

/**
 * Opens a pack, or, when it is gone, the first pack its forwards lead to that is there; `stored` is
 * the pack actually read. Rejects with ObjectNotFoundError for the pack asked for when none is.
 */
export async function openPack(
  store: Store,
  prefix: string,
  pack: string,
  forwards: ReadonlyMap<string, readonly string[]> = new Map(),
): Promise<{source: Readable; stored: string}> {
  for (const candidate of packCandidates(pack, forwards)) {
    const source = await getIfThere(store, packKey(prefix, candidate))
    if (source !== undefined) return {source, stored: candidate}
  }

  throw new ObjectNotFoundError(packKey(prefix, pack))
}
