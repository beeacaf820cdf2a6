import type {S3Client} from '@aws-sdk/client-s3'

import {setTimeout as sleep} from 'node:timers/promises'

import {S3_MAX_ATTEMPTS} from '../lib/s3.js'
import {closeOf} from '../lib/stream-close.js'
import {fileSource} from './file-source.js'
import {ObjectSettings} from './s3-upload.js'

/** The largest object one PutObject may carry; a larger file goes up in parts. */
export const MAX_SINGLE_PUT_BYTES = 5 * 1024 * 1024 * 1024
/** Backoff before the nth retry: full jitter over 0.1 s × 2^n, at most 20 s (the SDK's standard strategy). */
const RETRY_BASE_MS = 100
const RETRY_CAP_MS = 20_000

export interface FileUpload {
  bucket: string
  /** The file's size, as the caller found it. */
  bytes: number
  client: S3Client
  key: string
  onProgress?: (bytes: number) => void
  path: string
  settings: ObjectSettings
  signal?: AbortSignal
}

/**
 * Sends a file as one PutObject, its body read from the file: no part buffers, whatever its size (a
 * pack staged by `create` or by `prune`'s repacking). The SDK does not retry a request whose body is a stream, which it cannot
 * read twice; this does, with a new read of the file each try, for the errors the SDK's standard
 * strategy retries (throttling, timeouts, resets, 5xx), with its backoff, up to S3_MAX_ATTEMPTS tries.
 * The object exists only once S3 answered a try in full, so a failed one leaves nothing.
 */
export async function putFileInOneRequest(upload: FileUpload): Promise<void> {
  const {bucket, bytes, client, key, onProgress, path, settings, signal} = upload
  const [{PutObjectCommand}, retry] = await Promise.all([import('@aws-sdk/client-s3'), import('@smithy/core/retry')])
  const retryable = (error: unknown) => {
    const sdkError = error as Parameters<typeof retry.isTransientError>[0]
    return retry.isThrottlingError(sdkError) || retry.isTransientError(sdkError) || retry.isServerError(sdkError)
  }

  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted()
    const body = fileSource(path, onProgress)
    try {
      await client.send(
        new PutObjectCommand({Body: body, Bucket: bucket, ContentLength: bytes, Key: key, ...settings}),
        {abortSignal: signal},
      )
      return
    } catch (error) {
      if (signal?.aborted || attempt >= S3_MAX_ATTEMPTS || !retryable(error)) throw error
    } finally {
      // Closed before the next try, and before the caller removes the file.
      await closeOf(body, {destroy: true})
    }

    await sleep(backoffMs(attempt), undefined, {signal})
  }
}

function backoffMs(attempt: number): number {
  return Math.random() * Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** attempt)
}
