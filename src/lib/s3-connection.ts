import type {AgentOptions} from 'node:https'

import {readFile} from 'node:fs/promises'

import {BackupError, ErrorCode} from '../errors.js'
import {proxyOption} from './proxy.js'

/**
 * How an S3 client's sockets are made: kept alive, at most `maxSockets` at once, trusting
 * AWS_CA_BUNDLE's authorities, and through the proxy of HTTPS_PROXY/HTTP_PROXY (NO_PROXY excepted)
 * where this Node.js's agents can tunnel (22.21 and 24.5 on), as the AWS CLI does. `secure`: the
 * location is reached over HTTPS (AWS, or an https:// endpoint); a plain-HTTP one reads no bundle.
 */
export async function agentOptions(
  maxSockets: number,
  {secure}: {secure: boolean},
): Promise<{http: AgentOptions; https: AgentOptions}> {
  const http: AgentOptions = {keepAlive: true, maxSockets, ...proxyOption()}
  if (!secure || !process.env.AWS_CA_BUNDLE) return {http, https: http}
  // Imported here, not with this module, which every command loads: an ES module's import of node:tls
  // makes Node.js read all of its exports, and the root certificates with them (6 ms, and their text
  // kept in each thread that loads the module), which only a bundle needs.
  const {createSecureContext, rootCertificates} = await import('node:tls')
  const ca = [...rootCertificates, await readBundle(process.env.AWS_CA_BUNDLE)]
  // One context for every connection: given `ca`, each TLS connection would parse the whole bundle
  // again (50 ms for a system's bundle of 150 authorities, where Node.js's defaults take 0.2).
  return {http, https: {...http, secureContext: createSecureContext({ca})}}
}

/**
 * The certificate authorities of `AWS_CA_BUNDLE` (a PEM file), which an S3 client trusts besides
 * Node.js's own: the variable through which the AWS CLI and the other AWS SDKs take a service's private
 * CA (a self-hosted MinIO or Ceph, a proxy that inspects TLS). The AWS SDK for JavaScript does not read
 * it. Without the variable, the agent keeps Node.js's defaults, NODE_EXTRA_CA_CERTS included.
 */
async function readBundle(bundle: string): Promise<string> {
  let text: string
  try {
    text = await readFile(bundle, 'utf8')
  } catch (error) {
    throw new BackupError(
      'CONFIG_INVALID',
      `AWS_CA_BUNDLE names ${bundle}, which cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}).`,
      {cause: error, suggestion: 'Point AWS_CA_BUNDLE at the PEM file of the certificate authority, or unset it.'},
    )
  }

  if (!text.includes('-----BEGIN CERTIFICATE-----')) {
    throw new BackupError('CONFIG_INVALID', `AWS_CA_BUNDLE names ${bundle}, which holds no PEM certificate.`, {
      suggestion:
        'Point AWS_CA_BUNDLE at the certificate authority in PEM form (-----BEGIN CERTIFICATE-----), or unset it.',
    })
  }

  return text
}

/** The codes of Node.js's TLS check for a certificate that is not trusted, and what each asks of the user. */
const UNTRUSTED: Record<string, string> = {
  CERT_HAS_EXPIRED:
    "The certificate has expired, or this machine's clock is off: renew it on the service, or set the clock right.",
  CERT_NOT_YET_VALID:
    "The certificate is not valid yet, or this machine's clock is off: set the clock right (enable NTP).",
  ERR_TLS_CERT_ALTNAME_INVALID:
    "The certificate does not name the endpoint's host: use the host name it was issued for in the endpoint.",
}
const PRIVATE_AUTHORITY =
  "A service with a certificate of its own authority (a self-hosted MinIO or Ceph, or a proxy that inspects TLS): point AWS_CA_BUNDLE at that authority's certificate (a PEM file), as for the AWS CLI, then run the command again. The check is never turned off."
for (const code of [
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
])
  UNTRUSTED[code] = PRIVATE_AUTHORITY

/**
 * A request that failed because the service's TLS certificate is not trusted here, as a user-facing
 * error (no retry helps it, and "check the network" would not say what to do); undefined for others.
 */
export function untrustedCertificateFailure(
  error: unknown,
  what: string,
  where: string,
  code: ErrorCode,
): BackupError | undefined {
  if (plainHttpAnswer(error)) {
    return new BackupError(
      code,
      `Cannot ${what} at ${where}: the endpoint did not answer in TLS (EPROTO, wrong version number); it may serve plain HTTP.`,
      {
        cause: error,
        suggestion:
          'Write the endpoint with http:// if the service takes plain HTTP (on a trusted network only), or with the port that serves HTTPS.',
      },
    )
  }

  const tlsCode = codeOfCause(error, (candidate) => candidate in UNTRUSTED)
  if (tlsCode === undefined) return undefined
  return new BackupError(
    code,
    `Cannot ${what} at ${where}: the service's TLS certificate is not trusted here (${tlsCode}).`,
    {
      cause: error,
      suggestion: UNTRUSTED[tlsCode],
    },
  )
}

/** An https:// request answered by a server that speaks plain HTTP: OpenSSL's "wrong version number". */
function plainHttpAnswer(error: unknown, depth = 0): boolean {
  if (depth > 4 || typeof error !== 'object' || error === null) return false
  const {cause, code, errors, message} = error as {
    cause?: unknown
    code?: unknown
    errors?: unknown[]
    message?: unknown
  }
  if ((code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER') && /wrong version number/i.test(String(message)))
    return true
  return [...(errors ?? []), cause].some((inner) => plainHttpAnswer(inner, depth + 1))
}

function codeOfCause(error: unknown, wanted: (code: string) => boolean, depth = 0): string | undefined {
  if (depth > 4 || typeof error !== 'object' || error === null) return undefined
  const {cause, code, errors} = error as {cause?: unknown; code?: unknown; errors?: unknown[]}
  if (typeof code === 'string' && wanted(code)) return code
  for (const inner of [...(errors ?? []), cause]) {
    const found = codeOfCause(inner, wanted, depth + 1)
    if (found !== undefined) return found
  }

  return undefined
}
