import {dirname, relative} from 'node:path'

import type {PackCollectionResult} from '../media-format/packs/collection.js'

import {BackupView} from '../domain/backup.js'
import {countOf, formatBytes, formatDay, formatInstant, renderTable, shortHash, truncate} from '../domain/format.js'
import {formatInZone} from '../domain/schedule.js'
import {SHARED_PACKS} from '../media-format/port.js'
import {FilesResult} from '../services/download.js'
import {ExportResult} from '../services/export.js'
import {BackupInfo} from '../services/info.js'
import {InitResult} from '../services/init.js'
import {RetentionReport} from '../services/policy.js'
import {RestoreResult} from '../services/restore.js'
import {PruneDecision, PruneResult} from '../services/retention.js'
import {BackupUrls} from '../services/url.js'
import {VerifyResult} from '../services/verify.js'
import {CalendarMark, CalendarOptions, renderCalendar, renderSparkline} from './calendar.js'

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
  calendar?: CalendarOptions,
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
  const marks = [
    ...result.keep.flatMap(({id, reason, tier}) => {
      const mark: CalendarMark | undefined = reason === 'pinned' ? 'pinned' : (tier ?? undefined)
      return mark ? [{day: dayOfId(id), mark}] : []
    }),
    ...result.remove.map(({id}) => ({day: dayOfId(id), mark: 'removed' as const})),
  ]
  const picture = calendar && marks.length > 0 ? `\n\n${renderCalendar(marks, calendar)}` : ''
  return `${renderTable(
    ['ID', 'ACTION', 'REASON'],
    rows.map((row) => [row.id, row.action, row.reason]),
  )}\n${summary}${packs}${picture}`
}

/** `2026-12-02` from a backup id, which starts with its creation time (20261202T…). */
function dayOfId(id: string): string {
  return `${id.slice(0, 4)}-${id.slice(4, 6)}-${id.slice(6, 8)}`
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

export function renderRetention(report: RetentionReport, options: {colour?: boolean} = {}): string {
  // A policy in words is a paragraph: wrapped, with what follows its first line indented under it.
  const lines = report.summary.map((line) => wrap(line, OUTPUT_WIDTH, 2))
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
    const marks = keep.flatMap(({createdAt, tier}) => (tier ? [{day: formatDay(createdAt), mark: tier}] : []))
    if (marks.length > 0) {
      const lastDay = marks
        .map(({day}) => day)
        .sort()
        .at(-1)!
      lines.push('', renderCalendar(marks, {colour: options.colour ?? false, lastDay}))
    }
  }

  return lines.join('\n')
}

/** The width `list` keeps to, whatever the terminal: 80 columns, the narrowest one people still use. */
const LIST_WIDTH = 80
/** The width of every other human output. */
export const OUTPUT_WIDTH = 100

/**
 * `list`: one line a backup, within 80 columns. The id carries the creation time; the tier says how
 * it was taken (on-demand, or the scheduled tier that keeps it); KEPT UNTIL is the day the policy
 * removes it, with `+` where it is kept at least until then (an on-demand backup may then be among the
 * newest older ones). The note is cut to what fits; `info` and --json give it whole.
 */
export function renderList(
  views: readonly BackupView[],
  context: {app: string; environment: string; unicode?: boolean},
): string {
  if (views.length === 0)
    return `No backups of ${context.app}/${context.environment} yet. Take one with \`divio app backup create\`.`
  // The DRILL column only once a drill has run: until then it would be a column of dashes.
  const drilled = views.some((view) => view.drill !== null)
  const rows = views.map((view) => [
    view.id,
    view.status === 'complete' ? (view.tier ?? view.trigger ?? '-') : view.status,
    view.components.database || view.components.media
      ? formatBytes((view.components.database?.bytes ?? 0) + (view.components.media?.bytes ?? 0))
      : '-',
    keptUntil(view),
    ...(drilled ? [view.drill === null ? '-' : view.drill.passed ? 'passed' : 'FAILED'] : []),
    view.note ?? '',
  ])
  const header = ['ID', 'TIER', 'SIZE', 'KEPT UNTIL', ...(drilled ? ['DRILL'] : []), 'NOTE']
  const fixed = header
    .slice(0, -1)
    .map((title, column) => Math.max(title.length, ...rows.map((row) => row[column].length)))
  const noteWidth = LIST_WIDTH - fixed.reduce((sum, width) => sum + width + 2, 0)
  const table = renderTable(
    header,
    rows.map((row) => [...row.slice(0, -1), truncate(row.at(-1)!, noteWidth)]),
  )
  const legend = rows.some((row) => row[3].endsWith('+'))
    ? '\n+: kept at least until that day, then while among the newest older ones.'
    : ''
  const newestDrill = views
    .filter((view) => view.drill !== null)
    .sort((a, b) => b.drill!.endedAt.localeCompare(a.drill!.endedAt))[0]
  const drillLine = newestDrill
    ? `\n${wrap(`Last drill: ${newestDrill.id} ${newestDrill.drill!.summary}.`, LIST_WIDTH, 2)}`
    : ''
  return table + legend + drillLine + sizeTrend(views, context.unicode ?? false)
}

/** How many backups the size line covers: the newest, as many as fit beside its label in 80 columns. */
const TREND_BACKUPS = 32

/** `Size, oldest to newest: ▁▂▃▅▇ (1.0 MiB to 5.0 MiB)`, of the complete backups that hold both parts. */
function sizeTrend(views: readonly BackupView[], unicode: boolean): string {
  const sizes = views
    .filter((view) => view.status === 'complete')
    .slice(0, TREND_BACKUPS)
    .reverse()
    .map((view) => (view.components.database?.bytes ?? 0) + (view.components.media?.bytes ?? 0))
  if (sizes.length < 3) return ''
  const range = `${formatBytes(Math.min(...sizes))} to ${formatBytes(Math.max(...sizes))}`
  return `\nSize, oldest to newest: ${renderSparkline(sizes, {unicode})} (${range})`
}

function keptUntil(view: BackupView): string {
  if (view.status !== 'complete') return '-'
  if (view.pinned) return 'pinned'
  if (!view.retention.keep) return 'next prune'
  if (view.retention.expiresAt) return formatDay(view.retention.expiresAt)
  if (view.retention.keptAtLeastUntil) return `${formatDay(view.retention.keptAtLeastUntil)}+`
  return '-'
}

export function renderInfo(
  info: BackupInfo,
  options: {calendar?: CalendarOptions & {siblings: readonly BackupView[]}; verbose?: boolean} = {},
): string {
  const hash = options.verbose ? (sha256: string) => sha256 : shortHash
  const keptUntilText = info.retention.expiresAt
    ? `${formatInstant(info.retention.expiresAt)} (${info.retention.expiry})`
    : info.retention.expiry
  const lines = [
    field('Backup', info.id),
    field('App/env', `${info.app}/${info.environment}`),
    field('Status', `${info.status}${info.pinned ? ' (pinned)' : ''}`),
    field('Trigger', `${info.trigger}${info.tier ? `, tier ${info.tier}` : ''}`),
    field('Created', formatInstant(info.createdAt)),
    field('Completed', info.completedAt ? formatInstant(info.completedAt) : '-'),
    field('Note', info.note ?? '-'),
    ...(info.components.database ? [field('Database', databaseText(info.components.database))] : []),
    field('Retention', `${info.retention.keep ? 'keep' : 'remove'}: ${info.retention.reason}`),
    field('Kept until', keptUntilText),
    field('Drill', info.drill ? info.drill.summary : 'never drilled (`divio app backup drill`)'),
    field('Encryption', `age v1 to ${info.encryption.recipients.join(', ')}`),
    field(
      'Writer',
      `${info.writer.id ?? '-'} (${info.writer.status === 'authentic' ? 'signature valid, trusted' : info.writer.detail})`,
    ),
    field('Store', `${info.store.location} (${info.store.storageClass})`),
    field('Tool', `${info.tool.name} ${info.tool.version}`),
    '',
    renderTable(
      ['OBJECT', 'STORED', 'SHA-256 (STORED)', 'CONTENT', 'SHA-256 (CONTENT)'],
      info.objects.map((object) => [
        object.name,
        formatBytes(object.bytes),
        hash(object.sha256),
        formatBytes(object.plaintextBytes),
        hash(object.plaintextSha256),
      ]),
    ),
  ]
  if (options.calendar) {
    const {siblings, ...calendar} = options.calendar
    const marks = siblings
      .filter((view) => view.status === 'complete')
      .map((view) => ({day: dayOfId(view.id), mark: calendarMarkOf(view)}))
    lines.push('', renderCalendar(marks, {...calendar, highlight: dayOfId(info.id)}))
  }

  return lines.join('\n')
}

/** How a backup shows in a calendar: by its pin, by its removal, or by what keeps it. */
function calendarMarkOf(view: BackupView): CalendarMark {
  if (view.pinned) return 'pinned'
  if (!view.retention.keep) return 'removed'
  return view.tier ?? 'on-demand'
}

/** One `Label       value` line of info, wrapped to the output width under its value. */
function field(label: string, value: string): string {
  return wrap(`${label.padEnd(12)}${value}`, OUTPUT_WIDTH, 12)
}

/** Breaks `text` at spaces into lines of at most `width`, the later ones indented by `indent`. */
export function wrap(text: string, width: number, indent: number): string {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(' ')) {
    const candidate = line === '' ? word : `${line} ${word}`
    if ([...candidate].length <= width || line.trim() === '') {
      line = candidate
      continue
    }

    lines.push(line)
    line = `${' '.repeat(indent)}${word}`
  }

  lines.push(line)
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
    `Wrote ${result.configPath}`,
    `for ${environment.app}/${environment.name}, storing in ${environment.store}.`,
    `Identity (${keys.identityGenerated ? 'new' : 'existing'}): ${keys.identityFile}`,
    `Recipient: ${keys.recipient.join(', ')}`,
    `Writer${keys.writerKeyGenerated ? ' (new)' : ''}: ${keys.writerId}`,
    '',
    'To take scheduled backups, install one of these. The tick runs hourly;',
    'it takes the one backup of each slot.',
    '',
    'crontab -e:',
    `  ${result.cron}`,
    '',
    'systemd:',
    ...`${result.systemd.service}\n\n${result.systemd.timer}`.split('\n').map((line) => (line ? `  ${line}` : '')),
    '',
    'Then: systemctl daemon-reload && systemctl enable --now divio-backup.timer',
    ...(result.variables.length === 0 ? [] : ['', wrap(variablesToPass(result.variables), OUTPUT_WIDTH, 0)]),
  ].join('\n')
}

/** What init says of the variables its config reads: the tick's environment must set them too. */
function variablesToPass(names: readonly string[]): string {
  const them = names.length === 1 ? 'it' : 'them'
  const listed = names.length === 1 ? names[0] : `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`
  return `The tick reads ${listed} from the environment, which cron and systemd do not take from this shell: set ${them} in the crontab (NAME=value lines above the tick's) or in the unit (Environment= or EnvironmentFile=). A tick without ${them} fails, naming what it lacks.`
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
  // The files share their folder: it is named once, and each file by its name in it.
  const folder = result.files.length > 0 ? dirname(result.files[0].path) : ''
  return [
    `Decrypted and verified into ${folder}:`,
    ...result.files.map(
      (file) => `  ${relative(folder, file.path)}  ${formatBytes(file.bytes)}  sha256 ${shortHash(file.sha256)}`,
    ),
  ].join('\n')
}

export function renderExport(result: ExportResult): string {
  const exported = result.files.filter((file) => file.status === 'exported')
  // Packs are shared by the backups of an env, and are listed under SHARED_PACKS, which is no backup.
  const backups = new Set(result.files.map((file) => file.backup).filter((backup) => backup !== SHARED_PACKS)).size
  return [
    `Exported ${countOf(backups, 'backup')} into ${result.outputDir}:`,
    `${countOf(exported.length, 'file')} written, ${result.files.length - exported.length} already present and verified.`,
    ...result.files.map(
      (file) =>
        `  ${file.status === 'exported' ? 'wrote' : 'kept '}  ${relative(result.outputDir, file.path)}  ${formatBytes(file.bytes)}`,
    ),
    `Index: ${relative(result.outputDir, result.index)}; README.txt there explains how to restore without this tool.`,
  ].join('\n')
}

/** What `--clean` did to a bucket: the extra objects deleted, and the archived ones it leaves alone. */
function mediaCleaned({archivedKept = 0, deleted}: {archivedKept?: number; deleted: number}): string {
  const parts = [
    ...(deleted ? [`${countOf(deleted, 'extra object')} deleted`] : []),
    ...(archivedKept ? [`${countOf(archivedKept, 'archived object')} the backup does not hold left in place`] : []),
  ]
  return parts.map((part) => `, ${part}`).join('')
}

export function renderRestored(result: RestoreResult): string {
  return [
    `Restored backup ${result.id} of ${result.from} into ${result.to}.`,
    ...(result.database ? [`  database  ${result.database.engine} ${result.database.location}`] : []),
    ...(result.media
      ? [
          `  media     ${countOf(result.media.files, 'file')} into ${result.media.location}${mediaCleaned(result.media)}`,
        ]
      : []),
    result.safetyBackup
      ? `  The previous state of ${result.to} is in backup ${result.safetyBackup}.`
      : '  No safety backup was taken.',
  ].join('\n')
}

/** `postgres 16 (custom)`: the engine, the server's major version where it has one, and the dump's format. */
function databaseText(database: NonNullable<BackupView['components']['database']>): string {
  return `${database.engine}${database.serverVersion === undefined ? '' : ` ${database.serverVersion}`} (${database.format})`
}

function componentLines(view: BackupView): string[] {
  const {database, media} = view.components
  return [
    ...(database
      ? [`  database  ${databaseText(database)}  ${formatBytes(database.bytes)}  sha256 ${shortHash(database.sha256)}`]
      : []),
    ...(media
      ? [
          `  media     ${countOf(media.files, 'file')}, ${formatBytes(media.bytes)} tar  sha256 ${shortHash(media.sha256)}`,
        ]
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
