import {BackupView} from '../domain/backup.js'
import {countOf, formatBytes, formatInstant, renderTable} from '../domain/format.js'
import {formatInZone} from '../domain/schedule.js'
import {PackCollectionResult} from '../media-format/packs/collection.js'
import {SHARED_PACKS} from '../media-format/packs/export.js'
import {FilesResult} from '../services/download.js'
import {ExportResult} from '../services/export.js'
import {BackupInfo} from '../services/info.js'
import {InitResult} from '../services/init.js'
import {RetentionReport} from '../services/policy.js'
import {RestoreResult} from '../services/restore.js'
import {PruneDecision, PruneResult} from '../services/retention.js'
import {BackupUrls} from '../services/url.js'
import {VerifyResult} from '../services/verify.js'

export function renderCreated(view: BackupView & {removedByRetention?: PruneDecision[]}, store: string): string {
  return [
    `Backup ${view.id} of ${view.app}/${view.environment} is complete (${view.trigger}).`,
    ...componentLines(view),
    `Stored in ${store}.`,
    ...(view.removedByRetention ?? []).map(({id, reason}) => `Retention removed ${id}: ${reason}.`),
  ].join('\n')
}

/**
 * The decisions of prune. `plan` is what a prune will do once confirmed; `dry-run` what it would do,
 * with nothing changed. (The service's result says dryRun for both: neither has changed anything yet.)
 */
export function renderPrune(
  result: PruneResult,
  stage: 'dry-run' | 'plan' = result.dryRun ? 'dry-run' : 'plan',
): string {
  const dryRun = stage === 'dry-run'
  const rows = [
    ...result.keep.map((decision) => ({...decision, action: 'keep'})),
    ...result.remove.map((decision) => ({...decision, action: dryRun ? 'would remove' : 'remove'})),
  ].sort((a, b) => b.id.localeCompare(a.id))
  const packs = result.packs ? `\n${renderPackCollection(result.packs, true)}` : ''
  if (rows.length === 0) return `No backups.${packs}`
  const summary = dryRun
    ? `${result.keep.length} kept, ${result.remove.length} would be removed (dry run: nothing was changed).`
    : `${result.keep.length} kept, ${result.remove.length === 0 ? 'nothing to remove' : `${result.remove.length} to remove once confirmed`}.`
  return `${renderTable(
    ['ID', 'ACTION', 'REASON'],
    rows.map((row) => [row.id, row.action, row.reason]),
  )}\n${summary}${packs}`
}

/** One line on the packs of incremental media: what is condemned, deleted, pardoned or waiting. */
export function renderPackCollection(packs: PackCollectionResult, dryRun: boolean): string {
  if (packs.skipped) return `Packs: none collected: ${packs.skipped}.`
  const would = dryRun ? 'would be ' : ''
  return (
    `Packs: ${countOf(packs.condemned.length, 'unreferenced pack')} ${would}condemned, ` +
    `${packs.deleted.length} ${would}deleted (condemned a grace period ago), ` +
    `${packs.pardoned.length} ${would}pardoned (referenced again), ${packs.waiting} waiting out the grace period` +
    (packs.leftovers.length > 0 ? `; ${countOf(packs.leftovers.length, 'half-written pack')} ${would}removed.` : '.') +
    renderRepack(packs.repacked, would) +
    packs.held.map(({pack, why}) => `\n  Pack ${pack}: ${why}.`).join('') +
    (packs.ignored.length > 0
      ? `\n  Ignored ${countOf(packs.ignored.length, 'marker or forward')} not signed by a trusted writer (they decide nothing).`
      : '')
  )
}

function renderRepack(repacked: PackCollectionResult['repacked'], would: string): string {
  if (repacked === undefined) return ''
  if (repacked.skipped) return ` Not repacked: ${repacked.skipped}.`
  const deferred =
    repacked.deferred > 0
      ? ` ${countOf(repacked.deferred, 'mostly dead pack')} left for later: younger than the store's minimum storage duration.`
      : ''
  if (repacked.from.length === 0) return deferred
  return (
    ` ${countOf(repacked.from.length, 'mostly dead pack')} ${would}repacked: ${formatBytes(repacked.liveBytes)} live ` +
    `copied${would ? '' : ` into ${countOf(repacked.into.length, 'new pack')}`}, ${formatBytes(repacked.freedBytes)} ` +
    `to be freed once they are deleted (two phases, like unreferenced packs).${deferred}`
  )
}

export function renderRetention(report: RetentionReport): string {
  const lines = [...report.summary]
  if (report.simulation) {
    const {days, keep, schedule} = report.simulation
    lines.push(
      '',
      `After ${days} days of daily backups at ${schedule.at} (${schedule.timezone}), the policy holds ${keep.length}:`,
      renderTable(
        ['TIER', 'CREATED'],
        keep.map(({createdAt, tier}) => [tier ?? '-', formatInZone(new Date(createdAt), schedule.timezone)]),
      ),
    )
  }

  return lines.join('\n')
}

export function renderList(views: readonly BackupView[], context: {app: string; environment: string}): string {
  if (views.length === 0)
    return `No backups of ${context.app}/${context.environment} yet. Take one with \`divio app backup create\`.`
  const rows = views.map((view) => [
    view.id,
    formatInstant(view.createdAt),
    view.trigger ?? '-',
    view.tier ?? '-',
    view.status + (view.pinned ? ', pinned' : ''),
    view.components.database ? formatBytes(view.components.database.bytes) : '-',
    view.components.media
      ? `${formatBytes(view.components.media.bytes)} (${countOf(view.components.media.files, 'file')})`
      : '-',
    `${view.retention.keep ? 'keep' : 'remove'}: ${view.retention.reason}${view.retention.expiresAt ? `; until ${formatInstant(view.retention.expiresAt)}` : ''}`,
  ])
  return renderTable(['ID', 'CREATED', 'TRIGGER', 'TIER', 'STATUS', 'DATABASE', 'MEDIA', 'RETENTION'], rows)
}

export function renderInfo(info: BackupInfo): string {
  const lines = [
    `Backup      ${info.id}`,
    `App/env     ${info.app}/${info.environment}`,
    `Status      ${info.status}${info.pinned ? ' (pinned)' : ''}`,
    `Trigger     ${info.trigger}${info.tier ? `, tier ${info.tier}` : ''}`,
    `Created     ${formatInstant(info.createdAt)}`,
    `Completed   ${info.completedAt ? formatInstant(info.completedAt) : '-'}`,
    `Note        ${info.note ?? '-'}`,
    `Retention   ${info.retention.keep ? 'keep' : 'remove'}: ${info.retention.reason}`,
    `Kept until  ${info.retention.expiresAt ? `${formatInstant(info.retention.expiresAt)} (${info.retention.expiry})` : info.retention.expiry}`,
    `Encryption  age v1 to ${info.encryption.recipients.join(', ')}`,
    `Writer      ${info.writer.id ?? '-'} (${info.writer.status === 'authentic' ? 'signature valid, trusted' : info.writer.detail})`,
    `Store       ${info.store.location} (${info.store.storageClass})`,
    `Tool        ${info.tool.name} ${info.tool.version}`,
    '',
    renderTable(
      ['OBJECT', 'STORED', 'SHA-256 (STORED)', 'CONTENT', 'SHA-256 (CONTENT)'],
      info.objects.map((object) => [
        object.name,
        formatBytes(object.bytes),
        object.sha256,
        formatBytes(object.plaintextBytes),
        object.plaintextSha256,
      ]),
    ),
  ]
  return lines.join('\n')
}

export function renderVerify(results: readonly VerifyResult[]): string {
  return results
    .map((result) =>
      [
        `${result.ok ? 'OK  ' : 'FAIL'} ${result.id}`,
        ...result.objects.map((object) => `  ${object.ok ? 'ok  ' : 'BAD '} ${object.name}: ${object.detail}`),
      ].join('\n'),
    )
    .join('\n')
}

export function renderInit(result: InitResult): string {
  const {environment, keys} = result
  return [
    `Wrote ${result.configPath} for ${environment.app}/${environment.name}, storing in ${environment.store}.`,
    `Keys: ${keys.identityGenerated ? 'new' : 'existing'} identity ${keys.identityFile} (recipient ${keys.recipient.join(', ')}); writer ${keys.writerId}${keys.writerKeyGenerated ? ' (new)' : ''}.`,
    '',
    'To take scheduled backups, install one of these. The tick runs hourly; each slot of the schedule gets one backup.',
    '',
    'crontab -e:',
    `  ${result.cron}`,
    '',
    'systemd:',
    ...`${result.systemd.service}\n\n${result.systemd.timer}`.split('\n').map((line) => (line ? `  ${line}` : '')),
    '',
    'Then: systemctl daemon-reload && systemctl enable --now divio-backup.timer',
  ].join('\n')
}

/** The closing line of `verify --all`: how many of the backups passed, failed, or could not be checked. */
export function renderVerifySummary(results: readonly VerifyResult[]): string {
  const passed = results.filter((result) => result.ok).length
  const unchecked = results.filter((result) => result.error !== undefined).length
  const failed = results.length - passed - unchecked
  const parts = [`${passed} passed`, `${failed} failed`]
  if (unchecked > 0) parts.push(`${unchecked} could not be checked here (no key for them)`)
  return `Verified ${countOf(results.length, 'backup')}: ${parts.join(', ')}.`
}

export function renderFiles(result: FilesResult): string {
  return [
    'Decrypted and verified:',
    ...result.files.map((file) => `  ${file.path}  ${formatBytes(file.bytes)}  sha256 ${file.sha256}`),
  ].join('\n')
}

export function renderExport(result: ExportResult): string {
  const exported = result.files.filter((file) => file.status === 'exported')
  // Packs are shared by the backups of an env, and are listed under SHARED_PACKS, which is no backup.
  const backups = new Set(result.files.map((file) => file.backup).filter((backup) => backup !== SHARED_PACKS)).size
  return [
    `Exported ${countOf(backups, 'backup')} into ${result.outputDir}: ${countOf(exported.length, 'file')} written, ${result.files.length - exported.length} already present and verified.`,
    ...result.files.map(
      (file) => `  ${file.status === 'exported' ? 'wrote' : 'kept '}  ${file.path}  ${formatBytes(file.bytes)}`,
    ),
    `Index: ${result.index}; README.txt there explains how to restore without this tool.`,
  ].join('\n')
}

export function renderRestored(result: RestoreResult): string {
  return [
    `Restored backup ${result.id} of ${result.from} into ${result.to}.`,
    ...(result.database ? [`  database  ${result.database.engine} ${result.database.location}`] : []),
    ...(result.media
      ? [
          `  media     ${countOf(result.media.files, 'file')} into ${result.media.location}${result.media.deleted ? `, ${countOf(result.media.deleted, 'extra object')} deleted` : ''}`,
        ]
      : []),
    result.safetyBackup
      ? `  The previous state of ${result.to} is in backup ${result.safetyBackup}.`
      : '  No safety backup was taken.',
  ].join('\n')
}

function componentLines(view: BackupView): string[] {
  const {database, media} = view.components
  return [
    ...(database
      ? [
          `  database  ${database.engine} (${database.format})  ${formatBytes(database.bytes)}  sha256 ${database.sha256}`,
        ]
      : []),
    ...(media
      ? [`  media     ${countOf(media.files, 'file')}, ${formatBytes(media.bytes)} tar  sha256 ${media.sha256}`]
      : []),
  ]
}

export function renderUrls(result: BackupUrls): string {
  const width = Math.max(...result.objects.map((object) => object.name.length))
  return [
    `Links to backup ${result.id}, valid until ${result.expiresAt}. Anyone with a link can fetch that (encrypted) object:`,
    ...result.objects.map((object) => `  ${object.name.padEnd(width)}  ${object.url}`),
    'Fetch and decrypt one with: curl -s "URL" | age -d -i <identity file> > <name without .age>',
    ...(result.recipe
      ? [
          'The media is incremental: this sh script fetches what it needs and rebuilds it (set KEY to your identity file):',
          result.recipe.trimEnd(),
        ]
      : []),
  ].join('\n')
}
