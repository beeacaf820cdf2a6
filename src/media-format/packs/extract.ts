import {rm} from 'node:fs/promises'
import {join} from 'node:path'
import {Readable} from 'node:stream'

import {X25519Identity} from '../../archive/age-keys.js'
import {extractMedia, ExtractSummary, MediaMembers, SMALL_FILE_BYTES, WrittenFile} from '../../archive/extract.js'
import {MEDIA_PREFIX} from '../../archive/media-tar.js'
import {DescribedMember} from '../../archive/tar-header-parse.js'
import {TarMember} from '../../archive/tar-reader.js'
import {Manifest, MediaPacksComponent} from '../../domain/manifest.js'
import {BackupError} from '../../errors.js'
import {lendToFree} from '../../lib/buffer-loan.js'
import {streamOf} from '../../lib/generator-stream.js'
import {removeTree} from '../../lib/remove-tree.js'
import {BackupContext} from '../../services/context.js'
import {ObjectCheckError, readVerified} from '../../services/read.js'
import {CheckedContents} from '../checked-contents.js'
import {readPackTrust} from './check.js'
import {packsPrefix} from './folder.js'
import {contentKey, IndexEntry} from './media-index.js'
import {fileContent, isSmallWholeBlob, openIndexLines, readIndexFile, smallFileContent} from './read.js'
import {PackReader} from './reader.js'

/**
 * Restoring incremental media into a folder: the index's entries handed to the extraction as members,
 * straight from the blobs, with no media.tar built and read back.
 */

/**
 * Writes a packed backup's media into `folder` straight from its blobs, without building media.tar and
 * reading it back: the extraction's checks are the same, and each blob is checked against its id as it
 * is read (the files need no listing, nor a hash of their own). The rebuild script is not written,
 * but damage to it still fails the restore, as it fails whatever reads the backup.
 */
export async function extractPackedMedia(
  context: BackupContext,
  manifest: Manifest,
  options: {folder: string; identities: readonly X25519Identity[]; tempDir: string; written?: WrittenFile},
): Promise<ExtractSummary> {
  const media = manifest.components.media as MediaPacksComponent
  const progress = context.reporter.progress('media.tar', media.totalFileBytes)
  const script = readVerified(context, manifest, {...media.rebuild, identities: options.identities})
  script.catch(() => {})
  let source: PackedMembers | undefined
  try {
    source = await packedMembers(context, manifest, {
      advance: (bytes) => progress.advance(bytes),
      identities: options.identities,
      tempDir: options.tempDir,
    })
    let summary: ExtractSummary
    try {
      summary = await extractMedia(source, options.folder, {
        expectedFiles: media.files,
        signal: context.signal,
        written: options.written,
      })
    } catch (error) {
      // A read that failed says why better than the broken extraction it caused (not when stopped).
      throw context.signal.aborted ? error : (source.failure ?? error)
    }

    try {
      await script
    } catch (error) {
      await removeTree(options.folder)
      throw error
    }

    return summary
  } finally {
    progress.done()
    await source?.close()
  }
}

/** A packed backup's media as members to extract, and what became of reading them: see {@link packedMembers}. */
export interface PackedMembers extends MediaMembers {
  /** How many files were not read, their contents being checked already (see packedMembersToCheck). */
  readonly checkedBefore: number
  /**
   * Ends the reading: the decrypted index is closed and removed, and the packs are closed (waited for
   * once everything was read; otherwise abandoned, since a read that a hung mount holds may never end).
   */
  close(): Promise<void>
  /** The first failure of a read (a blob that does not check, a pack that is missing), which says why. */
  readonly failure: Error | undefined
}

/**
 * A packed backup's media as members to extract (extract.ts), straight from its index and its blobs,
 * without building media.tar and reading it back. Every blob is authenticated by age and checked
 * against its id as it is read, and every file against its size (and its recorded SHA-256), so the
 * files need no listing and no second hash (`checkedBy: 'source'`). `advance` counts the bytes read;
 * `onEntry` sees every entry of the index as its member is made (verify derives the rebuild script
 * from them).
 */
async function packedMembers(
  context: BackupContext,
  manifest: Manifest,
  options: MemberOptions,
  checked?: CheckedContents,
): Promise<PackedMembers> {
  const media = manifest.components.media as MediaPacksComponent
  const indexName = media.index.object.name
  const indexPath = join(options.tempDir, `${manifest.id}.index`)
  await readIndexFile(context, manifest, options.identities, indexPath)
  const reader = new PackReader({
    forwards: (await readPackTrust(context, {app: manifest.app, environment: manifest.environment})).targets,
    identities: options.identities,
    prefix: packsPrefix(manifest.app, manifest.environment),
    store: context.store,
  })
  const index = openIndexLines(indexPath)
  let failure: Error | undefined
  let finished = false
  let checkedBefore = 0
  // The key of the entry asked about last: its read, which follows, adds the same key.
  let keyed: undefined | {entry: IndexEntry; key: Buffer}
  const keyOf = (entry: IndexEntry): Buffer => {
    if (keyed?.entry !== entry) keyed = {entry, key: contentKey(entry)}
    return keyed.key
  }

  // `stop` fails every read still waiting, so that one a hung mount holds does not hold the extraction.
  // (Not a race with one promise that `stop` rejects: every race would leave it a reaction to keep.)
  let stoppedBy: Error | undefined
  const waiting = new Set<(reason: Error) => void>()
  const stoppable = <T>(work: Promise<T>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (stoppedBy) {
        work.catch(() => {})
        reject(stoppedBy)
        return
      }

      waiting.add(reject)
      work.then(resolve, reject).finally(() => waiting.delete(reject))
    })
  const bodies = new Set<Readable>()
  // What the reads found wrong with the backup (or the store); not the stop, nor what it broke.
  const noted = (error: unknown) => {
    if (error instanceof ObjectCheckError || error instanceof BackupError) failure ??= error
    return error
  }

  const gather = async (entry: IndexEntry): Promise<Buffer> => {
    if (isSmallWholeBlob(entry)) return (await smallFileContent(reader, entry, indexName)).content
    const chunks: Buffer[] = []
    for await (const chunk of fileContent(reader, entry, indexName)) chunks.push(Buffer.from(chunk))
    return Buffer.concat(chunks)
  }

  const read = async (entry: IndexEntry): Promise<Buffer> => {
    try {
      const content = await stoppable(gather(entry))
      checked?.add(keyOf(entry))
      options.advance?.(content.length)
      return content
    } catch (error) {
      throw noted(error)
    }
  }

  const stream = (entry: IndexEntry): Readable => {
    async function* counted(): AsyncGenerator<Buffer> {
      try {
        for await (const chunk of fileContent(reader, entry, indexName)) {
          options.advance?.(chunk.length)
          yield chunk
        }

        checked?.add(keyOf(entry))
      } catch (error) {
        throw noted(error)
      }
    }

    // Not Readable.from: destroyed while a read hangs, it would not close until the read ended.
    const body = streamOf(counted())
    bodies.add(body)
    body.once('close', () => bodies.delete(body))
    return body
  }

  const alreadyChecked = (entry: IndexEntry): boolean => {
    if (checked === undefined || !checked.has(keyOf(entry))) return false
    checkedBefore++
    return true
  }

  const reads: ContentReads = {alreadyChecked, read, stream}
  async function* members(): AsyncGenerator<TarMember, void> {
    for await (const entry of index.entries) {
      options.onEntry?.(entry)
      yield new PackedMember(entry, reads)
    }

    finished = true
  }

  return {
    get checkedBefore() {
      return checkedBefore
    },
    checkedBy: 'source',
    async close() {
      await index.close()
      await rm(indexPath, {force: true})
      if (finished) await reader.close()
      else reader.abandon()
    },
    get failure() {
      return failure
    },
    members: members(),
    stop(reason) {
      stoppedBy ??= reason
      for (const reject of waiting) reject(reason)
      for (const body of bodies) body.destroy(reason)
      reader.abandon()
    },
  }
}

interface MemberOptions {
  advance?(bytes: number): void
  identities: readonly X25519Identity[]
  onEntry?(entry: IndexEntry): void
  tempDir: string
}

/**
 * The members of {@link packedMembers} for verify, which writes nothing: a file whose content (its
 * blobs where the index places them, its size and recorded SHA-256) is in `checked` was read and
 * checked already in this run, by an earlier backup or as a copy earlier in this one, and its member
 * offers no chunks (never for an extraction, which would write it empty); its other checks (its path,
 * its place in the tree) are made as for any other. Every file read and checked is added to `checked`.
 */
export function packedMembersToCheck(
  context: BackupContext,
  manifest: Manifest,
  options: MemberOptions & {checked: CheckedContents},
): Promise<PackedMembers> {
  return packedMembers(context, manifest, options, options.checked)
}

/** How a packed member's contents are read: checked blob by blob (see packedMembers). */
interface ContentReads {
  /** Whether the file's content was read and checked already in this run: see packedMembersToCheck. */
  alreadyChecked(entry: IndexEntry): boolean
  read(entry: IndexEntry): Promise<Buffer>
  stream(entry: IndexEntry): Readable
}

/**
 * An index entry as the member of media.tar it stands for, its contents read when they are asked for.
 * A class, not an object literal with a getter and closures of its own: one is made for every file of
 * every restore, verify and drill, and the literal (its spread, its getter) cost a packed verify of
 * 20,006 files about 0.36 CPU-s, and more in collections.
 */
class PackedMember extends DescribedMember implements TarMember {
  constructor(
    private readonly entry: IndexEntry,
    private readonly reads: ContentReads,
  ) {
    const file = entry.type === 'file'
    super({
      linkTarget: entry.linkTarget,
      mode: entry.mode,
      // The time the index records, to the millisecond: closer than media.tar's headers, which hold
      // whole seconds unless a name needs a pax header (utimes takes it as floating-point seconds,
      // which can come back a microsecond off).
      mtime: new Date(entry.mtimeMs),
      path: `${MEDIA_PREFIX}${entry.path}${entry.type === 'directory' ? '/' : ''}`,
      rawType: file ? 'File' : entry.type === 'directory' ? 'Directory' : 'SymbolicLink',
      size: file ? entry.size : 0,
      type: entry.type,
    })
  }

  get body(): Readable {
    return this.type === 'file' ? this.reads.stream(this.entry) : Readable.from([])
  }

  async contents(): Promise<Buffer> {
    return this.type === 'file' ? this.reads.read(this.entry) : Buffer.alloc(0)
  }

  eachChunk(take: (chunk: Buffer) => void): Promise<void> | undefined {
    if (this.type !== 'file' || this.reads.alreadyChecked(this.entry)) return
    return this.chunks(take)
  }

  private async chunks(take: (chunk: Buffer) => void): Promise<void> {
    if (this.size <= SMALL_FILE_BYTES) {
      // What extraction takes whole: one piece, read and checked like `contents`; lent, so that the
      // consumer that gives it back frees it.
      take(lendToFree(await this.reads.read(this.entry)))
      return
    }

    for await (const chunk of this.reads.stream(this.entry)) take(chunk as Buffer)
  }
}
