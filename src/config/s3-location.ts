import {BackupError} from '../errors.js'

/** The storage classes S3 accepts on PUT; GLACIER-like classes are refused for backups that must restore at once. */
export const STORAGE_CLASSES = [
  'STANDARD',
  'STANDARD_IA',
  'ONEZONE_IA',
  'INTELLIGENT_TIERING',
  'REDUCED_REDUNDANCY',
  'GLACIER_IR',
] as const
export type StorageClass = (typeof STORAGE_CLASSES)[number]

/** Days an object of each class is billed for at least, however soon it is deleted (AWS's S3 pricing). */
export const MINIMUM_STORAGE_DAYS: Record<StorageClass, number> = {
  GLACIER_IR: 90,
  INTELLIGENT_TIERING: 0,
  ONEZONE_IA: 30,
  REDUCED_REDUNDANCY: 0,
  STANDARD: 0,
  STANDARD_IA: 30,
}

export type ServerSideEncryption = {keyId?: string; kind: 'aws:kms'} | {kind: 'AES256'} | {kind: 'none'}

/** A bucket and key prefix, and everything needed to reach it. */
export interface S3Location {
  bucket: string
  /** Access key and secret when the DSN carries them; otherwise the standard AWS chain supplies them. */
  credentials?: {accessKeyId: string; secretAccessKey: string}
  /** An S3-compatible service's URL; undefined for AWS itself. */
  endpoint?: string
  forcePathStyle: boolean
  /** `''` or a prefix ending in `/`. */
  prefix: string
  /** Undefined when neither the DSN nor its host names one: the AWS chain (AWS_REGION, profile) decides. */
  region?: string
  sse: ServerSideEncryption
  storageClass: StorageClass
}

const KNOWN_PARAMETERS = ['region', 'endpoint', 'forcePathStyle', 'storageClass', 'sse', 'kmsKeyId', 'auth', 'domain']

// BUCKET.s3.REGION.amazonaws.com, BUCKET.s3-REGION.amazonaws.com and BUCKET.s3.amazonaws.com (us-east-1).
const AWS_VIRTUAL_HOST = /^(?<bucket>.+)\.s3(?:[.-](?<region>[a-z]{2}(?:-[a-z]+)+-\d+))?\.amazonaws\.com$/

/**
 * Reads an `s3://` DSN in either of the forms the platform uses:
 * - `s3://bucket/prefix?region=&endpoint=&forcePathStyle=&storageClass=&sse=AES256|aws:kms|none&kmsKeyId=`;
 * - the platform's `DEFAULT_STORAGE_DSN`, `s3://KEY:SECRET@BUCKET.s3.REGION.amazonaws.com/?auth=s3v4&domain=…`,
 *   where the host names the bucket (and region). On other S3-compatible services that form
 *   (recognised by its `auth` parameter) is `BUCKET.<service host>`, and the service host becomes the endpoint.
 *
 * `where` names the config field for error messages; nothing here repeats the secret.
 */
export function parseS3Location(url: URL, where: string): S3Location {
  const problem = (message: string, suggestion: string) =>
    new BackupError('CONFIG_INVALID', `${where}: ${message}`, {suggestion})
  const parameters = url.searchParams
  for (const name of parameters.keys()) {
    if (!KNOWN_PARAMETERS.includes(name)) {
      throw problem(
        `the S3 location has an unknown parameter "${name}".`,
        `Use only ${KNOWN_PARAMETERS.slice(0, 6).join(', ')} (names are case-sensitive).`,
      )
    }
  }

  const {bucket, endpoint, region} = hostOf(url, problem)
  const forcePathStyle = parameters.get('forcePathStyle') ?? (endpoint === undefined ? 'false' : 'true')
  if (forcePathStyle !== 'true' && forcePathStyle !== 'false') {
    throw problem(`forcePathStyle must be true or false.`, 'Write forcePathStyle=true or forcePathStyle=false.')
  }

  const path = decodeURIComponent(url.pathname).replace(/^\/+/, '')
  const prefix = path === '' || path.endsWith('/') ? path : `${path}/`
  if (prefix !== '' && prefix.slice(0, -1).split('/').includes('')) {
    throw problem(`the prefix "${prefix}" has an empty folder name.`, 'Remove the doubled "/" from the path.')
  }

  return {
    bucket,
    credentials: credentialsOf(url, problem),
    endpoint,
    forcePathStyle: forcePathStyle === 'true',
    prefix,
    region,
    sse: encryptionOf(parameters, problem),
    storageClass: storageClassOf(parameters, problem),
  }
}

type Problem = (message: string, suggestion: string) => BackupError

function hostOf(url: URL, problem: Problem): {bucket: string; endpoint?: string; region?: string} {
  const host = url.hostname
  if (host === '') throw problem('the S3 location names no bucket.', 'Write it as s3://bucket/prefix.')
  let bucket = host
  let region = url.searchParams.get('region') ?? undefined
  let endpoint = url.searchParams.get('endpoint') ?? undefined
  const aws = AWS_VIRTUAL_HOST.exec(host)
  if (aws?.groups) {
    bucket = aws.groups.bucket
    region ??= aws.groups.region ?? 'us-east-1'
  } else if (url.searchParams.has('auth') && host.includes('.')) {
    const dot = host.indexOf('.')
    bucket = host.slice(0, dot)
    endpoint ??= `https://${host.slice(dot + 1)}${url.port ? `:${url.port}` : ''}`
  }

  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw problem(
      `"${bucket}" is not a valid bucket name.`,
      'Bucket names are 3–63 lower-case letters, digits, dots and hyphens.',
    )
  }

  if (endpoint !== undefined && !/^https?:\/\/[^/]+\/?$/.test(endpoint)) {
    throw problem(
      `the endpoint "${endpoint}" is not a URL.`,
      'Give the service URL, such as endpoint=https://sos-ch-dk-2.exo.io.',
    )
  }

  return {bucket, endpoint: endpoint?.replace(/\/$/, ''), region}
}

function credentialsOf(url: URL, problem: Problem): S3Location['credentials'] {
  const accessKeyId = decodeURIComponent(url.username)
  const secretAccessKey = decodeURIComponent(url.password)
  if ((accessKeyId === '') !== (secretAccessKey === '')) {
    throw problem(
      'the S3 location has an access key without a secret, or a secret without a key.',
      'Give both as s3://KEY:SECRET@bucket/…, or neither to use the standard AWS credentials.',
    )
  }

  return accessKeyId === '' ? undefined : {accessKeyId, secretAccessKey}
}

function encryptionOf(parameters: URLSearchParams, problem: Problem): ServerSideEncryption {
  const name = parameters.get('sse') ?? 'AES256'
  const keyId = parameters.get('kmsKeyId') ?? undefined
  if (name === 'aws:kms') return {keyId, kind: 'aws:kms'}
  if (name !== 'AES256' && name !== 'none') {
    throw problem(`sse "${name}" is not supported.`, 'Use sse=AES256 (the default), sse=aws:kms or sse=none.')
  }

  if (keyId !== undefined) throw problem('kmsKeyId needs sse=aws:kms.', 'Add sse=aws:kms, or drop kmsKeyId.')
  return {kind: name}
}

function storageClassOf(parameters: URLSearchParams, problem: Problem): StorageClass {
  const storageClass = parameters.get('storageClass') ?? 'STANDARD_IA'
  if (!(STORAGE_CLASSES as readonly string[]).includes(storageClass)) {
    throw problem(
      `storageClass "${storageClass}" is not supported.`,
      `Use one of ${STORAGE_CLASSES.join(', ')}; archive classes cannot be restored at once.`,
    )
  }

  return storageClass as StorageClass
}
