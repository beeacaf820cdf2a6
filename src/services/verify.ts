import {describeAuthenticity} from '../domain/authenticity.js'
import {CompleteBackup, DamagedBackup} from '../domain/backup.js'
import {formatBytes, shortHash, truncate} from '../domain/format.js'
import {MANIFEST_NAME} from '../domain/manifest.js'
import {BackupError, ErrorCode} from '../errors.js'
import {CheckedContents} from '../media-format/checked-contents.js'
import {storedMedia} from '../media-format/index.js'
import {OwnObject} from '../media-format/port.js'
import {ObjectReadError} from '../store/port.js'
import {catalogOf, findBackupFor} from './catalog.js'
import {BackupContext} from './context.js'
import {ObjectCheckError, readVerified} from './read.js'

/** `verify` --json: stable contract (docs/output.md). */
export interface VerifyResult {
  /**
   * Set when the backup could not be checked at all on this machine (its key is missing or another
   * one): the backup is not known to be damaged, but it is not known to be good either.
   */
  error?: {code: ErrorCode; exitCode: number; message: string}
  id: string
  objects: {detail: string; name: string; ok: boolean}[]
  ok: boolean
}

/** Reads back every object of one backup and checks sizes, checksums and age authentication. */
/** `--sample PCT`: for incremental media, read this share of the packs instead of every blob. */
export interface VerifyOptions {
  samplePercent?: number
}

export async function verifyBackup(
  context: BackupContext,
  reference: string,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const catalog = await catalogOf(context)
  const damaged = catalog.damaged.find((backup) => backup.id === reference)
  if (damaged) return damagedResult(damaged)
  try {
    return await verifyManifest(context, findBackupFor(context, catalog, reference), options, new CheckedContents())
  } catch (error) {
    // A damaged backup found by prefix: report it like any other failed check.
    const prefixed = catalog.damaged.find((backup) => backup.id.startsWith(reference))
    if (prefixed && error instanceof BackupError && error.code === 'INTEGRITY') return damagedResult(prefixed)
    throw error
  }
}

export async function verifyAllBackups(context: BackupContext, options: VerifyOptions = {}): Promise<VerifyResult[]> {
  const catalog = await catalogOf(context)
  const results: VerifyResult[] = catalog.damaged.map((backup) => damagedResult(backup))
  // What one backup's check read and found whole, a later one that shares it does not read again.
  const checked = new CheckedContents()
  // Each backup is checked whatever happened to the ones before: a key that opens only some of them
  // must not hide what the others hold.
  for (const backup of catalog.complete) {
    // The progress bars below are of this backup's objects: say which, on a terminal.
    if (context.reporter.interactive) context.reporter.notice(`Backup ${backup.manifest.id}:`)
    try {
      results.push(await verifyManifest(context, backup, options, checked))
    } catch (error) {
      if (!(error instanceof BackupError) || !KEY_ERRORS.has(error.code)) throw error
      const {code, exitCode, message} = error
      results.push({
        error: {code, exitCode, message},
        id: backup.manifest.id,
        objects: [{detail: `not checked: ${message}`, name: 'keys', ok: false}],
        ok: false,
      })
    }
  }

  return results.sort((a, b) => b.id.localeCompare(a.id))
}

/**
 * Who signed a manifest that checked out, as a line of the report: a trusted writer by the start of
 * its id (`info` and --json give it whole), since that is enough to tell a machine's backups apart.
 */
function manifestSigner(authenticity: CompleteBackup['authenticity']): string {
  if (authenticity.status !== 'authentic' || authenticity.writer === undefined)
    return describeAuthenticity(authenticity)
  return `signed by trusted writer ${truncate(authenticity.writer, 25)}`
}

const KEY_ERRORS = new Set<ErrorCode>(['IDENTITY_MISSING', 'IDENTITY_WRONG'])

/** A damaged backup fails at its manifest: nothing it names can be trusted, so nothing else is read. */
function damagedResult(backup: DamagedBackup): VerifyResult {
  return {
    id: backup.id,
    objects: [{detail: `damaged: ${backup.reason}`, name: MANIFEST_NAME, ok: false}],
    ok: false,
  }
}

async function verifyManifest(
  context: BackupContext,
  backup: CompleteBackup,
  options: VerifyOptions,
  checked: CheckedContents,
): Promise<VerifyResult> {
  const {manifest} = backup
  const identities = await context.keys.identities()
  const objects: VerifyResult['objects'] = [
    {detail: `schema valid; ${manifestSigner(backup.authenticity)}`, name: MANIFEST_NAME, ok: true},
  ]
  const {database} = manifest.components
  const media = storedMedia(manifest)
  const checks: OwnObject[] = [
    ...(database ? [{compression: database.compression, object: database.object, plaintext: database.plaintext}] : []),
    ...(media?.ownObjects ?? []),
  ]
  for (const {compression, contentCheck, object, plaintext} of checks) {
    const content = contentCheck?.()
    // Awaited once the object has checked out; if it did not, that failure is the one to report.
    content?.done.catch(() => {})
    try {
      await readVerified(context, manifest, {compression, identities, object, plaintext, sink: content?.sink})
      const holds = await content?.done
      objects.push({
        detail: `authenticated; ${formatBytes(plaintext.bytes)}, sha256 ${shortHash(plaintext.sha256)} matches`,
        name: object.name,
        ok: true,
      })
      if (holds) objects.push({...holds, ok: true})
    } catch (error) {
      if (error instanceof ObjectReadError) {
        objects.push({detail: `could not be read: ${error.reason}`, name: object.name, ok: false})
        continue
      }

      if (!(error instanceof ObjectCheckError)) throw error
      objects.push({detail: error.message, name: object.name, ok: false})
    }
  }

  if (media && objects.every((object) => object.ok))
    objects.push(...(await media.checkContent(context, identities, {checked, samplePercent: options.samplePercent})))
  return {id: manifest.id, objects, ok: objects.every((object) => object.ok)}
}
