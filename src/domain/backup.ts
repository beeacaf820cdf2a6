import {Manifest, Trigger} from './manifest.js'

export type BackupStatus = 'complete' | 'failed' | 'incomplete'
export type Tier = 'daily' | 'monthly' | 'on-demand' | 'weekly' | 'yearly'

/** The stable JSON shape of a backup (DESIGN §3): additions are fine, renames are not. */
export interface BackupView {
  app: string
  completedAt: null | string
  components: {
    database?: {bytes: number; engine: string; format: string; sha256: string}
    media?: {bytes: number; files: number; sha256: string}
  }
  createdAt: string
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
    reason: string
  }
  status: BackupStatus
  tier: null | Tier
  trigger: null | Trigger
}

/** What the catalog knows about a complete backup; the input to retention and to views. */
export interface CompleteBackup {
  manifest: Manifest
  pinned: boolean
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
  decision: {expiresAt: null | string; expiry: string; keep: boolean; reason: string; tier: null | Tier},
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
              sha256: database.plaintext.sha256,
            },
          }
        : {}),
      ...(media ? {media: {bytes: media.plaintext.bytes, files: media.files, sha256: media.plaintext.sha256}} : {}),
    },
    createdAt: manifest.createdAt,
    environment: manifest.environment,
    id: manifest.id,
    note: manifest.note,
    pinned: backup.pinned,
    retention: {expiresAt: decision.expiresAt, expiry: decision.expiry, keep: decision.keep, reason: decision.reason},
    status: 'complete',
    tier: decision.tier,
    trigger: manifest.trigger,
  }
}

export function viewOfIncomplete(backup: IncompleteBackup, reason: string): BackupView {
  return {
    app: backup.app,
    completedAt: null,
    components: {},
    createdAt: backup.createdAt.toISOString(),
    environment: backup.environment,
    id: backup.id,
    note: null,
    pinned: backup.pinned,
    retention: {expiresAt: null, expiry: reason, keep: true, reason},
    status: 'incomplete',
    tier: null,
    trigger: null,
  }
}
