import {createHash} from 'node:crypto'
import {createWriteStream} from 'node:fs'
import {link, lstat, rm, rmdir, unlink, writeFile} from 'node:fs/promises'
import {join, resolve} from 'node:path'
import {pipeline} from 'node:stream/promises'

import {X25519Identity} from '../archive/age-keys.js'
import {HashingStream} from '../archive/hash.js'
import {isPacked, Manifest, MANIFEST_NAME, MediaPacksComponent} from '../domain/manifest.js'
import {BackupError, describeIoError} from '../errors.js'
import {makeFolders} from '../lib/folders.js'
import {syncPath} from '../lib/fsync.js'
import {makeStagingDir} from '../lib/staging.js'
import {packedMediaTar} from '../media-format/packs/read.js'
import {Catalog, catalogOf, findBackup} from './catalog.js'
import {BackupContext} from './context.js'
import {ObjectCheckError, readVerified} from './read.js'

export interface DownloadOptions {
  database: boolean
  /** The backup, already found (and its writer accepted) by the caller; else `reference` is looked up. */
  manifest?: {manifest: Manifest}
  media: boolean
  /** Folder to write into; created when missing. */
  outputDir?: string
  reference: string
}

/** `download`/`export` --json: stable contract (DESIGN §3). */
export interface FilesResult {
  files: {bytes: number; path: string; sha256: string}[]
}

/**
 * Decrypts and verifies a backup into standard files: database.<ext>, media.tar, manifest.json.
 * Everything is written to a staging folder inside the output folder first and moved into place only
 * once every object has authenticated and matched its checksum. Existing files are never overwritten:
 * a name that is taken stops the download before anything is written.
 */
export async function downloadBackup(
  context: BackupContext,
  cwd: string,
  options: DownloadOptions,
): Promise<FilesResult> {
  const {manifest} = options.manifest ?? findDownloadable(await catalogOf(context), options.reference)
  const outputDir = resolve(cwd, options.outputDir ?? `backup-${manifest.id}`)
  const plan = planFiles(manifest, options)
  if (plan.length === 1) {
    throw new BackupError(
      'USAGE',
      `Backup ${manifest.id} has no ${options.database ? 'database' : 'media'} component.`,
      {
        suggestion: 'Run `divio app backup info` to see what it holds.',
      },
    )
  }

  for (const file of plan) {
    if (await exists(join(outputDir, file.name))) {
      throw new BackupError('OUTPUT_EXISTS', `${join(outputDir, file.name)} already exists; nothing was written.`, {
        suggestion: 'Choose another folder with -o, or move the existing file away.',
      })
    }
  }

  const identities = await context.keys.identities()
  const createdOutput = !(await exists(outputDir))
  const staging = await makeFolders(outputDir)
    .then(() => makeStagingDir(outputDir, 'download', true))
    .catch((error: unknown) => {
      throw downloadFailure(error, manifest.id, outputDir)
    })
  const placed: string[] = []
  try {
    const files: FilesResult['files'] = []
    for (const file of plan) {
      const stagedPath = join(staging, file.name)
      if (file.packed) {
        files.push({
          ...(await writePackedMedia(context, manifest, {identities, path: stagedPath, tempDir: staging})),
          path: join(outputDir, file.name),
        })
        continue
      }

      if (file.content === undefined) {
        const text = `${JSON.stringify(manifest, null, 2)}\n`
        await writeFile(stagedPath, text, {flag: 'wx', mode: 0o600})
        files.push({
          bytes: Buffer.byteLength(text),
          path: join(outputDir, file.name),
          sha256: createHash('sha256').update(text).digest('hex'),
        })
        continue
      }

      await readVerified(context, manifest, {
        compression: file.content.compression,
        identities,
        object: file.content.object,
        plaintext: file.content.plaintext,
        sink: createWriteStream(stagedPath, {flags: 'wx', mode: 0o600}),
      })
      await syncPath(stagedPath)
      files.push({
        bytes: file.content.plaintext.bytes,
        path: join(outputDir, file.name),
        sha256: file.content.plaintext.sha256,
      })
    }

    // The media listing is not downloaded (the tar holds it), but a damaged one still fails the download.
    if (options.media && manifest.components.media && !isPacked(manifest.components.media)) {
      const {listing} = manifest.components.media
      await readVerified(context, manifest, {identities, object: listing.object, plaintext: listing.plaintext})
    }

    // link() refuses to replace an existing name, so a file that appeared meanwhile is never overwritten.
    for (const file of plan) {
      await link(join(staging, file.name), join(outputDir, file.name))
      placed.push(join(outputDir, file.name))
    }

    return {files}
  } catch (error) {
    for (const path of placed) await unlink(path).catch(() => {})
    throw downloadFailure(error, manifest.id, outputDir)
  } finally {
    await rm(staging, {force: true, recursive: true})
    if (createdOutput) await rmdir(outputDir).catch(() => {})
  }
}

interface PlannedFile {
  content?: {
    compression?: 'none' | 'zstd'
    object: {bytes: number; name: string; sha256: string}
    plaintext: {bytes: number; sha256: string}
  }
  name: string
  /** media.tar of a packed backup: built from its index and packs, so its size and hash come from writing it. */
  packed?: boolean
}

function planFiles(manifest: Manifest, options: DownloadOptions): PlannedFile[] {
  const {database, media} = manifest.components
  return [
    ...(database && options.database ? [{content: database, name: `database.${extensionOf(database.format)}`}] : []),
    ...(media && options.media
      ? [isPacked(media) ? {name: 'media.tar', packed: true} : {content: media, name: 'media.tar'}]
      : []),
    {name: MANIFEST_NAME},
  ]
}

export function extensionOf(format: 'custom' | 'sql' | 'sqlite3'): string {
  return format === 'custom' ? 'dump' : format
}

function downloadFailure(error: unknown, id: string, outputDir: string): unknown {
  if (error instanceof ObjectCheckError) {
    return new BackupError(
      'INTEGRITY',
      `Backup ${id} failed verification: ${error.objectName}: ${error.message}. No files were written.`,
      {
        suggestion: `Run \`divio app backup verify ${id}\` for a full report, and restore from another backup.`,
      },
    )
  }

  if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
    return new BackupError(
      'OUTPUT_EXISTS',
      `A file appeared in ${outputDir} during the download; nothing was overwritten.`,
      {
        suggestion: 'Choose another folder with -o.',
      },
    )
  }

  return describeIoError(error, `the download into ${outputDir}`, 'OUTPUT_UNAVAILABLE') ?? error
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  )
}

function findDownloadable(catalog: Catalog, reference: string): {manifest: Manifest} {
  try {
    return findBackup(catalog, reference)
  } catch (error) {
    if (!(error instanceof BackupError) || error.code !== 'INTEGRITY') throw error
    throw new BackupError(error.code, `${error.message} No files were written.`, {
      cause: error,
      suggestion: error.suggestion,
    })
  }
}

/** Writes a packed backup's media.tar, checking every blob and file; resolves with its size and SHA-256. */
export async function writePackedMedia(
  context: BackupContext,
  manifest: Manifest,
  options: {identities: readonly X25519Identity[]; path: string; tempDir: string},
): Promise<{bytes: number; sha256: string}> {
  const media = manifest.components.media as MediaPacksComponent
  const {stream, summary} = await packedMediaTar(context, manifest, options)
  const progress = context.reporter.progress('media.tar', media.totalFileBytes)
  const hashing = new HashingStream()
  hashing.on('data', (chunk: Buffer) => progress.advance(chunk.length))
  try {
    await pipeline(stream, hashing, createWriteStream(options.path, {flags: 'wx', mode: 0o600}), {
      signal: context.signal,
    })
    await summary
  } finally {
    progress.done()
  }

  await syncPath(options.path)
  return {bytes: hashing.bytes, sha256: hashing.sha256}
}
