import type {S3Client} from '@aws-sdk/client-s3'

import {stat} from 'node:fs/promises'
import {Readable} from 'node:stream'

import {MINIMUM_STORAGE_DAYS, S3Location} from '../config/s3-location.js'
import {createS3Client, getObject, httpStatusOf, s3ErrorCode, s3Failure} from '../lib/s3.js'
import {putFileAsStream} from './file-source.js'
import {assertValidKey, ObjectInfo, ObjectNotFoundError, PutFileOptions, Store, StoreCallOptions} from './port.js'
import {MAX_SINGLE_PUT_BYTES, putFileInOneRequest} from './s3-put-file.js'
import {ObjectSettings, PartBudget, uploadStream} from './s3-upload.js'

/** Parts of one object in flight (or being filled) at once: 2 × 5 MiB of memory. */
const UPLOAD_CONCURRENCY = 2
/** Multipart uploads in progress are listed under `<key>.partial-<upload id>`, like the local store's partial files. */
const PARTIAL_MARKER = '.partial-'

/**
 * A bucket and prefix on S3 or an S3-compatible service. Objects are `<prefix><key>`.
 *
 * - Every object is written with the configured storage class and server-side encryption.
 * - Writes stream as multipart uploads (see {@link uploadStream}); the object exists only once the upload
 *   completes, so put is atomic. A failed or aborted write aborts its upload.
 * - Uploads still in progress, or abandoned by a killed process, are listed as `<key>.partial-<id>` with
 *   the time they started, so prune can see and collect them; deleting such a key aborts the upload.
 * - A read whose connection breaks resumes with a ranged GET pinned to the object's ETag.
 * - Failures of S3 itself (after the SDK's retries) are reported as BackupError STORE_UNAVAILABLE.
 * - Every request ends with the command (StoreCallOptions.signal), and fails once it has moved nothing
 *   for the stall timeout (each of the SDK's tries).
 */
export class S3Store implements Store {
  readonly description: string
  readonly local = false
  readonly minimumStorageDays: number
  readonly ownClock = true
  /** When the server last answered, by its Date header and by this machine's monotonic clock. */
  private answered: undefined | {localMs: number; serverMs: number}
  private clientPromise: Promise<S3Client> | undefined
  /** The part buffers of this store's uploads, in one budget (a packed backup uploads up to three packs at once). */
  private readonly parts = new PartBudget()
  private readonly settings: ObjectSettings

  constructor(
    private readonly location: S3Location,
    /** The DSN as shown to users, already redacted. */
    description: string,
    private readonly options: StoreCallOptions = {},
  ) {
    this.description = description
    this.minimumStorageDays = MINIMUM_STORAGE_DAYS[location.storageClass]
    const {sse} = location
    this.settings = {
      StorageClass: location.storageClass,
      ...(sse.kind === 'none' ? {} : {ServerSideEncryption: sse.kind}),
      ...(sse.kind === 'aws:kms' && sse.keyId ? {SSEKMSKeyId: sse.keyId} : {}),
    }
  }

  async delete(key: string, options: {signal?: AbortSignal} = {}): Promise<void> {
    assertValidKey(key)
    const {AbortMultipartUploadCommand, DeleteObjectCommand} = await import('@aws-sdk/client-s3')
    const client = await this.client()
    const marker = key.lastIndexOf(PARTIAL_MARKER)
    try {
      if (marker === -1) {
        await client.send(new DeleteObjectCommand({Bucket: this.location.bucket, Key: this.keyOf(key)}), {
          abortSignal: this.signalFor(options.signal),
        })
        return
      }

      const UploadId = decodeURIComponent(key.slice(marker + PARTIAL_MARKER.length))
      await client.send(
        new AbortMultipartUploadCommand({
          Bucket: this.location.bucket,
          Key: this.keyOf(key.slice(0, marker)),
          UploadId,
        }),
        {abortSignal: this.signalFor(options.signal)},
      )
    } catch (error) {
      if (s3ErrorCode(error) === 'NoSuchUpload' || httpStatusOf(error) === 404) return
      throw s3Failure(error, `delete ${key}`, this.description)
    }
  }

  async get(key: string): Promise<Readable> {
    assertValidKey(key)
    const client = await this.client()
    const read = await getObject(
      client,
      {bucket: this.location.bucket, key: this.keyOf(key)},
      (error) => s3Failure(error, `read ${key}`, this.description),
      this.signalFor(),
    )
    if (read === undefined) throw new ObjectNotFoundError(key)
    return read.body
  }

  async isEmpty(): Promise<boolean> {
    const {ListObjectsV2Command} = await import('@aws-sdk/client-s3')
    const client = await this.client()
    const page = await client
      .send(new ListObjectsV2Command({Bucket: this.location.bucket, MaxKeys: 1, Prefix: this.keyOf('')}), {
        abortSignal: this.signalFor(),
      })
      .catch((error: unknown) => {
        throw s3Failure(error, 'list backups', this.description)
      })
    return (page.KeyCount ?? page.Contents?.length ?? 0) === 0
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const uploads = await this.uploadsUnder(prefix)
    let next = 0
    for await (const object of this.objectsUnder(prefix)) {
      while (next < uploads.length && uploads[next].key < object.key) yield uploads[next++]
      yield object
    }

    yield* uploads.slice(next)
  }

  async presign(key: string, {expiresInSeconds}: {expiresInSeconds: number}): Promise<string> {
    assertValidKey(key)
    const [{GetObjectCommand}, {getSignedUrl}] = await Promise.all([
      import('@aws-sdk/client-s3'),
      import('@aws-sdk/s3-request-presigner'),
    ])
    const command = new GetObjectCommand({Bucket: this.location.bucket, Key: this.keyOf(key)})
    try {
      return await getSignedUrl(await this.client(), command, {expiresIn: expiresInSeconds})
    } catch (error) {
      throw s3Failure(error, `sign a link to ${key}`, this.description)
    }
  }

  async put(key: string, source: Readable, options: {signal?: AbortSignal} = {}): Promise<{bytes: number}> {
    assertValidKey(key)
    const client = await this.client()
    // Errors of the source or the signal pass through as they are; only S3's own are translated.
    let sourceError: unknown
    source.once('error', (error) => {
      sourceError = error
    })
    try {
      return await uploadStream({
        bucket: this.location.bucket,
        client,
        concurrency: UPLOAD_CONCURRENCY,
        key: this.keyOf(key),
        parts: this.parts,
        settings: this.settingsFor(key),
        signal: this.signalFor(options.signal),
        source,
      })
    } catch (error) {
      if (error === sourceError || options.signal?.aborted || this.options.signal?.aborted) throw error
      throw s3Failure(error, `write ${key}`, this.description)
    }
  }

  async putFile(key: string, path: string, options: PutFileOptions = {}): Promise<{bytes: number}> {
    assertValidKey(key)
    const {size} = await stat(path)
    if (size > MAX_SINGLE_PUT_BYTES) return putFileAsStream(this, key, path, options)
    const client = await this.client()
    try {
      await putFileInOneRequest({
        bucket: this.location.bucket,
        bytes: size,
        client,
        key: this.keyOf(key),
        onProgress: options.onProgress,
        path,
        settings: this.settingsFor(key),
        signal: this.signalFor(options.signal),
      })
      return {bytes: size}
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason
      if (this.options.signal?.aborted) throw this.options.signal.reason
      throw s3Failure(error, `write ${key}`, this.description)
    }
  }

  serverTime(): Date | undefined {
    return this.answered === undefined
      ? undefined
      : new Date(this.answered.serverMs + (performance.now() - this.answered.localMs))
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    assertValidKey(key)
    const {HeadObjectCommand} = await import('@aws-sdk/client-s3')
    const client = await this.client()
    try {
      const head = await client.send(new HeadObjectCommand({Bucket: this.location.bucket, Key: this.keyOf(key)}), {
        abortSignal: this.signalFor(),
      })
      return {bytes: head.ContentLength ?? 0, key, modifiedAt: head.LastModified ?? new Date(0)}
    } catch (error) {
      if (httpStatusOf(error) === 404) return undefined
      throw s3Failure(error, `read ${key}`, this.description)
    }
  }

  private client(): Promise<S3Client> {
    this.clientPromise ??= createS3Client(this.location, {silenceMs: this.options.stallTimeoutMs}).then((client) => {
      // Every answer's Date header: the server's clock, for serverTime.
      client.middlewareStack.add(
        (next) => async (args) => {
          const result = await next(args)
          const date = (result.response as {headers?: Record<string, string>}).headers?.date
          const serverMs = date === undefined ? Number.NaN : Date.parse(date)
          if (!Number.isNaN(serverMs)) this.answered = {localMs: performance.now(), serverMs}
          return result
        },
        {name: 'serverTime', step: 'deserialize'},
      )
      return client
    })
    return this.clientPromise
  }

  private keyOf(key: string): string {
    return `${this.location.prefix}${key}`
  }

  private async *objectsUnder(prefix: string): AsyncIterable<ObjectInfo> {
    const {ListObjectsV2Command} = await import('@aws-sdk/client-s3')
    const client = await this.client()
    let ContinuationToken: string | undefined
    do {
      const page = await client
        .send(new ListObjectsV2Command({Bucket: this.location.bucket, ContinuationToken, Prefix: this.keyOf(prefix)}), {
          abortSignal: this.signalFor(),
        })
        .catch((error: unknown) => {
          throw s3Failure(error, 'list backups', this.description)
        })
      for (const object of page.Contents ?? []) {
        yield {
          bytes: object.Size ?? 0,
          key: object.Key!.slice(this.location.prefix.length),
          modifiedAt: object.LastModified ?? new Date(0),
        }
      }

      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (ContinuationToken)
  }

  /** JSON is served as JSON, so that a browser or `curl` of a manifest shows it as text. */
  private settingsFor(key: string): ObjectSettings {
    return key.endsWith('.json') ? {...this.settings, ContentType: 'application/json'} : this.settings
  }

  /** The command's signal, and the call's own where it has one. */
  private signalFor(call?: AbortSignal): AbortSignal | undefined {
    const signals = [this.options.signal, call].filter((signal) => signal !== undefined)
    return signals.length > 1 ? AbortSignal.any(signals) : signals[0]
  }

  /** Multipart uploads under the prefix, as partial objects in key order. Few exist, so they are read at once. */
  private async uploadsUnder(prefix: string): Promise<ObjectInfo[]> {
    const {ListMultipartUploadsCommand} = await import('@aws-sdk/client-s3')
    const client = await this.client()
    const uploads: ObjectInfo[] = []
    let KeyMarker: string | undefined
    let UploadIdMarker: string | undefined
    do {
      let page
      try {
        page = await client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.location.bucket,
            KeyMarker,
            Prefix: this.keyOf(prefix),
            UploadIdMarker,
          }),
          {abortSignal: this.signalFor()},
        )
      } catch (error) {
        // Without s3:ListBucketMultipartUploads the uploads stay invisible; a bucket lifecycle rule
        // (AbortIncompleteMultipartUpload) still removes them, and nothing else depends on seeing them.
        if (s3ErrorCode(error) === 'AccessDenied' || s3ErrorCode(error) === 'NotImplemented') return []
        throw s3Failure(error, 'list backups', this.description)
      }

      for (const upload of page.Uploads ?? []) {
        uploads.push({
          bytes: 0,
          key: `${upload.Key!.slice(this.location.prefix.length)}${PARTIAL_MARKER}${encodeURIComponent(upload.UploadId!)}`,
          modifiedAt: upload.Initiated ?? new Date(0),
        })
      }

      KeyMarker = page.IsTruncated ? page.NextKeyMarker : undefined
      UploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined
    } while (KeyMarker)

    return uploads.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }
}
