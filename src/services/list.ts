import {BackupView, viewOfComplete, viewOfDamaged, viewOfIncomplete} from '../domain/backup.js'
import {newestFirst} from '../domain/ids.js'
import {projectExpiry} from '../domain/retention.js'
import {nextSlot} from '../domain/schedule.js'
import {Catalog, catalogOf} from './catalog.js'
import {BackupContext} from './context.js'
import {checkForRollback} from './machine-state.js'
import {candidatesOf, decideRetention, decisionsById, timezoneOf} from './retention.js'

export interface ListOptions {
  /** Include incomplete backups. */
  all: boolean
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
  return viewsOf(context, catalog, options)
}

export function viewsOf(context: BackupContext, catalog: Catalog, options: ListOptions): BackupView[] {
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
    const {expiresAt, note} = expiries.get(backup.manifest.id)!
    // On-demand is a tier by definition; scheduled tiers exist only while a tier keeps the backup.
    const tier = decision.tier ?? (backup.manifest.trigger === 'on-demand' ? 'on-demand' : null)
    return viewOfComplete(backup, {...decision, expiresAt, expiry: note, tier})
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
