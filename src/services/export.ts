import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {rename, rm, stat, writeFile} from 'node:fs/promises'
import {dirname, join, relative, resolve} from 'node:path'
import {pipeline} from 'node:stream/promises'

import {HashingStream} from '../archive/hash.js'
import {Manifest, MANIFEST_NAME, objectsOf} from '../domain/manifest.js'
import {BackupError, describeIoError} from '../errors.js'
import {createFileSink} from '../lib/file-sink.js'
import {makeFolders} from '../lib/folders.js'
import {syncPath} from '../lib/fsync.js'
import {makeStagingDir, removeStagingDir, tempFolderError} from '../lib/staging.js'
import {storedMedia} from '../media-format/index.js'
import {exportPacks} from '../media-format/packs/export.js'
import {exportRecipe} from '../media-format/packs/recipe.js'
import {OwnObject, StoredMedia} from '../media-format/port.js'
import {DEFINERS_SED} from '../providers/database/mysql-definers.js'
import {ENCODED_KEYS_SH, KEYS_FOLDER} from '../providers/media/s3-key-paths.js'
import {catalogOf, objectKey} from './catalog.js'
import {BackupContext} from './context.js'
import {extensionOf, refuseSharedOutput} from './download.js'
import {ObjectCheckError, readVerified} from './read.js'

export interface ExportOptions {
  /** Only the newest complete backup, instead of all of them. */
  latest: boolean
  outputDir?: string
  /** The stored `.age` objects as they are, instead of decrypted files. */
  raw: boolean
}

/** `export --json`: every file of the export, and whether this run wrote it or found it already verified. */
export interface ExportResult {
  files: Array<{backup: string; bytes: number; path: string; sha256: string; status: 'exported' | 'present'}>
  index: string
  outputDir: string
}

interface PlannedFile {
  bytes: number
  name: string
  sha256: string
  write(path: string): Promise<void>
}

/** A file whose size and hash are known only once it is written (a packed backup's media.tar). */
interface BuiltFile {
  built: true
  name: string
  write(path: string): Promise<{bytes: number; sha256: string}>
}

/**
 * Exports backups into standard files that open without this tool, for leaving the platform:
 * `<dir>/<env>/<id>/` holds database.dump / database.sql / database.sqlite3, media.tar and
 * manifest.json (or, with `raw`, the `.age` objects as stored), and `<dir>` holds index.json,
 * SHA256SUMS and README.txt, which explains how to restore each kind by hand.
 *
 * Every file is written under a `.partial` name, checked against the manifest, and renamed into place,
 * so a file under its final name is always complete. A re-run skips files that are present and match
 * their checksum, which makes an interrupted export resumable.
 */
export async function exportBackups(
  context: BackupContext,
  cwd: string,
  options: ExportOptions,
): Promise<ExportResult> {
  const {app, name: environment} = context.env
  const {complete, damaged} = await catalogOf(context)
  for (const backup of damaged)
    context.reporter.notice(`warning: backup ${backup.id} is not exported: it is damaged (${backup.reason}).`)
  if (complete.length === 0) {
    throw new BackupError('BACKUP_NOT_FOUND', `There are no complete backups of ${app}/${environment} to export.`, {
      suggestion: 'Take one with `divio app backup create`.',
    })
  }

  const manifests = (options.latest ? complete.slice(0, 1) : complete).map((backup) => backup.manifest).reverse()
  const outputDir = resolve(cwd, options.outputDir ?? `divio-export-${app}`)
  await refuseSharedOutput(outputDir, 'export')
  const identities = options.raw ? [] : await context.keys.identities()
  const files: ExportResult['files'] = []
  try {
    for (const manifest of manifests) {
      const folder = join(outputDir, environment, manifest.id)
      await makeFolders(folder)
      const plan = options.raw ? rawFiles(context, manifest) : plainFiles(context, manifest, identities)
      for (const file of plan) {
        const path = join(folder, file.name)
        if ('built' in file) {
          // Not resumable: with no stored hash to compare with, it is built again on every run.
          const partial = `${path}.partial`
          const digest = await file.write(partial)
          await rename(partial, path)
          files.push({backup: manifest.id, ...digest, path, status: 'exported'})
          continue
        }

        const status = await exportFile(file, path, outputDir)
        files.push({backup: manifest.id, bytes: file.bytes, path, sha256: file.sha256, status})
      }
    }

    if (options.raw) files.push(...(await exportPacks(context, manifests, outputDir)))
    const index = await writeIndex(context, {files, manifests, outputDir, raw: options.raw})
    return {files, index, outputDir}
  } catch (error) {
    throw exportFailure(error, outputDir, context.tempRoot)
  }
}

/** Writes one file under a `.partial` name, checks it, and renames it into place; keeps a verified one. */
async function exportFile(file: PlannedFile, path: string, outputDir: string): Promise<'exported' | 'present'> {
  if (await matches(path, file)) return 'present'
  const partial = `${path}.partial`
  await file.write(partial)
  if (!(await matches(partial, file))) {
    throw new BackupError('INTEGRITY', `${relative(outputDir, path)} did not match the backup after writing.`, {
      suggestion: 'Check the disk, then run the export again.',
    })
  }

  await syncPath(partial)
  await rename(partial, path)
  return 'exported'
}

function plainFiles(
  context: BackupContext,
  manifest: Manifest,
  identities: Awaited<ReturnType<BackupContext['keys']['identities']>>,
): Array<BuiltFile | PlannedFile> {
  const {database} = manifest.components
  const media = storedMedia(manifest)
  const decrypted = (content: OwnObject, name: string): PlannedFile => ({
    bytes: content.plaintext.bytes,
    name,
    sha256: content.plaintext.sha256,
    write: (path) =>
      readVerified(context, manifest, {
        compression: content.compression,
        identities,
        object: content.object,
        plaintext: content.plaintext,
        sink: createFileSink(path, {flags: 'w', mode: 0o600, syncs: true}),
      }),
  })
  return [
    ...(database ? [decrypted(database, `database.${extensionOf(database.format)}`)] : []),
    ...(media
      ? [
          'build' in media.tar
            ? builtMediaFile(context, identities, media.tar.build)
            : decrypted(media.tar.object, 'media.tar'),
        ]
      : []),
    manifestFile(manifest),
  ]
}

function builtMediaFile(
  context: BackupContext,
  identities: Awaited<ReturnType<BackupContext['keys']['identities']>>,
  build: Extract<StoredMedia['tar'], {build: unknown}>['build'],
): BuiltFile {
  return {
    built: true,
    name: 'media.tar',
    async write(path) {
      const tempDir = await makeStagingDir(context.tempRoot, 'export')
      try {
        await rm(path, {force: true})
        return await build(context, identities, path, tempDir)
      } finally {
        await removeStagingDir(tempDir)
      }
    },
  }
}

function rawFiles(context: BackupContext, manifest: Manifest): PlannedFile[] {
  return [
    ...objectsOf(manifest).map((object) => ({
      bytes: object.bytes,
      name: object.name,
      sha256: object.sha256,
      async write(path: string) {
        const source = await context.store.get(objectKey(manifest.app, manifest.environment, manifest.id, object.name))
        const progress = context.reporter.progress(object.name, object.bytes)
        const hashing = new HashingStream()
        hashing.on('data', (chunk: Buffer) => progress.advance(chunk.length))
        await pipeline(source, hashing, createFileSink(path, {flags: 'w', mode: 0o600, syncs: true}), {
          signal: context.signal,
        })
        progress.done()
      },
    })),
    manifestFile(manifest),
  ]
}

function manifestFile(manifest: Manifest): PlannedFile {
  const text = `${JSON.stringify(manifest, null, 2)}\n`
  return {
    bytes: Buffer.byteLength(text),
    name: MANIFEST_NAME,
    sha256: createHash('sha256').update(text).digest('hex'),
    write: (path) => writeFile(path, text, {mode: 0o600}),
  }
}

/** Whether `path` exists with exactly the expected size and SHA-256 (read back from disk). */
async function matches(path: string, file: PlannedFile): Promise<boolean> {
  const info = await stat(path).catch(() => {})
  if (!info?.isFile() || info.size !== file.bytes) return false
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, {highWaterMark: 1024 * 1024}) as AsyncIterable<Buffer>) {
    hash.update(chunk)
  }

  return hash.digest('hex') === file.sha256
}

async function writeIndex(
  context: BackupContext,
  {
    files,
    manifests,
    outputDir,
    raw,
  }: {files: ExportResult['files']; manifests: Manifest[]; outputDir: string; raw: boolean},
): Promise<string> {
  const {app, name: environment} = context.env
  const index = {
    app,
    backups: manifests.map((manifest) => ({
      completedAt: manifest.completedAt,
      createdAt: manifest.createdAt,
      environment,
      files: files
        .filter((file) => file.backup === manifest.id)
        .map((file) => ({bytes: file.bytes, path: relative(outputDir, file.path), sha256: file.sha256})),
      id: manifest.id,
      note: manifest.note,
      trigger: manifest.trigger,
    })),
    exportedAt: context.now().toISOString(),
    format: 'divio-backup-export',
    raw,
    version: 1,
  }
  const sums = files.map((file) => `${file.sha256}  ${relative(outputDir, file.path)}\n`).join('')
  await atomicWrite(join(outputDir, 'index.json'), `${JSON.stringify(index, null, 2)}\n`)
  await atomicWrite(join(outputDir, 'SHA256SUMS'), sums)
  await atomicWrite(join(outputDir, 'README.txt'), readme(app, raw))
  return join(outputDir, 'index.json')
}

async function atomicWrite(path: string, text: string): Promise<void> {
  await makeFolders(dirname(path))
  await writeFile(`${path}.partial`, text, {mode: 0o644})
  await rename(`${path}.partial`, path)
}

function readme(app: string, raw: boolean): string {
  const decrypt = raw
    ? `
The files are age-encrypted exactly as they were stored. Decrypt each with the stock age tool
(https://age-encryption.org) and the identity (secret key) file the backups were made with:

    age -d -i backup-identity.txt -o database.dump database.dump.age
    age -d -i backup-identity.txt -o media.tar media.tar.age
    age -d -i backup-identity.txt database.sql.zst.age | zstd -d > database.sql
    age -d -i backup-identity.txt database.sqlite3.zst.age | zstd -d > database.sqlite3
    age -d -i backup-identity.txt -o database.sqlite3 database.sqlite3.age   # backups before compression

media.manifest.json.age is the media listing on its own; media.tar holds the same as MANIFEST.json.

Incremental media (a backup with media.index.gz.age instead of media.tar.age): the file contents are in
<environment>/packs/, age-encrypted tars of blobs shared by backups, in zstd streams (compressed when
their content compresses: age -d -i KEY PACK | zstd -dcf | tar -x opens every kind), and
media.rebuild.sh.age is an sh script, compressed with zstd, that puts one backup's media folder back
together from them. Save this as rebuild-media.sh in
the export's folder, set its first line to your identity file, the backup and its environment, and
run \`sh rebuild-media.sh\`; it rebuilds the media into $OUT:

${exportRecipe()
  .map((line) => `    ${line}`)
  .join('\n')}

The rebuild script is code: \`divio app backup verify\` (or this export, when it had the identity)
checks that it is exactly the one the backup's index derives. media.index.gz.age holds the same as
gzipped JSON lines, with each file's SHA-256 (age -d ... | gunzip); backups made before it was
gzipped have media.index.age.
After decrypting, restore as below.
`
    : ''
  return `Backups of ${app}, exported by \`divio app backup export\`.

Layout: <environment>/<backup id>/ per backup, and
  index.json   every backup and file, with sizes and SHA-256 checksums
  SHA256SUMS   the same checksums; check them with: sha256sum -c SHA256SUMS
  manifest.json in each backup folder: what the backup holds, as recorded when it was taken
${decrypt}
Restoring by hand, without this tool:

PostgreSQL (database.dump, pg_dump's custom format):
    pg_restore --clean --if-exists --no-owner --no-privileges --single-transaction \\
      --dbname=postgres://USER@HOST:5432/DBNAME database.dump
    pg_restore -l database.dump          # lists what it contains
    # --clean drops only what the backup holds: drop first any table added since that refers to
    # one of them. As a user who does not own the target's extensions (an administrator made
    # them), leave them out of what is restored:
    pg_restore -l database.dump | grep -v -E '^[0-9]+; [0-9]+ [0-9]+ (EXTENSION - |COMMENT - EXTENSION )' > restore.list
    # then add --use-list=restore.list to the pg_restore above

MySQL / MariaDB (database.sql, a mysqldump/mariadb-dump script):
    mysql -h HOST -u USER -p DBNAME < database.sql
    # MySQL's own client stops at the sandbox line that mariadb-dump writes first
    # ("Unknown command '\\-'"); leave that line out for it:
    sed '1{/enable the sandbox mode/d}' database.sql | mysql -h HOST -u USER -p DBNAME
    # Its triggers, views, routines and events name the account that made them as their
    # definer, which only a user with SUPER or SET USER may set ("Access denied; you need
    # (at least one of) the SUPER, SET USER privilege(s)"); as another user, make yourself
    # their definer, as \`divio app backup restore\` does:
    ${DEFINERS_SED} database.sql | mysql -h HOST -u USER -p DBNAME

SQLite (database.sqlite3, an ordinary database file):
    sqlite3 database.sqlite3 'PRAGMA integrity_check'
    cp database.sqlite3 /path/to/your/db.sqlite3   # with the app stopped

Media (media.tar, a POSIX tar):
    tar -tf media.tar                    # the files are under media/; MANIFEST.json comes last
    tar -xf media.tar -C /path/to/parent media
    # MANIFEST.json lists every file with its size, mode, mtime and SHA-256
    # (and for media from S3, its key, ETag and Last-Modified).
    # To put media back into a bucket:
    aws s3 sync /path/to/parent/media s3://BUCKET/PREFIX --exclude '${KEYS_FOLDER}/*'
    # A key that names no path of its own (a file that is also the folder of others, a folder
    # object that holds bytes) is a file under media/${KEYS_FOLDER}/, named by the key with
    # %, / and ~ written as %25, %2F and %7E, and a ~ at the end; to put those back:
    ${ENCODED_KEYS_SH.replaceAll('\n', '\n    ')}
`
}

function exportFailure(error: unknown, outputDir: string, tempRoot: string): unknown {
  if (error instanceof ObjectCheckError) {
    return new BackupError(
      'INTEGRITY',
      `A backup failed verification during the export: ${error.objectName}: ${error.message}.`,
      {
        suggestion: `Files already exported to ${outputDir} are complete and verified. Run \`divio app backup verify --all\` for a full report.`,
      },
    )
  }

  if (error instanceof BackupError) return error
  const temp = tempFolderError(error, tempRoot)
  if (temp) return temp
  const io = describeIoError(error, `the export into ${outputDir}`, 'OUTPUT_UNAVAILABLE')
  if (io) {
    return new BackupError(io.code, io.message, {
      cause: error,
      suggestion: `${io.suggestion} Run the export again to resume it: files already exported are kept.`,
    })
  }

  return error
}
