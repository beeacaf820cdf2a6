import {createHash} from 'node:crypto'
import {link, lstat, rmdir, unlink, writeFile} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {Manifest, MANIFEST_NAME} from '../domain/manifest.js'
import {BackupError, describeIoError} from '../errors.js'
import {createFileSink} from '../lib/file-sink.js'
import {makeFolders} from '../lib/folders.js'
import {syncPath} from '../lib/fsync.js'
import {sharedFolderOn} from '../lib/private-folder.js'
import {makeStagingDir, removeStagingDir, tempFolderError} from '../lib/staging.js'
import {storedMedia} from '../media-format/index.js'
import {OwnObject, StoredMedia} from '../media-format/port.js'
import {Catalog, catalogOf, findBackupFor} from './catalog.js'
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

/** `download`/`export` --json: stable contract (docs/output.md). */
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
  const {manifest} = options.manifest ?? findDownloadable(context, await catalogOf(context), options.reference)
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

  await refuseSharedOutput(outputDir, 'download')
  const identities = await context.keys.identities()
  const createdOutput = !(await exists(outputDir))
  const staging = await makeFolders(outputDir)
    .then(() => makeStagingDir(outputDir, 'download', true))
    .catch((error: unknown) => {
      throw downloadFailure(error, manifest.id, outputDir, context.tempRoot)
    })
  const placed: string[] = []
  try {
    const files: FilesResult['files'] = []
    for (const file of plan) {
      const stagedPath = join(staging, file.name)
      if (file.build) {
        files.push({
          ...(await file.build(context, identities, stagedPath, staging)),
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
        sink: createFileSink(stagedPath, {flags: 'wx', mode: 0o600, syncs: true}),
      })
      await syncPath(stagedPath)
      files.push({
        bytes: file.content.plaintext.bytes,
        path: join(outputDir, file.name),
        sha256: file.content.plaintext.sha256,
      })
    }

    // Objects not written out (the media listing: the tar holds it) still fail the download when damaged.
    for (const {object, plaintext} of plan.flatMap((file) => file.alsoCheck ?? [])) {
      await readVerified(context, manifest, {identities, object, plaintext})
    }

    // link() refuses to replace an existing name, so a file that appeared meanwhile is never overwritten.
    for (const file of plan) {
      await link(join(staging, file.name), join(outputDir, file.name))
      placed.push(join(outputDir, file.name))
    }

    return {files}
  } catch (error) {
    for (const path of placed) await unlink(path).catch(() => {})
    throw downloadFailure(error, manifest.id, outputDir, context.tempRoot)
  } finally {
    await removeStagingDir(staging)
    if (createdOutput) await rmdir(outputDir).catch(() => {})
  }
}

interface PlannedFile {
  alsoCheck?: readonly OwnObject[]
  /** media.tar built from the store (packed media): its size and hash come from writing it. */
  build?: BuildTar
  content?: OwnObject
  name: string
}

type BuildTar = Extract<StoredMedia['tar'], {build: unknown}>['build']

function planFiles(manifest: Manifest, options: DownloadOptions): PlannedFile[] {
  const {database} = manifest.components
  const media = storedMedia(manifest)
  return [
    ...(database && options.database ? [{content: database, name: `database.${extensionOf(database.format)}`}] : []),
    ...(media && options.media ? [mediaTarFile(media.tar)] : []),
    {name: MANIFEST_NAME},
  ]
}

/** media.tar as the media's format gives it: an object to decrypt, or a file to build. */
function mediaTarFile(tar: StoredMedia['tar']): PlannedFile {
  return 'build' in tar
    ? {build: tar.build, name: 'media.tar'}
    : {alsoCheck: tar.alsoCheck, content: tar.object, name: 'media.tar'}
}

export function extensionOf(format: 'custom' | 'sql' | 'sqlite3'): string {
  return format === 'custom' ? 'dump' : format
}

function downloadFailure(error: unknown, id: string, outputDir: string, tempRoot: string): unknown {
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

  // A drill downloads into its scratch folder, in the temp folder: that folder is to blame then.
  return (
    tempFolderError(error, tempRoot) ??
    describeIoError(error, `the download into ${outputDir}`, 'OUTPUT_UNAVAILABLE') ??
    error
  )
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  )
}

function findDownloadable(
  context: Pick<BackupContext, 'reporter'>,
  catalog: Catalog,
  reference: string,
): {manifest: Manifest} {
  try {
    return findBackupFor(context, catalog, reference)
  } catch (error) {
    if (!(error instanceof BackupError) || error.code !== 'INTEGRITY') throw error
    throw new BackupError(error.code, `${error.message} No files were written.`, {
      cause: error,
      suggestion: error.suggestion,
    })
  }
}

/**
 * Refuses an output folder that another user could change under the command (private-folder.ts):
 * what `download` and `export` write there is the backup, decrypted (or, raw, files that a link
 * planted there would have a command run as root write over another file).
 */
export async function refuseSharedOutput(outputDir: string, command: 'download' | 'export'): Promise<void> {
  const shared = await sharedFolderOn(outputDir)
  if (shared === undefined) return
  throw new BackupError(
    'OUTPUT_UNAVAILABLE',
    `Nothing was written into ${outputDir}: ${shared.path} ${shared.why}, who could swap what is written there for a link to a place of theirs, and read or redirect it.`,
    {
      suggestion: `Choose a folder with -o that only you (and root) can change, such as a new one in your home folder, then run the ${command} again.`,
    },
  )
}
