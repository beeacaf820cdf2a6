import type {CompletedPart, S3Client, StorageClass} from '@aws-sdk/client-s3'
import type {Readable} from 'node:stream'

import {freeNow, giveBack} from '../lib/buffer-loan.js'

const MiB = 1024 * 1024

/** How long the abort of a failed upload may take before it is left for prune. */
const CLEANUP_TIMEOUT_MS = 3000

/** S3's limits for one multipart upload. */
export const MAX_PARTS = 10_000
export const MIN_PART_SIZE = 5 * MiB
export const MAX_PART_SIZE = 5 * 1024 * MiB

/** Parts start at S3's minimum size and keep it for the first {@link PARTS_AT_FIRST_SIZE} parts (9.8 GiB). */
export const FIRST_PART_SIZE = MIN_PART_SIZE
export const PARTS_AT_FIRST_SIZE = 2000
/** After that, the part size doubles every this many parts. */
export const PARTS_PER_DOUBLING = 800

/**
 * The size of part `partNumber` (1-based) of a stream whose length is unknown in advance.
 *
 * 2,000 parts of 5 MiB, then 800 of 10 MiB, 800 of 20 MiB, and so on up to 5 GiB: 10,000 parts hold
 * 7.8 TiB, more than S3's 5 TiB object limit. Streams up to 9.8 GiB, nearly every backup, never buffer
 * more than 5 MiB per part, so memory stays flat over that whole range.
 */
export function partSizeFor(partNumber: number): number {
  if (partNumber <= PARTS_AT_FIRST_SIZE) return FIRST_PART_SIZE
  const doublings = 1 + Math.floor((partNumber - PARTS_AT_FIRST_SIZE - 1) / PARTS_PER_DOUBLING)
  return Math.min(MAX_PART_SIZE, FIRST_PART_SIZE * 2 ** doublings)
}

/** The headers every object gets: storage class and server-side encryption. */
export interface ObjectSettings {
  ContentType?: string
  ServerSideEncryption?: 'AES256' | 'aws:kms'
  SSEKMSKeyId?: string
  StorageClass?: StorageClass
}

export interface StreamUpload {
  bucket: string
  client: S3Client
  /** Parts in flight at once; memory is about concurrency × the current part size. */
  concurrency: number
  key: string
  /** Part buffers shared with the store's other uploads (SharedParts); a pool of its own when absent. */
  parts?: SharedParts
  settings: ObjectSettings
  signal?: AbortSignal
  source: Readable
}

/**
 * Uploads a stream of unknown length as one object, with part sizes from {@link partSizeFor}.
 *
 * A stream shorter than the first part goes up in one PutObject. Otherwise a multipart upload is
 * created, parts are sent `concurrency` at a time (each retried by the SDK's retry strategy), and it is
 * completed only after the source ended cleanly. On any failure (the source, a part, the abort signal)
 * the parts in flight are cancelled and the multipart upload is aborted before the error is rethrown, so
 * no partial object appears and no parts are left to pay for. The source's own error is rethrown as it is.
 *
 * `@aws-sdk/lib-storage` is not used here because it fixes one part size per upload and buffers
 * `queueSize` parts of that size: for a stream of unknown length it can meet either the 10,000-part
 * limit at 5 TiB or a flat memory footprint, not both.
 */
export async function uploadStream(upload: StreamUpload): Promise<{bytes: number}> {
  const {bucket, client, key, settings, signal, source} = upload
  const {AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, PutObjectCommand} =
    await import('@aws-sdk/client-s3')
  const buffers = new PartBuffers(partSizeFor, upload.parts)
  const iterator = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]()
  let bytes = 0
  /** The parts the next chunk completed, or undefined at the end of the stream. */
  const read = async (): Promise<Buffer[] | undefined> => {
    const {done, value} = await iterator.next()
    if (done) return undefined
    bytes += value.length
    const parts = buffers.fill(value)
    // Copied into the part: the stage that lent it may write its next bytes into it.
    giveBack(value)
    return parts
  }

  // A stream that ends before the first part is full goes up as one plain PUT.
  let ready: Buffer[] | undefined = []
  while (ready?.length === 0) {
    signal?.throwIfAborted()
    ready = await read()
  }

  if (ready === undefined) {
    const body = buffers.rest()
    await client.send(
      new PutObjectCommand({Body: body, Bucket: bucket, ContentLength: body.length, Key: key, ...settings}),
      {abortSignal: signal},
    )
    buffers.release(body)
    buffers.retire()
    return {bytes}
  }

  const {UploadId} = await client.send(new CreateMultipartUploadCommand({Bucket: bucket, Key: key, ...settings}), {
    abortSignal: signal,
  })
  const cancel = new AbortController()
  const onAbort = () => cancel.abort(signal?.reason)
  signal?.addEventListener('abort', onAbort, {once: true})
  const completed: CompletedPart[] = []
  const inFlight = new Set<Promise<void>>()
  let failure: unknown
  let partNumber = 0
  const send = async (body: Buffer) => {
    // Backpressure: read no further while every slot is busy.
    while (inFlight.size >= upload.concurrency) await Promise.race(inFlight)
    if (failure !== undefined) throw failure
    if (++partNumber > MAX_PARTS) throw new Error(`the stream needs more than ${MAX_PARTS} parts`)
    const target = {bucket, key, partNumber, uploadId: UploadId!}
    const tracked: Promise<void> = sendPart(client, target, body, cancel.signal)
      .then(
        (part) => {
          completed.push(part)
        },
        (error: unknown) => {
          failure ??= error
          cancel.abort(error)
        },
      )
      .finally(() => {
        inFlight.delete(tracked)
        buffers.release(body)
      })
    inFlight.add(tracked)
  }

  try {
    while (ready !== undefined) {
      for (const body of ready) await send(body)
      // Fill the next part only once a slot is free: `concurrency` buffers in all, not one more.
      while (inFlight.size >= upload.concurrency) await Promise.race(inFlight)
      if (failure !== undefined) throw failure
      cancel.signal.throwIfAborted()
      ready = await read()
    }

    const last = buffers.rest()
    if (last.length > 0) await send(last)
    await Promise.all(inFlight)
    if (failure !== undefined) throw failure
    signal?.throwIfAborted()
    completed.sort((a, b) => a.PartNumber! - b.PartNumber!)
    await client.send(
      new CompleteMultipartUploadCommand({Bucket: bucket, Key: key, MultipartUpload: {Parts: completed}, UploadId}),
      {abortSignal: signal},
    )
    buffers.retire()
    return {bytes}
  } catch (error) {
    cancel.abort(error)
    await Promise.allSettled(inFlight)
    // Aborting must work even when the caller's signal has fired, so it gets a signal of its own: a
    // bounded one, so that an endpoint that stopped answering cannot hold the command. An upload left
    // open is listed, and prune aborts it.
    await client
      .send(new AbortMultipartUploadCommand({Bucket: bucket, Key: key, UploadId}), {
        abortSignal: AbortSignal.timeout(CLEANUP_TIMEOUT_MS),
      })
      .catch(() => {})
    throw error
  } finally {
    signal?.removeEventListener('abort', onAbort)
    await iterator.return?.().catch(() => {})
  }
}

async function sendPart(
  client: S3Client,
  target: {bucket: string; key: string; partNumber: number; uploadId: string},
  body: Buffer,
  signal: AbortSignal,
): Promise<CompletedPart> {
  const {UploadPartCommand} = await import('@aws-sdk/client-s3')
  const {ETag} = await client.send(
    new UploadPartCommand({
      Body: body,
      Bucket: target.bucket,
      ContentLength: body.length,
      Key: target.key,
      PartNumber: target.partNumber,
      UploadId: target.uploadId,
    }),
    {abortSignal: signal},
  )
  if (!ETag) throw new Error(`S3 returned no ETag for part ${target.partNumber}`)
  return {ETag, PartNumber: target.partNumber}
}

/**
 * Part buffers that finished uploads gave back, for the next upload through the same store: a packed
 * backup stores a pack every 16 MiB or so, each a multipart upload of its own, and each upload's
 * buffers, left to V8, waited for a collection. Only buffers of the first part size are kept, as many
 * as one upload uses at once ({@link SHARED_PARTS}); the others are freed at once. The store holds it,
 * so that nothing outlives the command (a host's process runs many).
 */
export class SharedParts {
  private readonly parts: Buffer[] = []

  /** Keeps a buffer of the first part size for the next upload; frees it when enough are kept. */
  giveBack(buffer: Buffer): void {
    if (buffer.length === FIRST_PART_SIZE && this.parts.length < SHARED_PARTS) this.parts.push(buffer)
    else freeNow(buffer)
  }

  take(size: number): Buffer | undefined {
    return size === FIRST_PART_SIZE ? this.parts.pop() : undefined
  }
}

/**
 * Copies a stream's chunks into part-sized buffers, and takes back the buffers of sent parts for the
 * next ones. Memory stays at one buffer per part in flight and no garbage is made per part, which keeps
 * the process's peak RSS flat however long the stream is. A buffer goes to the next upload once this
 * one has succeeded (`retire`), when every request that read it has been answered; after a failure,
 * a request cut short may not be done with its body, so nothing is kept or freed then.
 */
class PartBuffers {
  private current: Buffer | undefined
  private filled = 0
  private produced = 0
  private spare: Buffer[] = []

  constructor(
    private readonly sizeOf: (partNumber: number) => number,
    private readonly shared = new SharedParts(),
  ) {}

  /** Copies `chunk` in; returns the parts it completed (usually none, sometimes one). */
  fill(chunk: Buffer): Buffer[] {
    const full: Buffer[] = []
    let offset = 0
    while (offset < chunk.length) {
      this.current ??= this.acquire(this.sizeOf(this.produced + 1))
      const copied = chunk.copy(this.current, this.filled, offset)
      offset += copied
      this.filled += copied
      if (this.filled === this.current.length) {
        full.push(this.current)
        this.produced++
        this.current = undefined
        this.filled = 0
      }
    }

    return full
  }

  /**
   * Takes back a part's buffer once it has been sent: the whole of it, for a last part, which fills
   * only its start.
   */
  release(part: Buffer): void {
    if (part.byteOffset === 0 && part.buffer.byteLength > 0) {
      this.spare.push(Buffer.from(part.buffer as ArrayBuffer, 0, part.buffer.byteLength))
    }
  }

  /** The bytes of the part being filled (possibly none). */
  rest(): Buffer {
    const rest = this.current?.subarray(0, this.filled) ?? Buffer.alloc(0)
    this.current = undefined
    this.filled = 0
    return rest
  }

  /** After a successful upload: the spare buffers go to the next upload, or are freed now. */
  retire(): void {
    for (const buffer of this.spare.splice(0)) this.shared.giveBack(buffer)
  }

  private acquire(size: number): Buffer {
    // Parts only grow: spares of another size will not be used again.
    this.spare = this.spare.filter((buffer) => buffer.length === size)
    return this.spare.pop() ?? this.shared.take(size) ?? Buffer.allocUnsafeSlow(size)
  }
}

/** Buffers kept for the next upload: as many as one upload holds at once (its parts in flight, and one filling). */
const SHARED_PARTS = 3
