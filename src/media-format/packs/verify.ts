import {randomInt} from 'node:crypto'
import {join} from 'node:path'

import {X25519Identity} from '../../archive/age-keys.js'
import {checkMediaMembers} from '../../archive/archive-check.js'
import {Manifest, MediaPacksComponent} from '../../domain/manifest.js'
import {BackupError} from '../../errors.js'
import {makeStagingDir, removeStagingDir} from '../../lib/staging.js'
import {BackupContext} from '../../services/context.js'
import {rememberFailedPacks} from '../../services/machine-state.js'
import {ObjectCheckError} from '../../services/read.js'
import {ObjectReadError} from '../../store/port.js'
import {CheckedContents} from '../checked-contents.js'
import {CheckReport} from '../port.js'
import {checkPack, readPackTrust} from './check.js'
import {PackedMembers, packedMembersToCheck} from './extract.js'
import {packsPrefix} from './folder.js'
import {blobKey} from './media-index.js'
import {readIndexFile, readIndexLines} from './read.js'
import {RebuildScriptCheck} from './rebuild-script.js'

/**
 * A packed backup's media is checked as restore reads it, without writing anything: every blob the
 * index names is read from its pack, authenticated by age and checked against its id, and every file
 * against its size, and the index's entries are checked as extraction checks them (checkMediaMembers).
 * The rebuild script is derived from the index on the way and compared with the stored one: a script
 * that does anything else was not written by this tool.
 *
 * A file whose content `checked` holds (read and checked for an earlier backup of the same run of
 * verify, or as a copy earlier in this one) is not read again, so a run over backups that share
 * their packs reads each about once; each file this check reads is added to it.
 */
export async function verifyPacks(
  context: BackupContext,
  manifest: Manifest,
  identities: readonly X25519Identity[],
  checked: CheckedContents,
): Promise<CheckReport[]> {
  const media = manifest.components.media as MediaPacksComponent
  const name = `packs (${media.packs.length})`
  const tempDir = await makeStagingDir(context.tempRoot, 'verify')
  const script = new RebuildScriptCheck()
  let source: PackedMembers | undefined
  try {
    source = await packedMembersToCheck(context, manifest, {
      checked,
      identities,
      onEntry: (entry) => script.add(entry),
      tempDir,
    })
    await checkShape(source, media, context.signal)
    const {checkedBefore} = source
    const earlier = checkedBefore === 0 ? '' : ` (${checkedBefore} of them checked already in this run, not read again)`
    return [
      scriptResult(media, script),
      {detail: `every blob of ${media.files} files authenticated and matches${earlier}`, name, ok: true},
    ]
  } catch (error) {
    const failed = failedPack(error)
    await rememberFailed(context, failed)
    return [{detail: `${failed.objectName}: ${failed.message}`, name, ok: false}]
  } finally {
    await source?.close()
    await removeStagingDir(tempDir)
  }
}

/**
 * Reads the members that restore would extract, and checks them as extraction does: an index signed
 * with a writer key can name a file twice, or one below another file, and what verifies must
 * restore. Of the failures, a blob's (naming its pack) is reported first, then what the check
 * refused (as the index's), then whatever stopped the reading.
 */
async function checkShape(source: PackedMembers, media: MediaPacksComponent, signal: AbortSignal): Promise<void> {
  const stop = () => source.stop(signal.reason as Error)
  signal.addEventListener('abort', stop, {once: true})
  try {
    signal.throwIfAborted()
    await checkMediaMembers(source, media.source)
  } catch (error) {
    // A stopped read is an interruption, whatever the half-read members then looked like to the check.
    if (signal.aborted) throw signal.reason
    if (error instanceof ObjectCheckError) throw error
    if (source.failure instanceof ObjectCheckError) throw source.failure
    if (error instanceof BackupError && error.code === 'INTEGRITY') {
      throw new ObjectCheckError(media.index.object.name, error.message)
    }

    throw source.failure ?? error
  } finally {
    signal.removeEventListener('abort', stop)
  }
}

function scriptResult(media: MediaPacksComponent, script: RebuildScriptCheck): CheckReport {
  const {name} = media.rebuild.object
  return script.matches(media.rebuild.plaintext.sha256)
    ? {detail: 'the script its index derives, line for line', name: `${name} (derived)`, ok: true}
    : {
        detail:
          'not the script its index derives: it would run something else. Do not run it; the media is restorable with this tool',
        name: `${name} (derived)`,
        ok: false,
      }
}

/**
 * A check's failure as a failed object of the report, or the error itself where it is the command's (a
 * store that is down, an interruption). A pack the store holds but cannot read (a disk's EIO) fails as
 * a pack: it is remembered, and the next backup stores its files anew rather than build on it.
 */
function failedPack(error: unknown): ObjectCheckError {
  if (error instanceof ObjectCheckError) return error
  const pack = error instanceof ObjectReadError ? /packs\/[\da-f]{32}\.age$/.exec(error.key) : null
  if (pack) return new ObjectCheckError(pack[0], `could not be read: ${(error as ObjectReadError).reason}`)
  throw error
}

/** A pack that failed a check is remembered, so that this machine's creates store its files anew. */
async function rememberFailed(context: BackupContext, error: ObjectCheckError): Promise<void> {
  const pack = /^packs\/([\da-f]{32}\.age)$/.exec(error.objectName)
  if (pack) await rememberFailedPacks(context, [pack[1]])
}

/**
 * `--sample PCT`: a random share of a packed backup's packs (at least one), each read whole: its size
 * and SHA-256 against the signed manifest, every blob authenticated by age and checked against its id,
 * and every blob that the index places in it found there. Cheaper than a full check, and over
 * repeated runs it reaches every pack. The rebuild script is derived from the index and compared too.
 */
export async function verifyPackSample(
  context: BackupContext,
  manifest: Manifest,
  identities: readonly X25519Identity[],
  percent: number,
): Promise<CheckReport[]> {
  const media = manifest.components.media as MediaPacksComponent
  const count = Math.min(media.packs.length, Math.max(1, Math.ceil((media.packs.length * percent) / 100)))
  const chosen = new Set(
    [...media.packs]
      .map((pack) => ({key: randomInt(2 ** 30), pack}))
      .sort((a, b) => a.key - b.key)
      .slice(0, count)
      .map(({pack}) => pack),
  )
  const name = `packs (sample of ${count} of ${media.packs.length})`
  const tempDir = await makeStagingDir(context.tempRoot, 'verify')
  try {
    // What the index places in each sampled pack (by 16-byte keys: a full sample of a million files
    // must not hold a million hex ids), and the script it derives.
    const expected = new Map<string, Set<string>>([...chosen].map((pack) => [pack, new Set()]))
    const script = new RebuildScriptCheck()
    const indexPath = join(tempDir, 'index')
    await readIndexFile(context, manifest, identities, indexPath)
    for await (const entry of readIndexLines(indexPath)) {
      script.add(entry)
      for (const [id, pack] of entry.blobs ?? []) expected.get(pack)?.add(blobKey(id))
    }

    const trust = await readPackTrust(context, {app: manifest.app, environment: manifest.environment}, [manifest])
    const prefix = packsPrefix(manifest.app, manifest.environment)
    let blobs = 0
    for (const pack of chosen) {
      const {ids, stored} = await checkPack(context, prefix, pack, {identities, trust})
      const held = new Set([...ids].map((id) => blobKey(id)))
      const missing = [...expected.get(pack)!].filter((key) => !held.has(key))
      expected.delete(pack)
      if (missing.length > 0)
        throw new ObjectCheckError(
          `packs/${stored}`,
          `${missing.length} blob(s) that the index places in it are not there (blob ${Buffer.from(missing[0], 'latin1').toString('hex').slice(0, 12)}…)`,
        )
      blobs += ids.size
    }

    return [
      scriptResult(media, script),
      {
        detail: `${blobs} blobs in ${count} packs authenticated, and every blob the index places there found`,
        name,
        ok: true,
      },
    ]
  } catch (error) {
    const failed = failedPack(error)
    await rememberFailed(context, failed)
    return [{detail: `${failed.objectName}: ${failed.message}`, name, ok: false}]
  } finally {
    await removeStagingDir(tempDir)
  }
}
