import {WriterKey} from '../archive/writer-key.js'
import {authenticateNote, SignedNote, signNote} from '../domain/authenticity.js'
import {BackupError} from '../errors.js'

/**
 * A drill's receipt: what was restored and checked, with what result, signed with the writer key of
 * the machine that ran it and stored beside the backup (`<id>/drill-<time>.json`). A receipt decides
 * nothing that is deleted; it is shown (list, info, status), so only a signed one from a trusted writer
 * is shown at all: anyone who can write to the store could plant "passed".
 */

export const RECEIPT_PREFIX = 'drill-'
export const RECEIPT_SUFFIX = '.json'

export interface DrillCheck {
  detail: string
  name: string
  ok: boolean
}

export interface DrillReceipt {
  app: string
  backupId: string
  checks: DrillCheck[]
  database?: {engine: string; rows: number; tables: number}
  durationSeconds: number
  endedAt: string
  environment: string
  media?: {checkedFiles: number; files: number}
  passed: boolean
  startedAt: string
  tool: {name: string; version: string}
  /** The engine and the programs the drill used, with their versions. */
  tools: Record<string, string>
  version: 1
}

export type SignedReceipt = DrillReceipt & SignedNote

/** The error of a failed drill (exit 4), naming what differed. */
export function drillFailure(receipt: DrillReceipt): BackupError {
  const failed = receipt.checks.filter((check) => !check.ok)
  return new BackupError(
    'INTEGRITY',
    `The drill of backup ${receipt.backupId} failed: ${failed.map((check) => `${check.name}: ${check.detail}`).join('; ')}.`,
    {
      suggestion:
        'Do not rely on this backup: its receipt records the failure. Take a new backup, drill it, and find what changed the data (docs/monitoring.md).',
    },
  )
}

export function receiptName(endedAt: Date): string {
  return `${RECEIPT_PREFIX}${endedAt
    .toISOString()
    .replaceAll(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}${RECEIPT_SUFFIX}`
}

export function isReceiptName(name: string): boolean {
  return /^drill-\d{8}T\d{6}Z\.json$/.test(name)
}

export function signReceipt(receipt: DrillReceipt, key: WriterKey): SignedReceipt {
  return signNote('drill-receipt', {...receipt}, key) as SignedReceipt
}

/** The receipt in `raw` when its signature holds and its writer is trusted, and it is about `backupId`. */
export function readReceipt(raw: unknown, backupId: string, trusted: ReadonlySet<string>): SignedReceipt | undefined {
  const authenticated = authenticateNote('drill-receipt', raw, trusted)
  if (!authenticated.ok) return undefined
  const receipt = raw as SignedReceipt
  return receipt.version === 1 && receipt.backupId === backupId ? receipt : undefined
}

/** "drilled 2026-12-02: 14 tables, 1,204,331 rows match", or why it failed. */
export function describeReceipt(receipt: DrillReceipt): string {
  const day = receipt.endedAt.slice(0, 10)
  if (!receipt.passed) {
    const failed = receipt.checks.filter((check) => !check.ok).map((check) => check.name)
    return `drill FAILED ${day}: ${failed.join(', ')}`
  }

  const parts = [
    ...(receipt.database
      ? [`${receipt.database.tables} tables, ${receipt.database.rows.toLocaleString('en-US')} rows match`]
      : []),
    ...(receipt.media
      ? [
          `${receipt.media.checkedFiles.toLocaleString('en-US')} media ${receipt.media.checkedFiles === 1 ? 'file matches' : 'files match'}`,
        ]
      : []),
  ]
  return `drilled ${day}: ${parts.join(', ') || 'passed'}`
}
