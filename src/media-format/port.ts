import {Readable, Writable} from 'node:stream'

import {X25519Identity} from '../archive/age-keys.js'
import {ExtractSummary, WrittenFile} from '../archive/extract.js'
import {WriterKey} from '../archive/writer-key.js'
import {Manifest, MediaComponent, StoredObject} from '../domain/manifest.js'
import {BackupContext, Progress} from '../services/context.js'
import {CheckedContents} from './checked-contents.js'

/**
 * What `export` names the objects that the backups of an environment share (the packs of incremental
 * media) in place of a backup id: they belong to no one backup.
 */
export const SHARED_PACKS = 'packs'

/**
 * A media format: how a backup's media is stored, and how it is read back. Two implement it: `tar`
 * (one media.tar.age a backup, in `tar/`) and `packs` (incremental: blobs in packs that backups share,
 * and an index a backup, in `packs/`). The services hold one of these and never ask which.
 */
export interface MediaFormat {
  /** Backs up the environment's media into the store, and returns what the manifest records. */
  backUp(context: BackupContext, job: BackUpJob): Promise<MediaComponent>
}

/** What a create gives the format: where to put objects of the backup's folder, and its keys. */
export interface BackUpJob {
  /** The newest backup's media size, as an estimate for progress (read only when it is drawn). */
  previousMediaBytes: () => Promise<number | undefined>
  put: PutObject
  /** The owner's recipients: every object is encrypted to them. */
  recipients: readonly Uint8Array[]
  tempDir: string
  writer: WriterKey
}

/** Stores one object of the backup's folder: encrypted to `to` (default: the owner's recipients). */
export type PutObject = (
  name: string,
  source: Readable,
  progress: Progress,
  options: {
    /** The plaintext's size, when it is known ahead (a staged file): see TransferOptions. */
    bytes?: number
    compression?: 'none' | 'zstd'
    location: string
    to?: readonly Uint8Array[]
  },
) => Promise<{object: StoredObject; plaintext: {bytes: number; sha256: string}}>

/** An object of the backup's own folder, with what its plaintext must be. */
export interface OwnObject {
  compression?: 'none' | 'zstd'
  /**
   * For verify: a check of what the plaintext holds, beyond its checksum, that reads it as it streams
   * by. `sink` takes the plaintext; `done` resolves with a line of its own for the report, or rejects
   * with an ObjectCheckError saying what is wrong.
   */
  contentCheck?: () => {done: Promise<{detail: string; name: string}>; sink: Writable}
  object: StoredObject
  plaintext: {bytes: number; sha256: string}
}

/** One line of a verify report. */
export interface CheckReport {
  detail: string
  name: string
  ok: boolean
}

/** media.tar being read from the store: see {@link StoredMedia.openTar}. */
export interface TarStream {
  checked: Promise<void>
  stream: Readable
}

/** A link for `url`: an object of the store outside the backup's folder, by its key. */
export interface LinkTarget {
  bytes?: number
  key: string
  /** As the recipe and the report name it: `packs/<pack>`, say. */
  name: string
}

/** The media of one backup, whatever its format: what verify, download, export, url and info need of it. */
export interface StoredMedia {
  /**
   * Checks what the own objects lead to (every pack, or a sample of them), once those have checked
   * out. `checked` is what this run of verify has read and checked so far, shared by every backup it
   * checks: where backups share what they lead to, a run reads it about once.
   */
  checkContent(
    context: BackupContext,
    identities: readonly X25519Identity[],
    options: {checked: CheckedContents; samplePercent?: number},
  ): Promise<CheckReport[]>
  /**
   * Writes the backup's media into `folder`, a new folder, as restore must: every file checked (against
   * the archive's listing, or each blob against its id), tar safety held, and whatever else the media
   * is read from checked too; progress is drawn as media.tar's. Rejects with ObjectCheckError when the
   * backup is damaged; the folder is removed on any failure, and nothing the read staged in `tempDir`
   * (the caller's) is left open. `written` hears of every file written (see ExtractOptions).
   */
  extract(
    context: BackupContext,
    identities: readonly X25519Identity[],
    into: {folder: string; tempDir: string; written?: WrittenFile},
  ): Promise<ExtractSummary>
  /** Objects outside the backup's folder that `url` links to, and the sh recipe that uses the links. */
  links(
    context: BackupContext,
  ): Promise<{recipe?: (links: {name: string; url: string}[]) => string; targets: LinkTarget[]}>
  readonly manifest: Manifest
  /**
   * media.tar as a stream, checked as it goes, for a consumer that checks what it reads in turn
   * (restore's extraction). `checked` settles once everything behind the bytes has been checked, which
   * can be after the stream has ended (an object's hash is known at its end): what the consumer made of
   * the stream counts only once `checked` resolves. It rejects with ObjectCheckError when the backup is
   * damaged, and settles too when the consumer destroys the stream. `tempDir` is the caller's, and
   * outlives the stream.
   */
  openTar(context: BackupContext, identities: readonly X25519Identity[], tempDir: string): Promise<TarStream>
  /** The objects of the backup's folder that hold the media, in the manifest's order. */
  readonly ownObjects: readonly OwnObject[]
  /**
   * media.tar for download and export: either one of the own objects, decrypted as it is (`object`),
   * or a file built from the store (`build`, which checks everything it reads). `alsoCheck`: own
   * objects that are not written out, whose damage still fails the download.
   */
  readonly tar:
    | {alsoCheck: readonly OwnObject[]; object: OwnObject}
    | {
        build(
          context: BackupContext,
          identities: readonly X25519Identity[],
          path: string,
          tempDir: string,
        ): Promise<{bytes: number; sha256: string}>
      }
}
