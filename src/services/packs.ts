import {createHash, randomBytes} from 'node:crypto'
import {PassThrough, Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {X25519Identity} from '../archive/age-keys.js'
import {createDecryptStream} from '../archive/age.js'
import {encodeTarHeader} from '../archive/tar-header.js'
import {readTar} from '../archive/tar-reader.js'
import {StoredObject} from '../domain/manifest.js'
import {ObjectNotFoundError, Store} from '../store/port.js'
import {noProgress} from './context.js'
import {transferComponent} from './transfer.js'

/**
 * Packs (DESIGN §14): immutable objects that hold many blobs, so that the store sees a few objects of
 * about PACK_TARGET_BYTES instead of one per file (S3 Standard-IA bills at least 128 KiB an object).
 *
 * A pack is an age-encrypted tar whose members are blobs, each named by the SHA-256 of its content
 * (hex). Anyone with the identity opens one with `age -d -i KEY PACK | tar -x`, without this tool.
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

interface OpenPack {
  /** Headers and small blobs, gathered before they are written. */
  batch: Buffer
  blobs: number
  bytes: number
  filled: number
  input: PassThrough
  name: string
  upload: Promise<WrittenPack>
}

export interface WrittenPack {
  blobs: number
  name: string
  object: StoredObject
}

/**
 * Appends blobs into packs and uploads each pack as it fills, one at a time, while the previous one
 * may still be completing: memory holds at most the blob being written and two uploads' buffers. `add` resolves once the blob is accepted (the pack
 * it lands in is not durable until `close` or the pack's rollover resolves); `close` resolves with
 * every pack written, each complete in the store. A failure of any upload rejects the next call.
 */
export class PackWriter {
  private current: OpenPack | undefined
  /** Packs ended and still being stored, oldest first. */
  private readonly finishing: Promise<WrittenPack>[] = []
  private readonly written: WrittenPack[] = []

  constructor(
    private readonly options: {
      packBytes?: number
      /** Folder of the packs' environment in the store: `<app>/<env>`. */
      prefix: string
      recipients: readonly Uint8Array[]
      signal: AbortSignal
      stallTimeoutMs: number
      store: Store
    },
  ) {}

  /** Bytes written into the open pack so far (0 when none is open). */
  get openBytes(): number {
    return this.current?.bytes ?? 0
  }

  /** Adds one blob, whose id is the SHA-256 of `data` (hex); returns the name of the pack it goes into. */
  async add(id: string, data: Buffer): Promise<string> {
    const pack = this.current ?? this.open()
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
    if (pack.bytes >= (this.options.packBytes ?? PACK_TARGET_BYTES)) await this.finish()
    return pack.name
  }

  /** Finishes the open pack, and resolves with every pack this writer wrote, in order. */
  async close(): Promise<WrittenPack[]> {
    await this.finish()
    while (this.finishing.length > 0) this.written.push(await this.finishing.shift()!)
    return this.written
  }

  /** Stops an unfinished pack's upload, which leaves no object (the store's put contract). */
  destroy(error: Error): void {
    this.current?.input.destroy(error)
    this.current = undefined
  }

  /** Finishes the open pack now, whatever its size: the next blob starts a new one. */
  async rollover(): Promise<void> {
    await this.finish()
  }

  private async append(pack: OpenPack, bytes: Buffer): Promise<void> {
    if (BATCH_BYTES - pack.filled < bytes.length) await this.flushBatch(pack)
    pack.filled += bytes.copy(pack.batch, pack.filled)
  }

  private async finish(): Promise<void> {
    const pack = this.current
    if (pack === undefined) return
    this.current = undefined
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

  private open(): OpenPack {
    const {prefix, recipients, signal, stallTimeoutMs, store} = this.options
    const name = newPackName()
    const input = new PassThrough({highWaterMark: 256 * 1024})
    const upload = transferComponent({
      compression: 'none',
      key: packKey(prefix, name),
      location: 'a pack of media blobs',
      name,
      progress: noProgress,
      recipients,
      signal,
      source: input,
      stallTimeoutMs,
      store,
    }).then(({object}) => ({blobs: 0, name, object}))
    // A rejected upload is reported by finish(); until then the rejection must not go unhandled.
    upload.catch(() => {})
    this.current = {batch: Buffer.allocUnsafe(BATCH_BYTES), blobs: 0, bytes: 0, filled: 0, input, name, upload}
    return this.current
  }
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
 * Reads blobs out of packs in the order they are asked for, keeping one pack open: asking for a blob
 * further on in the same pack skips forward, anything else opens that pack from its start. Reads in
 * the order the blobs were written therefore read each pack once. Every blob is authenticated by age
 * and checked against its id (SHA-256) before it is returned.
 *
 * A blob is looked for in the pack its index names and, when it is not there (the pack is gone, or a
 * copy holds it), in the packs that pack's trusted forwards lead to, depth first, in order
 * (`forwards`: pack → the packs that hold its live blobs). Each is tried until one holds it, so a
 * forward that leads to a pack without the blob costs a read, never the blob.
 */
export class PackReader {
  private open:
    undefined | {members: AsyncGenerator<{body: Readable; path: string}, void>; name: string; stored: string}

  constructor(
    private readonly options: {
      forwards?: ReadonlyMap<string, readonly string[]>
      identities: readonly X25519Identity[]
      prefix: string
      store: Store
    },
  ) {}

  async close(): Promise<void> {
    await this.open?.members.return()
    this.open = undefined
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
    const body = await this.locate(pack, blob)
    const {stored} = this.open!
    const hash = createHash('sha256')
    for await (const chunk of body) {
      hash.update(chunk as Buffer)
      yield chunk as Buffer
    }

    const actual = hash.digest('hex')
    if (actual !== blob) throw new BlobCheckError(stored, blob, `its content hashes to ${actual.slice(0, 12)}…`)
  }

  /** The body of `blob`: forward from where the open pack is, else from the start of each candidate. */
  private async locate(pack: string, blob: string): Promise<Readable> {
    if (this.open?.name === pack) {
      const body = await this.seek(blob)
      if (body !== undefined) return body
    }

    let found = false
    for (const candidate of packCandidates(pack, this.options.forwards)) {
      const source = await getIfThere(this.options.store, packKey(this.options.prefix, candidate))
      if (source === undefined) continue
      found = true
      await this.close()
      const plain = new PassThrough()
      pipeline(source, createDecryptStream(this.options.identities), plain).catch((error: Error) =>
        plain.destroy(error),
      )
      this.open = {members: readTar(plain), name: pack, stored: candidate}
      const body = await this.seek(blob)
      if (body !== undefined) return body
    }

    if (!found) throw new ObjectNotFoundError(packKey(this.options.prefix, pack))
    throw new BlobCheckError(this.open?.stored ?? pack, blob, 'not in the pack')
  }

  /** Skips to the member named `blob` in the open pack; its body, or undefined at the pack's end. */
  private async seek(blob: string): Promise<Readable | undefined> {
    const {members} = this.open!
    for (let member = await members.next(); !member.done; member = await members.next()) {
      if (member.value.path === blob) return member.value.body
    }

    return undefined
  }
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
