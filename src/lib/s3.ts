import type {S3Client} from '@aws-sdk/client-s3'

import {S3Location} from '../config/s3-location.js'
import {BackupError} from '../errors.js'

/** Attempts per request, the first included. The SDK's standard strategy backs off exponentially with jitter. */
export const S3_MAX_ATTEMPTS = 8

/**
 * An S3 client for one location. The SDK is loaded on first use, so that commands on a local store do
 * not pay for it at start-up.
 *
 * Retries are the SDK's standard strategy, set explicitly: throttling (SlowDown), 5xx, timeouts and
 * connection resets are retried with exponential backoff and jitter, up to {@link S3_MAX_ATTEMPTS}
 * attempts, drawing on the SDK's retry quota so that a service that is down fails fast instead of
 * being hammered.
 */
export async function createS3Client(location: S3Location, maxSockets = 32): Promise<S3Client> {
  // The SDK warns on every run about Node versions it will stop supporting; users of a backup command
  // cannot act on it, and the SDK version is pinned by this package's lockfile.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  const {S3Client} = await import('@aws-sdk/client-s3')
  const agent = {keepAlive: true, maxSockets}
  return new S3Client({
    credentials: location.credentials,
    endpoint: location.endpoint,
    forcePathStyle: location.forcePathStyle,
    maxAttempts: S3_MAX_ATTEMPTS,
    region: location.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? defaultRegion(location),
    // S3-compatible services often reject the newer CRC checksum headers; our own SHA-256 of every
    // object, checked on read, is the integrity guarantee in any case.
    requestChecksumCalculation: location.endpoint === undefined ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED',
    requestHandler: {connectionTimeout: 10_000, httpAgent: agent, httpsAgent: agent, requestTimeout: 300_000},
    responseChecksumValidation: location.endpoint === undefined ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED',
    retryMode: 'standard',
  })
}

function defaultRegion(location: S3Location): string | undefined {
  // S3-compatible services ignore the region but the signer needs one.
  return location.endpoint === undefined ? undefined : 'us-east-1'
}

/** The S3 error code of a failed request (`NoSuchKey`, `AccessDenied`, …), or undefined for other errors. */
export function s3ErrorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined
  const {$metadata, Code, name} = error as {$metadata?: {httpStatusCode?: number}; Code?: string; name?: string}
  if ($metadata === undefined) return undefined
  return Code ?? name
}

export function httpStatusOf(error: unknown): number | undefined {
  return (error as {$metadata?: {httpStatusCode?: number}})?.$metadata?.httpStatusCode
}

/**
 * A failed S3 request as a user-facing error: what failed, where, and what to check. `what` is a
 * phrase such as "write the backup".
 */
export function s3Failure(error: unknown, what: string, where: string): BackupError {
  if (error instanceof BackupError) return error
  const code = s3ErrorCode(error)
  const status = httpStatusOf(error)
  const detail = (error as Error)?.message ?? String(error)
  const cause = error
  if (code === 'NoSuchBucket') {
    return new BackupError('STORE_UNAVAILABLE', `Cannot ${what}: the bucket of ${where} does not exist.`, {
      cause,
      suggestion: 'Create the bucket, or fix its name in the config.',
    })
  }

  if (code === 'AccessDenied' || code === 'InvalidAccessKeyId' || code === 'SignatureDoesNotMatch' || status === 403) {
    return new BackupError('STORE_UNAVAILABLE', `Cannot ${what}: S3 refused the credentials for ${where} (${code}).`, {
      cause,
      suggestion:
        'Check the access key and secret (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile, or the DSN) and the bucket policy.',
    })
  }

  if ((error as Error)?.name === 'CredentialsProviderError') {
    return new BackupError('STORE_UNAVAILABLE', `Cannot ${what}: no AWS credentials were found for ${where}.`, {
      cause,
      suggestion: 'Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or put KEY:SECRET@ in the DSN.',
    })
  }

  if (/region is missing/i.test(detail)) {
    return new BackupError('CONFIG_INVALID', `Cannot ${what}: no AWS region is set for ${where}.`, {
      cause,
      suggestion: 'Add ?region=… to the S3 location, or set AWS_REGION.',
    })
  }

  const reason = code === undefined ? detail : `${code}${status ? ` (HTTP ${status})` : ''}`
  return new BackupError('STORE_UNAVAILABLE', `Cannot ${what} at ${where}: ${reason}.`, {
    cause,
    suggestion: `The request was retried ${S3_MAX_ATTEMPTS} times where that could help; check the network and the S3 service, then run the command again.`,
  })
}
