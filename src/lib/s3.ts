import type {GetObjectCommandOutput, S3Client} from '@aws-sdk/client-s3'

import {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'

import {S3Location} from '../config/s3-location.js'
import {BackupError, ErrorCode} from '../errors.js'
import {proxyHint} from './proxy.js'
import {agentOptions, untrustedCertificateFailure} from './s3-connection.js'

/** Attempts per request, the first included. The SDK's standard strategy backs off exponentially with jitter. */
export const S3_MAX_ATTEMPTS = 8
/** How often one read may pick up again, from where it stopped, after its connection broke. */
const READ_RESUMES = 5

/**
 * An S3 client for one location. The SDK is loaded on first use, so that commands on a local store do
 * not pay for it at start-up.
 *
 * Retries are the SDK's standard strategy, set explicitly: throttling (SlowDown), 5xx, timeouts and
 * connection resets are retried with exponential backoff and jitter, up to {@link S3_MAX_ATTEMPTS}
 * attempts, drawing on the SDK's retry quota so that a service that is down fails fast instead of
 * being hammered.
 */
export async function createS3Client(
  location: S3Location,
  {maxSockets = 32, silenceMs}: {maxSockets?: number; silenceMs?: number} = {},
): Promise<S3Client> {
  // The SDK warns on every run about Node versions it will stop supporting; users of a backup command
  // cannot act on it, and the SDK version is pinned by this package's lockfile.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  const [{S3Client}, agents] = await Promise.all([
    import('@aws-sdk/client-s3'),
    agentOptions(maxSockets, {secure: !location.endpoint?.startsWith('http:')}),
  ])
  return new S3Client({
    credentials: location.credentials,
    endpoint: location.endpoint,
    forcePathStyle: location.forcePathStyle,
    // The SDK's default logger writes to the console when a request with a streamed body fails, which
    // it cannot retry (a staged file: the store retries it itself, and reports what is left).
    logger: SILENT_LOGGER,
    maxAttempts: S3_MAX_ATTEMPTS,
    region: location.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? defaultRegion(location),
    // S3-compatible services often reject the newer CRC checksum headers; our own SHA-256 of every
    // object, checked on read, is the integrity guarantee in any case.
    requestChecksumCalculation: location.endpoint === undefined ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: 10_000,
      httpAgent: agents.http,
      httpsAgent: agents.https,
      // How long a request's socket may stay silent, each try, body included: a request to an endpoint
      // that accepts and never answers fails in that time, and the SDK tries again. Not requestTimeout,
      // which bounds a whole request (a part on a slow link may take longer), and only warns, on the
      // console, unless told to throw.
      socketTimeout: Math.min(SOCKET_TIMEOUT_MS, silenceMs ?? SOCKET_TIMEOUT_MS),
    },
    responseChecksumValidation: location.endpoint === undefined ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED',
    retryMode: 'standard',
  })
}

/** The longest a request may stay silent, each try, whatever the stall timeout. */
const SOCKET_TIMEOUT_MS = 60_000

const SILENT_LOGGER = {debug() {}, error() {}, info() {}, trace() {}, warn() {}}

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

/** S3's answer to a read of an object in an archive storage class that has not been restored. */
export function isArchivedObjectError(error: unknown): boolean {
  const cause = error instanceof BackupError ? error.cause : error
  return s3ErrorCode(cause) === 'InvalidObjectState'
}

/**
 * A read that S3 refused because the object is archived: a lifecycle rule moved it to Glacier Flexible
 * Retrieval or Deep Archive (or Intelligent-Tiering moved it to an archive tier), and S3 serves such an
 * object only for a while after a restore request. Not a matter of credentials, though the status is 403.
 */
function archivedObjectFailure(error: unknown, what: string, code: ErrorCode): BackupError {
  return new BackupError(
    code,
    `Cannot ${what}: the object is archived (InvalidObjectState). S3 serves an object in Glacier Flexible Retrieval or Deep Archive, or in an archive tier of Intelligent-Tiering, only after a restore request.`,
    {
      cause: error,
      suggestion:
        'Have S3 restore the archived objects (`aws s3api restore-object --bucket BUCKET --key KEY --restore-request Days=7`, for each; it takes minutes to hours, up to 48 for Deep Archive), then run the command again. A lifecycle rule on backups should move them to GLACIER_IR, which is read at once, not to GLACIER or DEEP_ARCHIVE.',
    },
  )
}

const EXPIRED_CODES = new Set<string | undefined>(['ExpiredToken', 'ExpiredTokenException', 'TokenRefreshRequired'])
const WRONG_REGION_CODES = new Set<string | undefined>([
  'AuthorizationHeaderMalformed',
  'IllegalLocationConstraintException',
  'PermanentRedirect',
])
const THROTTLED_CODES = new Set<string | undefined>(['SlowDown', 'Throttling'])
const REFUSED_CODES = new Set<string | undefined>(['InvalidAccessKeyId', 'InvalidToken', 'SignatureDoesNotMatch'])

/**
 * An error that S3 answered with and that says what is wrong (a missing bucket, a clock, expired or
 * refused credentials, another region, throttling, an archived object), or undefined for the others.
 */
function answeredFailure(error: unknown, what: string, where: string, code: ErrorCode): BackupError | undefined {
  const s3Code = s3ErrorCode(error)
  const status = httpStatusOf(error)
  const cause = error
  if (s3Code === 'NoSuchBucket') {
    return new BackupError(code, `Cannot ${what}: the bucket of ${where} does not exist.`, {
      cause,
      suggestion: 'Create the bucket, or fix its name in the config.',
    })
  }

  if (s3Code === 'RequestTimeTooSkewed') {
    return new BackupError(
      code,
      `Cannot ${what}: S3 refused the request because this machine's clock is off (RequestTimeTooSkewed).`,
      {
        cause,
        suggestion:
          'Set the clock right (enable NTP, for example with `timedatectl set-ntp true`), then run the command again.',
      },
    )
  }

  if (EXPIRED_CODES.has(s3Code)) {
    return new BackupError(code, `Cannot ${what}: the S3 credentials for ${where} have expired (${s3Code}).`, {
      cause,
      suggestion:
        'Renew the session (for example `aws sso login`, or new temporary credentials), then run the command again.',
    })
  }

  if (WRONG_REGION_CODES.has(s3Code) || status === 301) {
    const region = regionOf(error)
    return new BackupError(
      'CONFIG_INVALID',
      `Cannot ${what}: the bucket of ${where} is in ${region ? `region ${region}` : 'another region'}, not the one configured (${s3Code ?? `HTTP ${status}`}).`,
      {cause, suggestion: `Set ?region=${region ?? '…'} on the S3 location (or AWS_REGION).`},
    )
  }

  if (THROTTLED_CODES.has(s3Code) || status === 503) {
    return new BackupError(
      code,
      `Cannot ${what}: S3 kept asking to slow down (${s3Code ?? 'HTTP 503'}) after ${S3_MAX_ATTEMPTS} attempts.`,
      {
        cause,
        suggestion:
          'The bucket is throttled (too many requests now, or a new prefix warming up); wait a few minutes and run the command again.',
      },
    )
  }

  if (s3Code === 'InvalidObjectState') return archivedObjectFailure(error, what, code)

  if (REFUSED_CODES.has(s3Code)) {
    return new BackupError(code, `Cannot ${what}: S3 refused the credentials for ${where} (${s3Code}).`, {
      cause,
      suggestion:
        'Check the access key and secret (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile, or the DSN) and the bucket policy.',
    })
  }

  if (s3Code === 'AccessDenied' || status === 403) {
    // S3 says which principal lacked which action on what, and which policy denied it: the way to the fix.
    const said = serviceMessage(error)
    return new BackupError(
      code,
      `Cannot ${what}: S3 denied access to ${where} (${s3Code ?? 'HTTP 403'})${said ? `: ${said}` : ''}.`,
      {
        cause,
        suggestion:
          'Grant the permission in the IAM policy or the bucket policy (docs/s3.md lists what a store and media need), or check that the credentials are the ones meant (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile, or the DSN).',
      },
    )
  }

  return undefined
}

/**
 * A failed S3 request as a user-facing error: what failed, where, and what to check. `what` is a
 * phrase such as "write the backup".
 */
export function s3Failure(
  error: unknown,
  what: string,
  where: string,
  code: ErrorCode = 'STORE_UNAVAILABLE',
): BackupError {
  if (error instanceof BackupError) return error
  const answered = answeredFailure(error, what, where, code) ?? untrustedCertificateFailure(error, what, where, code)
  if (answered !== undefined) return answered
  const status = httpStatusOf(error)
  const s3Code = s3ErrorCode(error)
  const detail = describeNetworkError(error)
  const cause = error
  if ((error as Error)?.name === 'CredentialsProviderError') {
    return new BackupError(code, `Cannot ${what}: no AWS credentials were found for ${where}.`, {
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

  // The socket stayed silent for its timeout, every try (an endpoint that accepts and never answers).
  const silent = /socket timed out after (\d+) ms/.exec(detail)
  if (status === undefined && silent) {
    const seconds = Math.round(Number(silent[1]) / 1000)
    return new BackupError(
      code,
      `Cannot ${what} at ${where}: S3 sent nothing for ${seconds} s, in each of ${S3_MAX_ATTEMPTS} tries.`,
      {
        cause,
        suggestion: `Check the network and the S3 endpoint, then run the command again. DIVIO_BACKUP_STALL_SECONDS sets how long a request may stay silent (now ${seconds} s; at most ${SOCKET_TIMEOUT_MS / 1000}).`,
      },
    )
  }

  // Without an HTTP status no response came back (refused, reset, timed out): the network error says why.
  if (s3Code === undefined || status === undefined) {
    return new BackupError(code, `Cannot ${what} at ${where}: no response from S3: ${detail}.`, {
      cause,
      suggestion: `${unansweredSuggestion(detail)}${proxyHint('requests to S3')}`,
    })
  }

  // An answer this code does not know: S3's own words say what it refused, and a refusal is not retried.
  const said = serviceMessage(error)
  return new BackupError(code, `Cannot ${what} at ${where}: ${s3Code} (HTTP ${status})${said ? `: ${said}` : ''}.`, {
    cause,
    suggestion:
      status >= 500
        ? `The request was tried ${S3_MAX_ATTEMPTS} times; check the S3 service, then run the command again.`
        : 'S3 refused the request, as its message says; mend what it names (the bucket, its policy or encryption key, the location in the config), then run the command again.',
  })
}

/**
 * The cause of a failed request in words. Connection failures often arrive as an AggregateError (one
 * per address tried) or with an empty message, which would print as a bare "Error": dig out the codes.
 */
export function describeNetworkError(error: unknown): string {
  const seen = new Set<string>()
  const visit = (value: unknown, depth: number): void => {
    if (depth > 4 || typeof value !== 'object' || value === null) return
    const {address, cause, code, errors, hostname, message, port} = value as NodeJS.ErrnoException & {
      address?: string
      errors?: unknown[]
      hostname?: string
      port?: number
    }
    // A connection names the address it tried; a name lookup (ENOTFOUND, EAI_AGAIN), the host name.
    const target = address ? `${address}${port ? `:${port}` : ''}` : hostname
    if (typeof code === 'string') seen.add(`${code}${target ? ` (${target})` : ''}`)
    else if (message && message !== 'Error') seen.add(message)
    for (const inner of errors ?? []) visit(inner, depth + 1)
    visit(cause, depth + 1)
  }

  visit(error, 0)
  const text = [...seen].join('; ')
  return text === '' ? `${(error as Error)?.name ?? 'unknown error'} without details` : text
}

/** What to do about a request that got no answer, by what the network said. */
function unansweredSuggestion(detail: string): string {
  if (/\bENOTFOUND\b/.test(detail))
    return "No such host: check the endpoint's host name, or the region (?region=… or AWS_REGION), which AWS's host names carry."
  if (/\bEAI_AGAIN\b/.test(detail))
    return "This machine's DNS did not answer: check it (/etc/resolv.conf), then run the command again."
  return `The request was tried up to ${S3_MAX_ATTEMPTS} times; check the network and the S3 service, then run the command again.`
}

/** S3's own words for an error, where they say more than its code ("Access Denied" says nothing more). */
function serviceMessage(error: unknown): string | undefined {
  const text = (error as Error)?.message?.trim().replace(/\.$/, '')
  if (!text || /^(access denied|unknownerror)$/i.test(text) || text === s3ErrorCode(error)) return undefined
  return text
}

/** The bucket's real region, where S3 says it: the x-amz-bucket-region header, or a <Region> in the error. */
function regionOf(error: unknown): string | undefined {
  const {$response, Region} = error as {$response?: {headers?: Record<string, string>}; Region?: string}
  return $response?.headers?.['x-amz-bucket-region'] ?? Region
}

/** An object being read; `undefined` from {@link getObject} means it does not exist. */
export interface ObjectRead {
  body: Readable
  etag?: string
  lastModified?: Date
  size: number
}

/**
 * Reads an object as a stream that survives broken connections: when the body stops early, the read
 * resumes with a ranged GET pinned to the object's ETag (so a replaced object fails instead of mixing
 * two versions), up to a few times with backoff. Errors are reported through `fail`.
 */
export async function getObject(
  client: S3Client,
  target: {bucket: string; key: string},
  fail: (error: unknown) => BackupError,
  signal?: AbortSignal,
): Promise<ObjectRead | undefined> {
  const {GetObjectCommand} = await import('@aws-sdk/client-s3')
  const Bucket = target.bucket
  const Key = target.key
  let first: GetObjectCommandOutput
  try {
    first = await client.send(new GetObjectCommand({Bucket, Key}), {abortSignal: signal})
  } catch (error) {
    if (s3ErrorCode(error) === 'NoSuchKey' || httpStatusOf(error) === 404) return undefined
    throw fail(error)
  }

  const size = first.ContentLength ?? 0
  const etag = first.ETag
  async function* resumable(): AsyncGenerator<Buffer> {
    let body = first.Body as Readable
    let offset = 0
    let resumes = 0
    try {
      for (;;) {
        try {
          for await (const chunk of body as AsyncIterable<Buffer>) {
            offset += chunk.length
            yield chunk
          }

          if (offset === size) return
          throw new Error(`the connection closed after ${offset} of ${size} bytes`)
        } catch (error) {
          body.destroy()
          if (resumes >= READ_RESUMES || offset > size || signal?.aborted) throw fail(error)
          resumes++
          await sleep(200 * 2 ** resumes)
          const next = await client
            .send(new GetObjectCommand({Bucket, IfMatch: etag, Key, Range: `bytes=${offset}-`}), {abortSignal: signal})
            .catch((error_: unknown) => {
              throw fail(error_)
            })
          body = next.Body as Readable
        }
      }
    } finally {
      body.destroy()
    }
  }

  return {
    body: Readable.from(resumable(), {highWaterMark: 1, objectMode: false}),
    etag,
    lastModified: first.LastModified,
    size,
  }
}
