import {createHash} from 'node:crypto'
import {Duplex, PassThrough, Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {X25519Identity} from '../../archive/age-keys.js'
import {createDecryptStream} from '../../archive/age.js'
import {readTar, TarMember} from '../../archive/tar-reader.js'
import {StoredFrameDecoder} from '../../lib/zstd-stored-decoder.js'
import {STORED_MAGIC} from '../../lib/zstd-stored.js'
import {cannotDecompress, ZSTD_MAGIC, zstdDecompressor, zstdImplementation} from '../../lib/zstd.js'
import {ObjectNotFoundError, Store} from '../../store/port.js'
import {packKey} from './writer.js'

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

  /**
   * Stops reading at once, without waiting for a read in progress (one that a hung mount holds): every
   * open pack's streams are destroyed, its decompressor with them, and a read in progress fails.
   */
  abandon(): void {
    for (const pack of this.open.splice(0)) {
      pack.tar.destroy()
      pack.members.return().catch(() => {})
    }
  }

  async close(): Promise<void> {
    for (const pack of this.open.splice(0)) await release(pack)
  }

  /** A blob's bytes whole, checked against its id. */
  async read(pack: string, blob: string): Promise<Buffer> {
    const {member, stored} = await this.locate(pack, blob)
    if (member.size <= WHOLE_BLOB_BYTES) {
      // Most blobs are small files whole: read and checked with no stream or generator of their own.
      const data = await member.contents()
      checkBlob(stored, blob, createHash('sha256').update(data).digest('hex'))
      return data
    }

    const chunks: Buffer[] = []
    for await (const chunk of streamMember(member, stored, blob)) chunks.push(chunk)
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)
  }

  /**
   * A blob's bytes as they are decrypted, without gathering them: each chunk is authenticated by age
   * before it is yielded, and the blob as a whole is checked against its id at its end (a mismatch
   * rejects there, so a consumer must not act on a blob before the generator has finished).
   *
   * @yields the blob's bytes, in order
   */
  async *stream(pack: string, blob: string): AsyncGenerator<Buffer> {
    const {member, stored} = await this.locate(pack, blob)
    if (member.size <= WHOLE_BLOB_BYTES) {
      const data = await member.contents()
      checkBlob(stored, blob, createHash('sha256').update(data).digest('hex'))
      yield data
    } else {
      yield* streamMember(member, stored, blob)
    }
  }

  private async drop(pack: OpenForReading): Promise<void> {
    const at = this.open.indexOf(pack)
    if (at !== -1) this.open.splice(at, 1)
    await release(pack)
  }

  /** The member `blob`: forward from where an open pack is, else from the start of each candidate. */
  private async locate(pack: string, blob: string): Promise<{member: TarMember; stored: string}> {
    const opened = this.open.find((candidate) => candidate.name === pack)
    if (opened !== undefined) {
      this.touch(opened)
      const member = await seek(opened, blob)
      if (member !== undefined) return {member, stored: opened.stored}
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
      const member = await seek(reading, blob)
      if (member !== undefined) return {member, stored: candidate}
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

/** Fails a blob whose bytes hash to `actual`, not to its id. */
function checkBlob(pack: string, blob: string, actual: string): void {
  if (actual !== blob) throw new BlobCheckError(pack, blob, `its content hashes to ${actual.slice(0, 12)}…`)
}

/**
 * A large blob's member body, chunk by chunk, checked against the blob's id at its end.
 *
 * @yields the blob's bytes, in order
 */
async function* streamMember(member: TarMember, pack: string, blob: string): AsyncGenerator<Buffer> {
  const hashing = createHash('sha256')
  for await (const chunk of member.body) {
    hashing.update(chunk as Buffer)
    yield chunk as Buffer
  }

  checkBlob(pack, blob, hashing.digest('hex'))
}

/**
 * Packs kept open at once by a reader. Backups write compressible and incompressible blobs into packs
 * of their own at the same time, so a folder read in order alternates between two packs; a few more
 * cover files copied from earlier backups. Each costs its streams' buffers, a few hundred KiB.
 */
const OPEN_PACKS = 4

/** Blobs up to this size are read into one buffer of their own; larger ones are streamed. */
export const WHOLE_BLOB_BYTES = 256 * 1024

interface OpenForReading {
  members: AsyncGenerator<TarMember, void>
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

/** Skips to the member named `blob` in an open pack; undefined at the pack's end. */
async function seek(pack: OpenForReading, blob: string): Promise<TarMember | undefined> {
  for (let member = await pack.members.next(); !member.done; member = await pack.members.next()) {
    if (member.value.path === blob) return member.value
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
  if (head.equals(STORED_MAGIC)) return decodedBy(new StoredFrameDecoder(), decrypted, decrypting)
  if (!head.equals(ZSTD_MAGIC)) return {done: decrypting, tar: decrypted}
  if (zstdImplementation() === undefined) {
    decrypted.destroy()
    throw cannotDecompress('packs')
  }

  return decodedBy(zstdDecompressor(), decrypted, decrypting)
}

/** The tar that `decoder` makes of the decrypted pack; `done` settles when both stages have. */
function decodedBy(
  decoder: Duplex,
  decrypted: Readable,
  decrypting: Promise<void>,
): {done: Promise<void>; tar: Readable} {
  const tar = new PassThrough()
  const decoding = pipeline(decrypted, decoder, tar)
  decoding.catch((error: Error) => tar.destroy(error))
  const done = Promise.all([decrypting, decoding]).then(() => {})
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
