import {join} from 'node:path'

import {DatabaseSource, parseDatabaseDsn, redactDsn} from '../config/dsn.js'
import {requireParts} from '../config/load.js'
import {Manifest} from '../domain/manifest.js'
import {BackupError, tempFolderFailure} from '../errors.js'
import {makeStagingDir, removeStagingDir, sweepStaleStaging} from '../lib/staging.js'
import {compareFacts} from '../proof/compare.js'
import {DrillCheck, DrillReceipt, receiptName, signReceipt} from '../proof/receipt.js'
import {openScratch} from '../proof/scratch/index.js'
import {catalogOf, findBackupFor, objectKey} from './catalog.js'
import {BackupContext, timedStage} from './context.js'
import {downloadBackup, extensionOf} from './download.js'
import {readBackMedia, restoreMediaIntoScratch, ScratchMedia} from './drill-media.js'
import {putSmallObject} from './objects.js'
import {ObjectCheckError} from './read.js'

export interface DrillOptions {
  /** Re-read this share of the extracted media files from disk (every file is checked as it is extracted). */
  mediaSamplePercent?: number
  reference: string
  /** `--scratch-url`: a database of the user's to restore into, instead of a server the drill starts. */
  scratchUrl?: string
}

/** `drill` --json: the receipt as stored, and where. */
export interface DrillResult extends DrillReceipt {
  receiptKey: string
}

/**
 * Proves that a backup restores: restores it into scratch (never the environment's own database or
 * media), runs the engine's own checks on the copy, compares it with the facts recorded when the backup
 * was taken, runs the user's query, and checks the media against its listing. The result is a receipt,
 * signed with this machine's writer key and stored beside the backup, pass or fail. The scratch folder
 * is a staging folder: removed on every exit path, and by the next command after a kill.
 */
export async function drillBackup(context: BackupContext, options: DrillOptions): Promise<DrillResult> {
  const startedAt = context.now()
  const started = performance.now()
  const {manifest} = findBackupFor(context, await catalogOf(context), options.reference)
  const {database} = manifest.components
  const given = scratchDatabase(context, options.scratchUrl)
  const writer = await context.keys.writerKey(startedAt)
  await sweepStaleStaging(context.tempRoot)
  // It holds a plaintext copy of the backup: its guard (makeStagingDir) removes it even after SIGKILL.
  const scratch = await makeStagingDir(context.tempRoot, 'drill')
  const checks: DrillCheck[] = []
  const tools: Record<string, string> = {}
  let databaseSummary: DrillReceipt['database']
  let mediaSummary: DrillReceipt['media']
  try {
    const restored = await timedStage(context.reporter, 'restore into scratch', () =>
      restoreIntoScratch(context, manifest, scratch),
    )
    checks.push(restored.check)
    if (restored.check.ok && database !== undefined) {
      const dumpPath = join(scratch, 'files', `database.${extensionOf(database.format)}`)
      const result = await timedStage(context.reporter, 'database drill', () =>
        drillDatabase(context, manifest, {dumpPath, scratch}, given),
      )
      checks.push(...result.checks)
      databaseSummary = result.summary
      Object.assign(tools, result.tools)
    }

    if (restored.media !== undefined) {
      if ('failed' in restored.media) {
        checks.push(restored.media.failed)
      } else {
        const read = await readBackMedia(context, restored.media, options.mediaSamplePercent ?? 100)
        checks.push(read.check)
        mediaSummary = {checkedFiles: restored.media.files, files: read.files}
      }
    }
  } catch (error) {
    // Streams stopped by SIGINT/SIGTERM fail with their own AbortError; the user asked to stop.
    if (context.signal.aborted) throw context.signal.reason
    // Everything a drill writes is in its scratch folder, in the temp folder: a restore into scratch
    // that the file system refused is the temp folder's to answer for, and proves nothing either way
    // about the backup, so no receipt is signed.
    if (error instanceof BackupError && error.code === 'OUTPUT_UNAVAILABLE')
      throw tempFolderFailure(error.cause ?? error, 'the restored copy', scratch, 'a decrypted copy of the backup')
    throw error
  } finally {
    await removeStagingDir(scratch)
  }

  const endedAt = context.now()
  const receipt: DrillReceipt = {
    app: manifest.app,
    backupId: manifest.id,
    checks,
    ...(databaseSummary ? {database: databaseSummary} : {}),
    durationSeconds: Math.round(performance.now() - started) / 1000,
    endedAt: endedAt.toISOString(),
    environment: manifest.environment,
    ...(mediaSummary ? {media: mediaSummary} : {}),
    passed: checks.every((check) => check.ok),
    startedAt: startedAt.toISOString(),
    tool: {name: '@divio/plugin-app-backup', version: context.toolVersion},
    tools: {node: process.version, ...tools},
    version: 1,
  }
  const receiptKey = objectKey(manifest.app, manifest.environment, manifest.id, receiptName(endedAt))
  await putSmallObject(context.store, receiptKey, `${JSON.stringify(signReceipt(receipt, writer), null, 2)}\n`)
  return {...receipt, receiptKey}
}

/**
 * The backup restored into scratch: the database's files as `download` writes them, and the media as
 * `restore` writes it (drill-media.ts). An object that fails its check fails the `objects` check, and
 * nothing is drilled; media that is unsafe or does not match its listing fails the `media` check.
 */
async function restoreIntoScratch(
  context: BackupContext,
  manifest: Manifest,
  scratch: string,
): Promise<{check: DrillCheck; media?: ScratchMedia | {failed: DrillCheck}}> {
  try {
    if (manifest.components.database !== undefined) {
      await downloadBackup(context, scratch, {
        database: true,
        manifest: {manifest},
        media: false,
        outputDir: 'files',
        reference: manifest.id,
      })
    }

    let media: ScratchMedia | undefined | {failed: DrillCheck}
    if (manifest.components.media !== undefined) {
      try {
        media = await restoreMediaIntoScratch(context, manifest, scratch)
      } catch (error) {
        if (!(error instanceof BackupError) || error.code !== 'INTEGRITY') throw error
        media = {failed: {detail: asDetail(error.message), name: 'media', ok: false}}
      }
    }

    return {check: {detail: 'every object decrypted and matched the manifest', name: 'objects', ok: true}, media}
  } catch (error) {
    if (error instanceof ObjectCheckError) return objectsFailed(asDetail(`${error.objectName}: ${error.message}`))
    if (error instanceof BackupError && error.code === 'INTEGRITY') return objectsFailed(asDetail(error.message))
    throw error
  }
}

/** A message as a check's detail, which ends without a period: the report and the error put one after it. */
function asDetail(message: string): string {
  return message.replace(/\.$/, '')
}

function objectsFailed(detail: string): {check: DrillCheck} {
  return {check: {detail, name: 'objects', ok: false}}
}

/**
 * `--scratch-url`, checked before anything is read: a database URL that is not the environment's own
 * database (same server and database name), which a drill must never touch.
 */
function scratchDatabase(context: BackupContext, url: string | undefined): DatabaseSource | undefined {
  if (url === undefined) return undefined
  // Compared with the environment's own database, which must therefore be known.
  requireParts(context.env, {database: true})
  const given = parseDatabaseDsn(url, context.env.root, '--scratch-url')
  const own = context.env.database
  const place = (source: DatabaseSource) =>
    source.engine === 'sqlite'
      ? source.path
      : `${source.url.hostname}:${source.url.port}/${source.url.pathname}?${source.url.searchParams.get('host') ?? ''}`
  if (own !== undefined && own.engine === given.engine && place(own) === place(given)) {
    throw new BackupError('USAGE', `--scratch-url names the environment's own database, ${redactDsn(url)}.`, {
      suggestion:
        'A drill restores into scratch, never into the database it backs up: give an empty database of its own.',
    })
  }

  return given
}

async function drillDatabase(
  context: BackupContext,
  manifest: Manifest,
  paths: {dumpPath: string; scratch: string},
  given?: DatabaseSource,
): Promise<{checks: DrillCheck[]; summary: DrillReceipt['database']; tools: Record<string, string>}> {
  const database = manifest.components.database!
  const scratch = await openScratch(database, paths, context.signal, given)
  try {
    const checks: DrillCheck[] = []
    // Counted before the engine's check, which may install what it needs (pg_amcheck's extension).
    const restored = await scratch.facts()
    const integrity = await scratch.integrity()
    checks.push(
      integrity === undefined
        ? {detail: 'no integrity checker is installed for this engine', name: 'integrity', ok: true}
        : {detail: `${integrity.tool}: ${integrity.result}`, name: 'integrity', ok: integrity.result === 'ok'},
    )
    const recorded = database.facts
    checks.push(
      ...(recorded
        ? compareFacts(recorded, restored)
        : [
            {
              detail: 'this backup recorded no row counts (taken before they were, or with countRows: false)',
              name: 'row counts',
              ok: true,
            },
          ]),
    )
    const {drill} = context.env
    if (drill?.query) checks.push(await userQuery({...drill, query: drill.query}, (sql) => scratch.firstValue(sql)))
    return {
      checks,
      summary: {engine: database.engine, rows: restored.rows, tables: Object.keys(restored.tables).length},
      tools: scratch.tools,
    }
  } finally {
    await scratch.close()
  }
}

/** The user's query from config: its first value must be there, and be `expect` when that is set. */
async function userQuery(
  drill: {expect?: string; query: string},
  firstValue: (sql: string) => Promise<string | undefined>,
): Promise<DrillCheck> {
  let value: string | undefined
  try {
    value = await firstValue(drill.query)
  } catch (error) {
    return {detail: `the query failed: ${(error as Error).message}`, name: 'query', ok: false}
  }

  if (value === undefined || value === '') {
    return {detail: `the query returned nothing: ${drill.query}`, name: 'query', ok: false}
  }

  const ok = drill.expect === undefined || String(value) === drill.expect
  return {
    detail: ok ? `the query returned ${String(value)}` : `the query returned ${String(value)}, not ${drill.expect}`,
    name: 'query',
    ok,
  }
}
