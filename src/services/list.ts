import {BackupView, viewOfComplete, viewOfDamaged, viewOfIncomplete} from '../domain/backup.js'
import {countOf} from '../domain/format.js'
import {newestFirst} from '../domain/ids.js'
import {MANIFEST_NAME} from '../domain/manifest.js'
import {projectExpiry} from '../domain/retention-projection.js'
import {nextSlot} from '../domain/schedule.js'
import {describeReceipt, readReceipt} from '../proof/receipt.js'
import {Catalog, catalogOf, objectKey} from './catalog.js'
import {BackupContext} from './context.js'
import {checkForRollback} from './machine-state.js'
import {readSmallObject} from './objects.js'
import {candidatesOf, decideRetention, decisionsById, timezoneOf} from './retention.js'
import {storeCall} from './store-setup.js'

export interface ListOptions {
  /** Include incomplete backups. */
  all: boolean
  /** When the environment has no backups, say which other environments the store holds (`list`). */
  hintAtOthers?: boolean
  trigger?: 'on-demand' | 'scheduled'
}

/** The environment's backups, newest first, each with its retention decision. */
export async function listBackups(context: BackupContext, options: ListOptions): Promise<BackupView[]> {
  const catalog = await catalogOf(context)
  const rollback = await checkForRollback(context, catalog)
  if (rollback)
    context.reporter.notice(
      `warning: the store may have been rolled back: ${rollback.why}. \`restore latest\` refuses until you pass --allow-rollback.`,
    )
  const views = viewsOf(context, catalog, options, await lastDrills(context, catalog))
  if (options.hintAtOthers && catalog.complete.length === 0 && catalog.damaged.length === 0)
    await hintAtOtherEnvironments(context)
  return views
}

/** Receipts read at once. */
const RECEIPT_READS = 16

/**
 * The newest drill of each backup that has receipts: the newest receipt whose signature holds and
 * whose writer is trusted here. A receipt that does not authenticate is not shown at all: it could
 * have been planted by anyone who can write to the store.
 */
export async function lastDrills(
  context: Pick<BackupContext, 'keys' | 'store'>,
  catalog: Catalog,
): Promise<Map<string, NonNullable<BackupView['drill']>>> {
  const trusted = await context.keys.trustedWriters()
  const drilled = catalog.complete.filter((backup) => (backup.receipts?.length ?? 0) > 0)
  const found = new Map<string, NonNullable<BackupView['drill']>>()
  for (let start = 0; start < drilled.length; start += RECEIPT_READS) {
    await Promise.all(
      drilled.slice(start, start + RECEIPT_READS).map(async ({manifest, receipts}) => {
        for (const name of [...receipts!].reverse()) {
          const key = objectKey(manifest.app, manifest.environment, manifest.id, name)
          const raw = await readSmallObject(context.store, key)
            .then((data) => JSON.parse(data.toString('utf8')) as unknown)
            .catch(() => {})
          const receipt = readReceipt(raw, manifest.id, trusted)
          if (receipt === undefined) continue
          found.set(manifest.id, {endedAt: receipt.endedAt, passed: receipt.passed, summary: describeReceipt(receipt)})
          return
        }
      }),
    )
  }

  return found
}

/** How far the hint below looks into a store: enough for any store of one app, bounded for a shared one. */
const HINT_SCAN_LIMIT = 10_000

/**
 * An environment with no backups, in a store that holds other ones: most likely a config that names
 * another environment (or app) than the backups were taken as. Says which, so that the user is not left
 * to think the backups are gone.
 */
async function hintAtOtherEnvironments(context: BackupContext): Promise<void> {
  // Only a hint: bounded as the calls before a transfer are, and silent when the store does not answer.
  const found = await storeCall(context, 'its listing', environmentsInStore(context)).catch((error: unknown) => {
    if (context.signal.aborted) throw error
    return new Map<string, number>()
  })
  if (found.size === 0) return
  const {app, configSource, name} = context.env
  const listed = [...found].map(([environment, count]) => `${environment} (${countOf(count, 'backup')})`).join(', ')
  const sameApp = [...found.keys()].filter((environment) => environment.startsWith(`${app}/`))
  context.reporter.notice(
    `hint: ${app}/${name} has no backups, but the store holds ${listed}. ` +
      (sameApp.length > 0
        ? `Pass -e ${sameApp[0].split('/')[1]}, or check the environment names in ${configSource}.`
        : `Check "app" in ${configSource}: backups are kept by app name.`),
  )
}

/** The app/environment pairs the store holds backups of, with how many, from the first keys of its listing. */
async function environmentsInStore(context: BackupContext): Promise<Map<string, number>> {
  const found = new Map<string, number>()
  let scanned = 0
  for await (const {key} of context.store.list('')) {
    if (++scanned > HINT_SCAN_LIMIT) break
    const parts = key.split('/')
    if (parts.length !== 4 || parts[3] !== MANIFEST_NAME) continue
    const environment = `${parts[0]}/${parts[1]}`
    found.set(environment, (found.get(environment) ?? 0) + 1)
  }

  return found
}

export function viewsOf(
  context: BackupContext,
  catalog: Catalog,
  options: ListOptions,
  drills: ReadonlyMap<string, BackupView['drill']> = new Map(),
): BackupView[] {
  const now = context.now()
  const decisions = decisionsById(decideRetention(context, catalog))
  const expiries = projectExpiry({
    backups: candidatesOf(catalog),
    nextSlotAfter: context.env.schedule ? (instant) => nextSlot(context.env.schedule!, instant) : undefined,
    now,
    policies: context.env.retention,
    timezone: timezoneOf(context),
  })
  const complete = catalog.complete.map((backup) => {
    const decision = decisions.get(backup.manifest.id)!
    const {expiresAt, keptAtLeastUntil, note} = expiries.get(backup.manifest.id)!
    // On-demand is a tier by definition; scheduled tiers exist only while a tier keeps the backup.
    const tier = decision.tier ?? (backup.manifest.trigger === 'on-demand' ? 'on-demand' : null)
    return viewOfComplete(
      backup,
      {...decision, expiresAt, expiry: note, keptAtLeastUntil, tier},
      drills.get(backup.manifest.id) ?? null,
    )
  })
  const graceMs = context.env.retention.incompleteGraceHours * 60 * 60 * 1000
  const incomplete = options.all
    ? catalog.incomplete.map((backup) =>
        viewOfIncomplete(
          backup,
          now.getTime() - backup.lastModifiedAt.getTime() > graceMs
            ? 'incomplete, older than the grace period: prune removes it'
            : `incomplete: never committed; prune removes it once untouched for ${context.env.retention.incompleteGraceHours} h`,
        ),
      )
    : []
  // Damaged backups are always shown: they are committed, and the user has to decide about them.
  const damaged = catalog.damaged.map((backup) =>
    viewOfDamaged(backup, 'damaged: kept until you delete it; prune never removes what it cannot authenticate'),
  )
  return [...complete, ...damaged, ...incomplete]
    .filter((view) => options.trigger === undefined || view.trigger === options.trigger)
    .sort(newestFirst)
}
