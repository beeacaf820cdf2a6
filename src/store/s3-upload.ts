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
  /** Buffers of this object's parts at once, in flight or being filled: memory is about concurrency × the part size. */
  concurrency: number
  key: string
  /** The store's budget of part buffers, shared by its uploads (see {@link PartBudget}); one of its own when absent. */
  parts?: PartBudget
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
  const {signal, source} = upload
  const writer = new MultipartWriter(upload, await import('@aws-sdk/client-s3'))
  const onAbort = () => writer.cancel(signal?.reason)
  signal?.addEventListener('abort', onAbort, {once: true})
  const iterator = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]()
  let bytes = 0
  try {
    signal?.throwIfAborted()
    // The signal ends a wait for the source too: a stalled source cannot hold the command.
    const cancelled = writer.cancelledSignal
    for (
      let next = await untilCancelled(iterator.next(), cancelled);
      !next.done;
      next = await untilCancelled(iterator.next(), cancelled)
    ) {
      bytes += next.value.length
      await writer.write(next.value)
      // Copied into parts: the stage that lent it may write its next bytes into it.
      giveBack(next.value)
    }

    signal?.throwIfAborted()
    await writer.end()
    return {bytes}
  } catch (error) {
    // As the iterator's return would, but at once: it waits for a read still pending on the source.
    source.destroy()
    await writer.abort(error)
    throw error
  } finally {
    signal?.removeEventListener('abort', onAbort)
    await iterator.return?.().catch(() => {})
  }
}

type S3Module = typeof import('@aws-sdk/client-s3')

/** `promise`, or the signal's reason once it fires first. */
function untilCancelled<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    // Settled later by the source's destruction, with nobody waiting for it.
    promise.catch(() => {})
    return Promise.reject(signal.reason)
  }

  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, {once: true})
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

/**
 * One object's upload: copies the stream into part buffers from the store's budget, sends each part as
 * it fills, and creates the multipart upload only once a first part is full.
 */
class MultipartWriter {
  private readonly budget: PartBudget
  private readonly cancelled = new AbortController()
  private readonly completed: CompletedPart[] = []
  /** The part being filled: a buffer of the budget's, and how much of it holds the stream's bytes. */
  private current: Buffer | undefined
  private failure: unknown
  private filled = 0
  private readonly inFlight = new Set<Promise<void>>()
  private partNumber = 0
  private uploadId: string | undefined

  constructor(
    private readonly upload: StreamUpload,
    private readonly s3: S3Module,
  ) {
    this.budget = upload.parts ?? new PartBudget()
  }

  /** Fires once the upload is cancelled: by the caller's signal, or by a part that failed. */
  get cancelledSignal(): AbortSignal {
    return this.cancelled.signal
  }

  /** After any failure: settles what is in flight, returns the buffers, and aborts the multipart upload. */
  async abort(error: unknown): Promise<void> {
    this.cancel(error)
    await Promise.allSettled(this.inFlight)
    // The part being filled was never sent, so no request can still be reading it.
    if (this.current !== undefined) this.budget.release(this.current, {reusable: true})
    this.current = undefined
    if (this.uploadId === undefined) return
    const {bucket, client, key} = this.upload
    // Aborting must work even when the caller's signal has fired, so it gets a signal of its own: a
    // bounded one, so that an endpoint that stopped answering cannot hold the command. An upload left
    // open is listed, and prune aborts it.
    await client
      .send(new this.s3.AbortMultipartUploadCommand({Bucket: bucket, Key: key, UploadId: this.uploadId}), {
        abortSignal: AbortSignal.timeout(CLEANUP_TIMEOUT_MS),
      })
      .catch(() => {})
  }

  /** Cancels the upload: the parts in flight, and a wait for a buffer or a slot. */
  cancel(reason: unknown): void {
    this.cancelled.abort(reason)
  }

  /** Sends the part being filled and completes the upload; or puts the whole stream, if it is that short. */
  async end(): Promise<void> {
    const {bucket, client, key, settings} = this.upload
    const last = this.current
    const length = this.filled
    this.current = undefined
    if (this.uploadId === undefined) {
      const body = last?.subarray(0, length) ?? Buffer.alloc(0)
      let reusable = false
      try {
        await client.send(
          new this.s3.PutObjectCommand({Body: body, Bucket: bucket, ContentLength: length, Key: key, ...settings}),
          {abortSignal: this.cancelled.signal},
        )
        reusable = true
      } finally {
        if (last !== undefined) this.budget.release(last, {reusable})
      }

      return
    }

    if (last !== undefined) await this.send(last, length)
    await Promise.all(this.inFlight)
    this.throwIfFailed()
    this.cancelled.signal.throwIfAborted()
    this.completed.sort((a, b) => a.PartNumber! - b.PartNumber!)
    await client.send(
      new this.s3.CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        MultipartUpload: {Parts: this.completed},
        UploadId: this.uploadId,
      }),
      {abortSignal: this.cancelled.signal},
    )
  }

  /** Copies `chunk` into parts, sending each one that fills; resolves once all of it is copied. */
  async write(chunk: Buffer): Promise<void> {
    let offset = 0
    while (offset < chunk.length) {
      // A part is filled only once a slot is free: `concurrency` buffers an upload, not one more.
      if (this.current === undefined) await this.slot()
      this.current ??= await this.budget.acquire(partSizeFor(this.partNumber + 1), {
        // A buffer is waited for only while parts of this object are in flight, whose buffers will
        // come back: an upload with none always gets one, so uploads fed in turn by one writer (a
        // packed backup's) cannot wait on one another.
        canWait: () => this.inFlight.size > 0,
        signal: this.cancelled.signal,
      })
      const copied = chunk.copy(this.current, this.filled, offset)
      offset += copied
      this.filled += copied
      if (this.filled === this.current.length) {
        const full = this.current
        this.current = undefined
        this.filled = 0
        await this.send(full, full.length)
      }
    }
  }

  private async create(): Promise<string> {
    const {bucket, client, key, settings} = this.upload
    const {UploadId} = await client.send(
      new this.s3.CreateMultipartUploadCommand({Bucket: bucket, Key: key, ...settings}),
      {abortSignal: this.cancelled.signal},
    )
    if (!UploadId) throw new Error('S3 returned no upload id')
    return UploadId
  }

  /** Sends `length` bytes of `buffer` as the next part once a slot is free; the budget gets it back after. */
  private async send(buffer: Buffer, length: number): Promise<void> {
    try {
      await this.slot()
      if (this.partNumber >= MAX_PARTS) throw new Error(`the stream needs more than ${MAX_PARTS} parts`)
      this.uploadId ??= await this.create()
    } catch (error) {
      this.budget.release(buffer, {reusable: true})
      throw error
    }

    const {bucket, client, key} = this.upload
    const target = {bucket, key, partNumber: ++this.partNumber, uploadId: this.uploadId}
    let reusable = false
    const tracked: Promise<void> = sendPart(client, target, buffer.subarray(0, length), this.cancelled.signal)
      .then(
        (part) => {
          this.completed.push(part)
          // Answered: no request reads this buffer any more.
          reusable = true
        },
        (error: unknown) => {
          this.failure ??= error
          this.cancel(error)
        },
      )
      .finally(() => {
        this.inFlight.delete(tracked)
        // After the slot is freed, so that a wait for a buffer woken by this release sees it free.
        this.budget.release(buffer, {reusable})
      })
    this.inFlight.add(tracked)
  }

  /** Waits until fewer than `concurrency` parts are in flight; throws once the upload has failed. */
  private async slot(): Promise<void> {
    while (this.inFlight.size >= this.upload.concurrency) await Promise.race(this.inFlight)
    this.throwIfFailed()
    this.cancelled.signal.throwIfAborted()
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure
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

/** Part buffers a store's uploads hold between them (see {@link PartBudget}): 15 MiB of first-size parts. */
export const STORE_PART_BUFFERS = 3

/**
 * The part buffers of a store's uploads, in one budget. A packed backup stores a pack every 16 MiB or
 * so, up to three at once, each a multipart upload of its own: with two buffers each, and the buffers
 * kept between uploads, they held up to 45 MiB of parts.
 *
 * - An upload waits for a buffer while the store's uploads hold {@link STORE_PART_BUFFERS} and parts of
 *   its own are in flight. One with no part in flight gets a buffer at once, over the budget if need
 *   be: its progress never depends on another upload's, whose source may be waiting on it.
 * - Buffers given back after a part was answered go to the next part of any upload; a store keeps as
 *   many as its budget and frees the rest at once. A buffer whose request failed is only counted back:
 *   a request cut short may not be done with its body, so it is left to V8, never written again.
 * - The store holds it, so nothing outlives the command (a host's process runs many).
 */
export class PartBudget {
  private held = 0
  private readonly idle: Buffer[] = []
  private waiting: Array<() => void> = []

  constructor(private readonly limit = STORE_PART_BUFFERS) {}

  /** Buffers the uploads hold now, filling or in flight. */
  get inUse(): number {
    return this.held
  }

  /**
   * A buffer of `size` bytes; waits while the budget is spent and `canWait()` (asked again each time
   * a buffer comes back) says the caller will get one of its own back.
   */
  async acquire(size: number, options: {canWait: () => boolean; signal: AbortSignal}): Promise<Buffer> {
    const {canWait, signal} = options
    while (this.held >= this.limit && canWait()) {
      signal.throwIfAborted()
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal.removeEventListener('abort', wake)
          resolve()
        }

        signal.addEventListener('abort', wake, {once: true})
        this.waiting.push(wake)
      })
    }

    signal.throwIfAborted()
    this.held++
    return (size === FIRST_PART_SIZE ? this.idle.pop() : undefined) ?? Buffer.allocUnsafeSlow(size)
  }

  /** Gives back a buffer that `acquire` returned; `reusable`: no request can still be reading it. */
  release(buffer: Buffer, {reusable}: {reusable: boolean}): void {
    this.held--
    if (reusable) {
      if (buffer.length === FIRST_PART_SIZE && this.held + this.idle.length < this.limit) this.idle.push(buffer)
      else freeNow(buffer)
    }

    const woken = this.waiting
    this.waiting = []
    for (const wake of woken) wake()
  }
}
