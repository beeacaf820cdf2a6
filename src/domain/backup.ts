import {Authenticity} from './authenticity.js'
import {isPacked, Manifest, MediaComponent, Trigger} from './manifest.js'

/** `damaged`: committed, but its manifest cannot be read or authenticated (see Authenticity). */
export type BackupStatus = 'complete' | 'damaged' | 'failed' | 'incomplete'
export type Tier = 'daily' | 'monthly' | 'on-demand' | 'weekly' | 'yearly'

/** The stable JSON shape of a backup (docs/output.md): additions are fine, renames are not. */
export interface BackupView {
  app: string
  completedAt: null | string
  components: {
    /** serverVersion: the major version of the server it was dumped from, where the engine has one. */
    database?: {bytes: number; engine: string; format: string; serverVersion?: string; sha256: string}
    media?: {bytes: number; files: number; sha256: string}
  }
  createdAt: string
  /** The newest drill whose signed receipt authenticates here; null when none does. */
  drill: null | {endedAt: string; passed: boolean; summary: string}
  environment: string
  id: string
  note: null | string
  pinned: boolean
  retention: {
    /** When the policy would remove it if the schedule continues; null when that cannot be known. */
    expiresAt: null | string
    /** The expiry in words, including why it cannot be dated. */
    expiry: string
    keep: boolean
    /** Surely kept until then (see Expiry.keptAtLeastUntil); null when that cannot be said. */
    keptAtLeastUntil: null | string
    reason: string
  }
  status: BackupStatus
  tier: null | Tier
  trigger: null | Trigger
  /** Who signed the manifest, and whether that signature holds and is trusted here. */
  writer: {
    /** Why a damaged backup is damaged; for a complete one, who signed it. */
    detail: string
    id: null | string
    status: 'authentic' | 'bad-signature' | 'not-applicable' | 'unreadable' | 'unsigned' | 'untrusted-writer'
  }
}

/** What the catalog knows about a complete backup; the input to retention and to views. */
export interface CompleteBackup {
  /** Always `authentic` in Catalog.complete; other values only after an explicit --trust-writer. */
  authenticity: Authenticity
  manifest: Manifest
  pinned: boolean
  /** Names of the drill receipts stored beside it (`drill-<time>.json`), oldest first; not yet authenticated. */
  receipts?: string[]
}

/**
 * A committed backup (it has a manifest) that cannot be trusted: the manifest is unreadable, or it
 * does not authenticate. Nothing in it is believed, so its fields are only shown, never acted on.
 */
export interface DamagedBackup {
  app: string
  /** Set when the manifest authenticated poorly but could be read: what it claims, unverified. */
  authenticity?: Authenticity
  /** From the id, which is the folder name: the only time known without believing the manifest. */
  createdAt: Date
  environment: string
  id: string
  /** Set when the manifest parsed. Its fields are claims, not facts. */
  manifest?: Manifest
  objects: string[]
  pinned: boolean
  /** Why it is damaged, in words. */
  reason: string
}

export interface IncompleteBackup {
  app: string
  bytes: number
  createdAt: Date
  environment: string
  id: string
  /** The newest modification time of its objects: how long ago something last wrote to it. */
  lastModifiedAt: Date
  objects: string[]
  pinned: boolean
}

export function viewOfComplete(
  backup: CompleteBackup,
  decision: {
    expiresAt: null | string
    expiry: string
    keep: boolean
    keptAtLeastUntil: null | string
    reason: string
    tier: null | Tier
  },
  drill: BackupView['drill'] = null,
): BackupView {
  const {manifest} = backup
  const {database, media} = manifest.components
  return {
    app: manifest.app,
    completedAt: manifest.completedAt,
    components: {
      ...(database
        ? {
            database: {
              bytes: database.plaintext.bytes,
              engine: database.engine,
              format: database.format,
              ...(database.serverVersion === undefined ? {} : {serverVersion: database.serverVersion}),
              sha256: database.plaintext.sha256,
            },
          }
        : {}),
      ...(media ? {media: mediaView(media)} : {}),
    },
    createdAt: manifest.createdAt,
    drill,
    environment: manifest.environment,
    id: manifest.id,
    note: manifest.note,
    pinned: backup.pinned,
    retention: {
      expiresAt: decision.expiresAt,
      expiry: decision.expiry,
      keep: decision.keep,
      keptAtLeastUntil: decision.keptAtLeastUntil,
      reason: decision.reason,
    },
    status: 'complete',
    tier: decision.tier,
    trigger: manifest.trigger,
    writer: {
      detail: `signed by ${backup.authenticity.writer ?? 'nobody'}`,
      id: backup.authenticity.writer,
      status: backup.authenticity.status,
    },
  }
}

export function viewOfDamaged(backup: DamagedBackup, reason: string): BackupView {
  return viewWithoutManifest(backup, reason, 'damaged', {
    detail: backup.reason,
    id: backup.authenticity?.writer ?? null,
    status: backup.authenticity?.status ?? 'unreadable',
  })
}

export function viewOfIncomplete(backup: IncompleteBackup, reason: string): BackupView {
  return viewWithoutManifest(backup, reason, 'incomplete', {detail: 'no manifest', id: null, status: 'not-applicable'})
}

/** A backup whose manifest is missing or not believed: only what its id and listing say is shown. */
function viewWithoutManifest(
  backup: DamagedBackup | IncompleteBackup,
  reason: string,
  status: 'damaged' | 'incomplete',
  writer: BackupView['writer'],
): BackupView {
  return {
    app: backup.app,
    completedAt: null,
    components: {},
    createdAt: backup.createdAt.toISOString(),
    drill: null,
    environment: backup.environment,
    id: backup.id,
    note: null,
    pinned: backup.pinned,
    retention: {expiresAt: null, expiry: reason, keep: true, keptAtLeastUntil: null, reason},
    status,
    tier: null,
    trigger: null,
    writer,
  }
}

/**
 * bytes and sha256 of a backup's media: of its media.tar for a tar backup; for a packed one, of its
 * files' contents and of its index (its media.tar is built on download, so it has no stored hash).
 */
export function mediaView(media: MediaComponent): {bytes: number; files: number; sha256: string} {
  return isPacked(media)
    ? {bytes: media.totalFileBytes, files: media.files, sha256: media.index.plaintext.sha256}
    : {bytes: media.plaintext.bytes, files: media.files, sha256: media.plaintext.sha256}
}
