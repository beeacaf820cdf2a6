import type {S3Client} from '@aws-sdk/client-s3'

import {createHash} from 'node:crypto'
import {Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {ListingCheck} from '../../archive/listing.js'
import {LISTING_MEMBER, MEDIA_PREFIX, MediaEntry} from '../../archive/media-tar.js'
import {readTar, TarMember} from '../../archive/tar-reader.js'
import {ArchivedObjects} from '../../config/dsn.js'
import {S3Location} from '../../config/s3-location.js'
import {BackupError} from '../../errors.js'
import {giveBack} from '../../lib/buffer-loan.js'
import {isUtf8Name} from '../../lib/byte-names.js'
import {createS3Client, getObject, isArchivedObjectError, ObjectRead, s3Failure} from '../../lib/s3.js'
import {shellQuote} from '../../lib/shell.js'
import {EntriesOptions, MediaProvider, MediaRestoreSummary} from './port.js'
import {keyOfPath, KeyPath, S3KeyPaths} from './s3-key-paths.js'

/** Small objects downloaded ahead of the archive writer, at most this many at once. */
const PREFETCH = 8
/**
 * Objects up to this size are held in memory whole: downloaded ahead on backup, uploaded several at
 * a time on restore. Larger ones stream, one at a time. Memory: about 16 × this.
 */
const SMALL_OBJECT = 1024 * 1024
const UPLOADS_IN_FLIGHT = 8
/** The storage classes whose objects S3 serves only after a restore request, as the listing names them. */
const ARCHIVE_CLASSES = new Set(['DEEP_ARCHIVE', 'GLACIER'])

/** An object as listed: a media entry, with its key and storage class. */
type ListedObject = MediaEntry & {key: string; storageClass?: string}

/**
 * Media in an S3 bucket under a prefix (the platform's DEFAULT_STORAGE_DSN). Every object becomes a
 * file member `media/<key without the prefix>`; zero-byte "folder" objects whose key ends in `/` become
 * folders. A key that names no path of its own (`report` beside `report/2024.pdf`, `a//b`) is a file
 * under `media/.divio-s3-keys/`, named by its encoded key (s3-key-paths.ts), and a restore into a
 * bucket puts it back under its key. The archive's MANIFEST.json records each object's key, size,
 * ETag, Last-Modified and SHA-256.
 */
export class S3MediaProvider implements MediaProvider {
  readonly kind = 's3'
  readonly location: string
  private clientPromise: Promise<S3Client> | undefined

  constructor(
    private readonly s3: S3Location,
    /** The DSN as shown to users, already redacted. */
    description: string,
    private readonly archived: ArchivedObjects = 'fail',
  ) {
    this.location = description
  }

  async *entries({needsContent, onSkip, signal}: EntriesOptions): AsyncIterable<MediaEntry> {
    // Small objects are downloaded ahead, a few at a time, while the archive takes the current one:
    // on S3 a request's latency, not its bytes, is what makes many small files slow.
    const window: Array<{entry: ListedObject; prefetched?: Promise<Readable | undefined>; wanted: boolean}> = []
    const listing = this.list(signal)[Symbol.asyncIterator]()
    let listed = false
    try {
      for (;;) {
        while (!listed && window.length < PREFETCH) {
          const next = await listing.next()
          if (next.done) listed = true
          else {
            const entry = next.value
            const wanted = entry.type === 'file' && (needsContent === undefined || (await needsContent(entry)))
            window.push({entry, wanted})
          }
        }

        for (const slot of window) {
          if (slot.wanted && slot.entry.size <= SMALL_OBJECT && slot.prefetched === undefined) {
            slot.prefetched = this.download(slot.entry, onSkip, signal)
            slot.prefetched.catch(() => {})
          }
        }

        const slot = window.shift()
        if (slot === undefined) return
        const {entry, prefetched} = slot
        if (entry.type === 'file') entry.open = () => prefetched ?? this.download(entry, onSkip, signal)
        yield entry
      }
    } finally {
      await listing.return?.()
    }
  }

  /**
   * Uploads the members of a media tar back under the prefix: files as objects, folders as `…/`
   * markers; symlinks and other members are skipped (`onSkip`), S3 has no such thing. Every file's
   * SHA-256 is checked against the archive's MANIFEST.json. With `clean`, objects under the prefix that
   * the archive does not hold are deleted afterwards, and only if everything else succeeded.
   */
  async restore(
    tar: Readable,
    options: {clean?: boolean; onSkip?: (path: string, why: string) => void; signal?: AbortSignal},
  ): Promise<MediaRestoreSummary> {
    const client = await this.client()
    const check = new ListingCheck()
    // Only `clean` needs the restored keys; without it, memory does not grow with the number of files.
    const restored = options.clean ? new Set<string>() : undefined
    let objects = 0
    const inFlight = new Set<Promise<void>>()
    let failure: unknown
    let bytes = 0
    let listed = false
    const skipped: MediaRestoreSummary['skipped'] = []
    const skip = (path: string, why: string) => {
      skipped.push({path, why})
      options.onSkip?.(path, why)
    }

    const track = (upload: Promise<void>) => {
      const tracked: Promise<void> = upload
        .catch((error: unknown) => {
          failure ??= error
        })
        .finally(() => inFlight.delete(tracked))
      inFlight.add(tracked)
    }

    try {
      for await (const member of readMediaArchive(tar)) {
        options.signal?.throwIfAborted()
        if (failure !== undefined) throw this.failure(failure, 'restore the media')
        if (listed) throw new BackupError('INTEGRITY', `The media archive holds a member after ${LISTING_MEMBER}.`)
        if (member.path === LISTING_MEMBER) {
          // Not a break: the archive is read to its end, as the reader requires of a complete archive.
          await check.verify(member.body)
          listed = true
          continue
        }

        if (!member.path.startsWith(MEDIA_PREFIX)) continue
        const path = member.path.slice(MEDIA_PREFIX.length).replace(/\/$/, '')
        if (member.type === 'directory') {
          const marker = folderObjectKey(path)
          if (marker !== undefined) track(this.putSmall(marker, Buffer.alloc(0), options.signal))
          continue
        }

        if (member.type !== 'file') {
          skip(path, `a ${member.type} cannot be stored in S3`)
          continue
        }

        if (!isUtf8Name(path)) {
          // An S3 key is UTF-8: this name has no key. Its content is still checked against the listing.
          check.add(path, await contentHash(member))
          skip(path, 'its name is not UTF-8, and an S3 key must be')
          continue
        }

        bytes += member.size
        const key = keyOfPath(path, 'file')!
        restored?.add(key)
        objects++
        if (member.size <= SMALL_OBJECT) {
          const body = await collect(member.body)
          check.add(path, createHash('sha256').update(body).digest('hex'))
          while (inFlight.size >= UPLOADS_IN_FLIGHT) await Promise.race(inFlight)
          track(this.putSmall(key, body, options.signal))
          continue
        }

        check.add(path, await this.uploadLarge(client, member, key, path))
      }

      await Promise.all(inFlight)
    } catch (error) {
      // Nothing of a failed restore may go on writing to the bucket once it has returned.
      await Promise.allSettled(inFlight)
      throw error
    }

    if (failure !== undefined) throw this.failure(failure, 'restore the media')
    if (!listed) await check.verify()
    const {archivedKept, deleted} = restored
      ? await this.deleteExtras(restored, options.signal)
      : {archivedKept: 0, deleted: 0}
    return {archivedKept, bytes, deleted, files: objects, skipped}
  }

  /** An archived object that fails the backup (`"archivedMedia": "fail"`, the default): which, and the two ways on. */
  private archivedFailure(entry: ListedObject, error: unknown): BackupError {
    return new BackupError(
      'SOURCE_UNAVAILABLE',
      `Cannot read the media object ${JSON.stringify(entry.key)} in ${this.location}: it is ${archivedAs(entry)}, and S3 serves it only after a restore request (InvalidObjectState).`,
      {
        cause: error,
        suggestion: `Have S3 restore the archived objects for some days (\`aws s3api restore-object --bucket ${this.s3.bucket} --key ${shellQuote(entry.key)} --restore-request Days=7\`, and the same for each: docs/s3.md says how to list them) and back up once they are readable, or set \`"archivedMedia": "skip"\` on the environment in the config to back up everything else: each backup then names the archived objects it leaves out, which only S3's archive holds.`,
      },
    )
  }

  private client(): Promise<S3Client> {
    // Objects are fetched PREFETCH at a time, plus the listing.
    this.clientPromise ??= createS3Client(this.s3, {maxSockets: PREFETCH + UPLOADS_IN_FLIGHT + 2})
    return this.clientPromise
  }

  /**
   * Deletes the objects under the prefix that the restore did not write (`--clean`), but never an
   * archived one: no backup can hold what S3 would not serve it (`"archivedMedia": "skip"` left it
   * out), and the archive may be its only copy. Those are counted and left in place.
   */
  private async deleteExtras(
    keep: Set<string>,
    signal?: AbortSignal,
  ): Promise<{archivedKept: number; deleted: number}> {
    const {DeleteObjectCommand} = await import('@aws-sdk/client-s3')
    const client = await this.client()
    const listingSignal = signal ?? new AbortController().signal
    let archivedKept = 0
    const extras: string[] = []
    for await (const entry of this.list(listingSignal)) {
      if (entry.type !== 'file' || keep.has(entry.key.slice(this.s3.prefix.length))) continue
      if (await this.isArchived(entry, listingSignal)) archivedKept++
      else extras.push(entry.key)
    }

    let deleted = 0
    for (const key of extras) {
      await client.send(new DeleteObjectCommand({Bucket: this.s3.bucket, Key: key}), {abortSignal: signal})
      deleted++
    }

    return {archivedKept, deleted}
  }

  /**
   * Opens one object: a small one is read whole (it is waiting in the prefetch window), a large one
   * streams and resumes if its connection breaks. Resolves to undefined when the object was deleted
   * since the listing (it is left out); when it was replaced, the entry takes the new size, ETag and date.
   */
  private async download(
    entry: ListedObject,
    onSkip: ((path: string, why: string) => void) | undefined,
    signal: AbortSignal,
  ): Promise<Readable | undefined> {
    const client = await this.client()
    let read: ObjectRead | undefined
    try {
      read = await getObject(
        client,
        {bucket: this.s3.bucket, key: entry.key},
        (error) => this.failure(error, `read ${entry.key}`),
        signal,
      )
    } catch (error) {
      if (!isArchivedObjectError(error)) throw error
      if (this.archived === 'fail') throw this.archivedFailure(entry, error)
      onSkip?.(
        entry.path,
        `${archivedAs(entry)}, and S3 serves it only after a restore request ("archivedMedia": "skip")`,
      )
      return undefined
    }

    if (read === undefined) {
      onSkip?.(entry.path, 'deleted while the backup ran')
      return undefined
    }

    if (read.etag !== entry.etag) {
      entry.etag = read.etag
      entry.size = read.size
      entry.mtime = read.lastModified ?? entry.mtime
    }

    return read.size <= SMALL_OBJECT ? Readable.from([await collect(read.body)]) : read.body
  }

  private failure(error: unknown, what: string): BackupError {
    return s3Failure(error, what, this.location, 'SOURCE_UNAVAILABLE')
  }

  /** Glacier and Deep Archive show in the listing; Intelligent-Tiering's archive tiers only in the object's head. */
  private async isArchived(entry: ListedObject, signal: AbortSignal): Promise<boolean> {
    if (ARCHIVE_CLASSES.has(entry.storageClass ?? '')) return true
    if (entry.storageClass !== 'INTELLIGENT_TIERING') return false
    const {HeadObjectCommand} = await import('@aws-sdk/client-s3')
    const client = await this.client()
    const head = await client
      .send(new HeadObjectCommand({Bucket: this.s3.bucket, Key: entry.key}), {abortSignal: signal})
      .catch((error: unknown) => {
        throw this.failure(error, `read the head of ${entry.key}`)
      })
    return head.ArchiveStatus !== undefined
  }

  // Every object under the prefix, in key order, as media entries without contents.
  private async *list(signal: AbortSignal): AsyncIterable<ListedObject> {
    const {ListObjectsV2Command} = await import('@aws-sdk/client-s3')
    const client = await this.client()
    const paths = new S3KeyPaths()
    let ContinuationToken: string | undefined
    do {
      const page = await client
        .send(new ListObjectsV2Command({Bucket: this.s3.bucket, ContinuationToken, Prefix: this.s3.prefix}), {
          abortSignal: signal,
        })
        .catch((error: unknown) => {
          throw this.failure(error, 'list the media')
        })
      for (const object of page.Contents ?? []) {
        const key = object.Key!
        const relative = key.slice(this.s3.prefix.length)
        if (relative === '') continue
        const size = object.Size ?? 0
        const {path, type} = this.pathOf(paths, relative, size)
        const common = {
          etag: object.ETag,
          key,
          mtime: object.LastModified ?? new Date(0),
          path,
          storageClass: object.StorageClass,
        }
        yield type === 'directory'
          ? {...common, mode: 0o755, size: 0, type: 'directory'}
          : {...common, mode: 0o644, size, type: 'file'}
      }

      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (ContinuationToken)
  }

  /** A key's path in the archive (s3-key-paths.ts); a listing out of key order fails the command. */
  private pathOf(paths: S3KeyPaths, key: string, size: number): KeyPath {
    try {
      return paths.next(key, size)
    } catch (error) {
      throw new BackupError(
        'CONFIG_INVALID',
        `The media in ${this.location} cannot be read as an archive: ${(error as Error).message}.`,
        {
          suggestion:
            'The backup needs a listing in key order, as S3 gives it (an S3 Express directory bucket does not): keep the media in a general purpose bucket.',
        },
      )
    }
  }

  /** Puts one object; `key` is relative to the prefix. */
  private async putSmall(key: string, body: Buffer, signal?: AbortSignal): Promise<void> {
    const {PutObjectCommand} = await import('@aws-sdk/client-s3')
    const client = await this.client()
    await client.send(
      new PutObjectCommand({
        Body: body,
        Bucket: this.s3.bucket,
        ContentLength: body.length,
        Key: `${this.s3.prefix}${key}`,
      }),
      {abortSignal: signal},
    )
  }

  /** A file larger than one request takes, streamed as a multipart upload; resolves with its SHA-256. */
  private async uploadLarge(client: S3Client, member: TarMember, key: string, path: string): Promise<string> {
    const {Upload} = await import('@aws-sdk/lib-storage')
    const hash = createHash('sha256')
    const hashing = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk)
        callback(null, chunk)
      },
    })
    const upload = new Upload({
      client,
      params: {Body: hashing, Bucket: this.s3.bucket, ContentLength: member.size, Key: `${this.s3.prefix}${key}`},
    })
    await Promise.all([pipeline(member.body, hashing), upload.done()]).catch((error: unknown) => {
      throw this.failure(error, `restore ${path}`)
    })
    return hash.digest('hex')
  }
}

/** How the listing names an archived object's storage class, for messages. */
function archivedAs(entry: ListedObject): string {
  return entry.storageClass && entry.storageClass !== 'STANDARD'
    ? `archived (storage class ${entry.storageClass})`
    : 'archived'
}

// The archive's members; a damaged or truncated archive is an integrity error.
async function* readMediaArchive(tar: Readable): AsyncGenerator<TarMember> {
  try {
    yield* readTar(tar)
  } catch (error) {
    if (error instanceof BackupError) throw error
    throw new BackupError('INTEGRITY', `The media archive is damaged: ${(error as Error).message}.`, {
      cause: error,
      suggestion: 'Nothing after the damage was restored; restore from another backup.',
    })
  }
}

/**
 * The key of the folder object that a folder of the archive stands for: none for the media root, nor
 * for the folders that only hold encoded keys (s3-key-paths.ts).
 */
function folderObjectKey(path: string): string | undefined {
  return path === '' ? undefined : keyOfPath(path, 'directory')
}

/** The SHA-256 of a member's content, read and let go a piece at a time. */
async function contentHash(member: TarMember): Promise<string> {
  const hash = createHash('sha256')
  await member.eachChunk((chunk) => {
    hash.update(chunk)
    giveBack(chunk)
  })
  return hash.digest('hex')
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk)
  return Buffer.concat(chunks)
}
