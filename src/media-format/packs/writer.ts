import {randomBytes} from 'node:crypto'
import {PassThrough} from 'node:stream'

import {encodeTarHeader} from '../../archive/tar-header.js'
import {PackObject} from '../../domain/manifest.js'
import {BufferLender, giveBack} from '../../lib/buffer-loan.js'
import {looksCompressible} from '../../lib/compressibility.js'
import {drainedOrClosed} from '../../lib/stream-close.js'
import {
  MAX_BLOCK,
  storedBlocksBound,
  storedFrameStart,
  writeBlockHeader,
  writeStoredBlocks,
  zeroBlocks,
} from '../../lib/zstd-stored.js'
import {canCompress} from '../../lib/zstd.js'
import {noProgress} from '../../services/context.js'
import {transferObject} from '../../services/transfer.js'
import {Store} from '../../store/port.js'
import {BLOB_BYTES} from './media-index.js'

/**
 * Packs (docs/storage.md): immutable objects that hold many blobs, so that the store sees a few objects of
 * about PACK_TARGET_BYTES instead of one per file (S3 Standard-IA bills at least 128 KiB an object).
 *
 * A pack is an age-encrypted tar whose members are blobs, each named by the SHA-256 of its content
 * (hex), in a zstd stream: compressed when its blobs are, and otherwise in zstd's stored framing
 * (src/lib/zstd-stored.ts), which holds the blobs' bytes as they are and only shrinks the tar's
 * headers and padding. Anyone with the identity opens one with `age -d -i KEY PACK | zstd -dcf | tar -x`,
 * without this tool (`-f` passes the plain tars of older packs through). Readers tell the three apart by
 * the first four bytes: zstd's magic number, the stored framing's marker, or a blob's hex name. The
 * manifest records which packs are compressed.
 * The pack's own name is random, so a listing of the store shows neither names nor content hashes.
 */

/** About where a pack is closed: big enough to amortise per-object costs, small enough to rewrite. */
export const PACK_TARGET_BYTES = 16 * 1024 * 1024
const BLOCK = 512
const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK)
const ZEROS = Buffer.alloc(BLOCK)
/** The tar's end in stored framing, in the frame's last block. */
const STORED_END_OF_ARCHIVE = zeroBlocks(2 * BLOCK, true)
/** Small blobs and headers are written in batches of this size. */
const BATCH_BYTES = 128 * 1024
/** Batches given back by the uploads and kept for reuse: about as many as the uploads going at once (up to three) hold. */
const SPARE_BATCHES = 16
/** A blob of BLOB_BYTES in stored framing: its bytes and a block header for each 128 KiB. */
const FRAMED_BLOB_BYTES = BLOB_BYTES + 3 * Math.ceil(BLOB_BYTES / MAX_BLOCK)
/** Framed blobs given back and kept for reuse: the upload holds one or two at a time. */
const SPARE_FRAMED = 4
/** The blobs' mtime in the tar: constant, so that a pack says nothing about when files changed. */
const EPOCH = new Date(0)

/** `packs/<32 hex>.age`, relative to an environment's folder. */
export function packKey(prefix: string, name: string): string {
  return `${prefix}/packs/${name}`
}

export function newPackName(): string {
  return `${randomBytes(16).toString('hex')}.age`
}

/**
 * How a pack's plaintext (a tar of blobs) is stored inside its age encryption: compressed with zstd,
 * in zstd's stored framing, or as it is (`none`: how packs were written before the framing; kept so
 * that tests can write them).
 */
export type PackCodec = 'none' | 'stored' | 'zstd'

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

/** A blob as a tar member: its header, its bytes, and the zeros that pad it to a 512-byte block. */
interface TarMember {
  /** The caller reuses `data` once the write resolves: a large one is copied, never held. */
  borrowed: boolean
  data: Buffer
  header: Buffer
  padding: number
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
 * rest (photos, videos, archives) into packs in stored framing, so that no CPU goes into compressing
 * what does not shrink: two packs may be open at once, one of each kind. Memory holds at most the blob being
 * written, the open packs' batches and their uploads' buffers.
 *
 * `add` resolves once the blob is accepted (the pack it lands in is not durable until `close` or the
 * pack's rollover resolves); `close` resolves with every pack written, each complete in the store. A
 * failure of any upload rejects the next call.
 */
export class PackWriter {
  /** Lends the open packs' batches to their uploads, which give them back (buffer-loan.ts). */
  private readonly batches = new BufferLender(SPARE_BATCHES)
  private readonly current = new Map<PackCodec, OpenPack>()
  /** Packs ended and still being stored, oldest first. */
  private readonly finishing: Promise<WrittenPack>[] = []
  /** The same for the large blobs of stored packs, each framed into one buffer. */
  private readonly framed = new BufferLender(SPARE_FRAMED)
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
      /** Where a pack bound for a remote store is staged whole (see TransferOptions.stageIn). */
      stageIn?: string
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

  /**
   * Stops the unfinished packs' uploads, which leaves no object (the store's put contract), and waits
   * until every upload has settled, those of ended packs too: a command that fails returns only once
   * nothing of it still writes to the store or holds a file open there (a host process outlives it).
   */
  async abandon(error: Error): Promise<void> {
    const uploads = [...this.finishing, ...[...this.current.values()].map((pack) => pack.upload)]
    for (const pack of this.current.values()) pack.input.destroy(error)
    this.current.clear()
    this.finishing.length = 0
    await Promise.allSettled(uploads)
  }

  /**
   * Adds one blob, whose id is the SHA-256 of `data` (hex); returns the name of the pack it goes into.
   * `borrowed`: the caller reuses `data` once this resolves, so it is copied, never held. Otherwise
   * the writer is its last consumer: it may give `data` back to its lender (buffer-loan.ts), and the
   * caller must not read it once this resolves.
   */
  async add(id: string, data: Buffer, options: {borrowed?: boolean} = {}): Promise<string> {
    const codec = this.options.codec === 'auto' ? autoCodec(data) : this.options.codec
    const pack = this.current.get(codec) ?? this.open(codec)
    // Taken now: once written, `data` may have gone back to its lender.
    const size = data.length
    const header = encodeTarHeader({mode: 0o10_0600, mtime: EPOCH, path: id, size, type: 'File'})
    const padding = (BLOCK - (size % BLOCK)) % BLOCK
    try {
      const member = {borrowed: options.borrowed ?? false, data, header, padding}
      await (pack.codec === 'stored' ? this.writeStored(pack, member) : this.writeMember(pack, member))
    } catch (error) {
      // The pack's input fails because its upload did, whose error names the stage and the store.
      throw await pack.upload.then(
        () => error,
        (uploadError: unknown) => uploadError,
      )
    }

    pack.blobs++
    pack.bytes += header.length + size + padding
    if (pack.bytes >= (this.options.packBytes ?? PACK_TARGET_BYTES)) await this.finish(pack)
    return pack.name
  }

  /** Finishes the open packs, and resolves with every pack this writer wrote, in order. */
  async close(): Promise<WrittenPack[]> {
    await this.rollover()
    while (this.finishing.length > 0) this.written.push(await this.finishing.shift()!)
    return this.written
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
    pack.input.end(pack.codec === 'stored' ? STORED_END_OF_ARCHIVE : END_OF_ARCHIVE)
    this.finishing.push(pack.upload)
    // One pack may complete in the background while the next one fills: its last writes (and the
    // store's fsync) overlap the reading of the next blobs, instead of stalling them at every pack.
    while (this.finishing.length > 1) this.written.push(await this.finishing.shift()!)
  }

  private async flushBatch(pack: OpenPack): Promise<void> {
    if (pack.filled === 0) return
    const full = this.batches.lend(pack.batch.subarray(0, pack.filled))
    pack.batch = this.newBatch()
    pack.filled = 0
    await write(pack.input, full)
  }

  private newBatch(): Buffer {
    const spare = this.batches.borrowBack()
    return spare === undefined ? Buffer.allocUnsafeSlow(BATCH_BYTES) : Buffer.from(spare)
  }

  private open(codec: PackCodec): OpenPack {
    const {prefix, recipients, signal, stageIn, stallTimeoutMs, store} = this.options
    const name = newPackName()
    const input = new PassThrough({highWaterMark: 256 * 1024})
    const upload = transferObject({
      compression: codec === 'zstd' ? 'zstd' : 'none',
      key: packKey(prefix, name),
      location: 'a pack of media blobs',
      name,
      progress: noProgress,
      recipients,
      signal,
      source: input,
      stageIn,
      stallTimeoutMs,
      store,
    }).then((object): WrittenPack => ({
      blobs: 0,
      codec,
      name,
      object: codec === 'zstd' ? {...object, compression: 'zstd'} : object,
    }))
    // A rejected upload is reported by finish(); until then the rejection must not go unhandled.
    upload.catch(() => {})
    const pack = {batch: this.newBatch(), blobs: 0, bytes: 0, codec, filled: 0, input, name, upload}
    if (codec === 'stored') pack.filled = storedFrameStart().copy(pack.batch)
    this.current.set(codec, pack)
    return pack
  }

  /**
   * Writes a member of a tar. Small blobs are gathered into batches: a stream write per tiny file (and
   * a message to the encryption thread for each) cost more than the file. A large blob goes as it is,
   * uncopied.
   */
  private async writeMember(pack: OpenPack, {borrowed, data, header, padding}: TarMember): Promise<void> {
    await this.append(pack, header)
    if (data.length >= BATCH_BYTES / 2) {
      await this.flushBatch(pack)
      await write(pack.input, borrowed ? Buffer.from(data) : data)
    } else {
      await this.append(pack, data)
    }

    if (padding > 0) await this.append(pack, ZEROS.subarray(0, padding))
  }

  /** The same member in stored framing: the header's zero runs and the padding as RLE blocks. */
  private async writeStored(pack: OpenPack, {borrowed, data, header, padding}: TarMember): Promise<void> {
    if (BATCH_BYTES - pack.filled < storedBlocksBound(header.length)) await this.flushBatch(pack)
    pack.filled = writeStoredBlocks(header, pack.batch, pack.filled)
    if (data.length >= BATCH_BYTES / 2) {
      await this.flushBatch(pack)
      // Framed into a buffer of its own, which goes round a loop (lent to the upload, which gives it
      // back), while the blob goes back to its reader at once: written as its 128 KiB blocks, a blob
      // never went back whole, and the reader faulted in a new MiB for every one, which made a backup
      // of the bench tree 20% slower.
      const framedBytes = data.length + 3 * Math.ceil(data.length / MAX_BLOCK)
      const spare = this.framed.borrowBack()
      const framed =
        spare !== undefined && spare.byteLength >= framedBytes
          ? Buffer.from(spare)
          : Buffer.allocUnsafeSlow(Math.max(framedBytes, FRAMED_BLOB_BYTES))
      let filled = 0
      for (let start = 0; start < data.length; start += MAX_BLOCK) {
        const end = Math.min(data.length, start + MAX_BLOCK)
        filled = writeBlockHeader(framed, filled, {size: end - start, type: 'raw'})
        filled += data.copy(framed, filled, start, end)
      }

      if (!borrowed) giveBack(data)
      await write(pack.input, this.framed.lend(framed.subarray(0, filled)))
    } else if (data.length > 0) {
      if (BATCH_BYTES - pack.filled < 3 + data.length) await this.flushBatch(pack)
      pack.filled = writeBlockHeader(pack.batch, pack.filled, {size: data.length, type: 'raw'})
      pack.filled += data.copy(pack.batch, pack.filled)
      if (!borrowed) giveBack(data)
    }

    if (padding > 0) await this.append(pack, zeroBlocks(padding))
  }
}

/** zstd for what looks compressible, when this process can write zstd at all (see canCompress). */
function autoCodec(data: Buffer): PackCodec {
  return canCompress() && looksCompressible(data) ? 'zstd' : 'stored'
}

async function write(stream: PassThrough, chunk: Buffer): Promise<void> {
  if (stream.destroyed) throw stream.errored ?? new Error('the pack upload stopped')
  if (stream.write(chunk)) return
  await drainedOrClosed(stream)
  if (stream.destroyed) throw stream.errored ?? new Error('the pack upload stopped')
}
