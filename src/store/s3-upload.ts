import type {CompletedPart, S3Client, StorageClass} from '@aws-sdk/client-s3'
import type {Readable} from 'node:stream'

const MiB = 1024 * 1024

/** S3's limits for one multipart upload. */
export const MAX_PARTS = 10_000
export const MIN_PART_SIZE = 5 * MiB
export const MAX_PART_SIZE = 5 * 1024 * MiB

/** The first parts are small, so small objects use little memory; the size doubles every this many parts. */
export const FIRST_PART_SIZE = 8 * MiB
export const PARTS_PER_DOUBLING = 1000

/**
 * The size of part `partNumber` (1-based) of a stream whose length is unknown in advance.
 *
 * 1,000 parts of 8 MiB, then 1,000 of 16 MiB, and so on: 10,000 parts hold 8 TiB, more than S3's 5 TiB
 * object limit, while a stream under 7.8 GiB never buffers more than 8 MiB per part in flight.
 */
export function partSizeFor(partNumber: number): number {
  return Math.min(MAX_PART_SIZE, FIRST_PART_SIZE * 2 ** Math.floor((partNumber - 1) / PARTS_PER_DOUBLING))
}

/** The headers every object gets: storage class and server-side encryption. */
export interface ObjectSettings {
  ServerSideEncryption?: 'AES256' | 'aws:kms'
  SSEKMSKeyId?: string
  StorageClass?: StorageClass
}

export interface StreamUpload {
  bucket: string
  client: S3Client
  /** Parts in flight at once; memory is about (concurrency + 1) × the current part size. */
  concurrency: number
  key: string
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
  const parts = new PartCutter()
  const iterator = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]()

  // A stream that ends before the first part is full goes up as one plain PUT.
  const first = await readPart(iterator, parts, partSizeFor(1), signal)
  let bytes = (first?.length ?? 0) + parts.length
  if (first === undefined) {
    const body = parts.rest()
    await client.send(
      new PutObjectCommand({Body: body, Bucket: bucket, ContentLength: body.length, Key: key, ...settings}),
      {abortSignal: signal},
    )
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
  const send = (body: Buffer, partNumber: number) => {
    const sending = sendPart(client, {bucket, key, partNumber, uploadId: UploadId!}, body, cancel.signal).then(
      (part) => {
        completed.push(part)
      },
      (error: unknown) => {
        failure ??= error
        cancel.abort(error)
      },
    )
    const tracked = sending.finally(() => inFlight.delete(tracked))
    inFlight.add(tracked)
  }

  try {
    let partNumber = 1
    send(first, partNumber)
    for (;;) {
      if (failure !== undefined) throw failure
      cancel.signal.throwIfAborted()
      const {done, value} = await iterator.next()
      if (done) break
      bytes += value.length
      parts.push(value)
      for (let body = parts.take(partSizeFor(partNumber + 1)); body; body = parts.take(partSizeFor(partNumber + 1))) {
        partNumber++
        if (partNumber > MAX_PARTS) throw new Error(`the stream needs more than ${MAX_PARTS} parts`)
        // Backpressure: read no further while every slot is busy.
        while (inFlight.size >= upload.concurrency) await Promise.race(inFlight)
        if (failure !== undefined) throw failure
        send(body, partNumber)
      }
    }

    const last = parts.rest()
    if (last.length > 0) {
      partNumber++
      if (partNumber > MAX_PARTS) throw new Error(`the stream needs more than ${MAX_PARTS} parts`)
      send(last, partNumber)
    }

    await Promise.all(inFlight)
    if (failure !== undefined) throw failure
    signal?.throwIfAborted()
    completed.sort((a, b) => a.PartNumber! - b.PartNumber!)
    await client.send(
      new CompleteMultipartUploadCommand({Bucket: bucket, Key: key, MultipartUpload: {Parts: completed}, UploadId}),
      {abortSignal: signal},
    )
    return {bytes}
  } catch (error) {
    cancel.abort(error)
    await Promise.allSettled(inFlight)
    // Aborting must work even when the caller's signal has fired: it gets no signal of its own.
    await client.send(new AbortMultipartUploadCommand({Bucket: bucket, Key: key, UploadId})).catch(() => {})
    throw error
  } finally {
    signal?.removeEventListener('abort', onAbort)
    await iterator.return?.().catch(() => {})
  }
}

/** Reads until a part of `size` bytes is full; undefined when the source ends first (the bytes stay in `parts`). */
async function readPart(
  iterator: AsyncIterator<Buffer>,
  parts: PartCutter,
  size: number,
  signal: AbortSignal | undefined,
): Promise<Buffer | undefined> {
  for (;;) {
    signal?.throwIfAborted()
    const {done, value} = await iterator.next()
    if (done) return undefined
    parts.push(value)
    const part = parts.take(size)
    if (part) return part
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

/** Cuts a stream of chunks into parts of given sizes, copying each byte once. */
class PartCutter {
  /** Bytes pushed and not yet taken. */
  length = 0
  private chunks: Buffer[] = []

  push(chunk: Buffer): void {
    this.chunks.push(chunk)
    this.length += chunk.length
  }

  rest(): Buffer {
    const body = Buffer.concat(this.chunks, this.length)
    this.chunks = []
    this.length = 0
    return body
  }

  /** A part of exactly `size` bytes, once that many have been pushed. */
  take(size: number): Buffer | undefined {
    if (this.length < size) return undefined
    const joined = Buffer.concat(this.chunks, this.length)
    // Keep the remainder as a copy, so the part's memory is freed as soon as it has been sent.
    const rest = joined.subarray(size)
    this.chunks = rest.length > 0 ? [Buffer.from(rest)] : []
    this.length = rest.length
    return joined.subarray(0, size)
  }
}
