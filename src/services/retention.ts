import {X25519Identity} from '../archive/age-keys.js'
import {Tier} from '../domain/backup.js'
import {applyRetention, RetentionCandidate, RetentionResult} from '../domain/retention.js'
import {BackupError, ExitCodeValue} from '../errors.js'
import {sweepStaleStaging} from '../lib/staging.js'
import {collectPacks, PackCollectionResult, RepackResult} from '../media-format/packs/collection.js'
import {repackPacks} from '../media-format/packs/repack.js'
import {Catalog, catalogOf} from './catalog.js'
import {assertClockTrusted} from './clock.js'
import {BackupContext} from './context.js'
import {deleteBackup} from './delete.js'

export interface PruneDecision {
  id: string
  reason: string
  /** For a kept complete backup, the tier that keeps it (null for a pin); absent otherwise. */
  tier?: null | Tier
}

/** `prune` --json: stable contract (docs/output.md). */
export interface PruneResult {
  dryRun: boolean
  keep: PruneDecision[]
  /** Incremental media only: the packs that no kept backup references, collected in two phases. */
  packs?: PackCollectionResult
  remove: PruneDecision[]
}

export function candidatesOf(catalog: Catalog): RetentionCandidate[] {
  return catalog.complete.map(({manifest, pinned}) => ({
    createdAt: manifest.createdAt,
    id: manifest.id,
    pinned,
    trigger: manifest.trigger,
  }))
}

export function timezoneOf(context: BackupContext): string {
  return context.env.schedule?.timezone ?? 'UTC'
}

export function decideRetention(context: BackupContext, catalog: Catalog): RetentionResult {
  return applyRetention(candidatesOf(catalog), context.env.retention, context.now(), timezoneOf(context))
}

/** id → decision, for views. */
export function decisionsById(
  result: RetentionResult,
): Map<string, {keep: boolean; reason: string; tier: null | Tier}> {
  const decisions = new Map<string, {keep: boolean; reason: string; tier: null | Tier}>()
  for (const {id, reason, tier} of result.keep) decisions.set(id, {keep: true, reason, tier})
  for (const {id, reason} of result.remove) decisions.set(id, {keep: false, reason, tier: null})
  return decisions
}

/**
 * What prune would do: every complete backup by the policy, and incomplete ones by age. An incomplete
 * backup is removed only once nothing has written to it for the grace period, so that a backup still
 * running elsewhere is left alone.
 */
export function planPrune(context: BackupContext, catalog: Catalog): PruneResult {
  const decided = decideRetention(context, catalog)
  const graceHours = context.env.retention.incompleteGraceHours
  const now = context.now().getTime()
  const keep: PruneDecision[] = decided.keep.map(({id, reason, tier}) => ({id, reason, tier}))
  const remove: PruneDecision[] = decided.remove.map(({id, reason}) => ({id, reason}))
  // Nothing in a damaged backup can be believed, its dates and trigger least of all: keep it, and say so.
  for (const backup of catalog.damaged) {
    keep.push({
      id: backup.id,
      reason: `damaged (${backup.reason}); prune never removes what it cannot authenticate: check it with \`divio app backup verify ${backup.id}\`, then delete it by hand`,
    })
  }

  for (const backup of catalog.incomplete) {
    const idleHours = (now - backup.lastModifiedAt.getTime()) / 3_600_000
    if (idleHours > graceHours) {
      remove.push({
        id: backup.id,
        reason: `incomplete, untouched for ${formatHours(idleHours)} (grace period ${graceHours} h)`,
      })
    } else {
      keep.push({
        id: backup.id,
        reason: `incomplete, untouched for ${formatHours(idleHours)}: within the ${graceHours} h grace period, it may still be running`,
      })
    }
  }

  return {dryRun: true, keep: sortById(keep), remove: sortById(remove)}
}

/**
 * The plan for the store. Unless `dryRun`, it also removes the staging folders of processes that no
 * longer run (a killed create's plaintext snapshot, for one); a running process's are left alone.
 */
export async function readPrunePlan(context: BackupContext, options: {dryRun?: boolean} = {}): Promise<PruneResult> {
  if (!options.dryRun) await sweepStaleStaging(context.tempRoot)
  const catalog = await catalogOf(context)
  assertClockTrusted(
    context,
    catalog,
    options.dryRun ? 'Prune cannot say what retention would remove' : 'Prune removed nothing',
  )
  const plan = planPrune(context, catalog)
  const removing = new Set(plan.remove.map((decision) => decision.id))
  const packs = await collectPacks(context, catalog, {dryRun: true, removing})
  if (packs === undefined) return plan
  const repacked = await repack(context, catalog, {dryRun: true, identities: await identitiesIfAny(context), removing})
  return {...plan, packs: {...packs, ...(repacked ? {repacked} : {})}}
}

/** Deletes what a plan removes, each backup manifest-first; returns the plan as carried out. */
export async function executePrune(context: BackupContext, plan: PruneResult): Promise<PruneResult> {
  for (const {id} of plan.remove) {
    context.signal.throwIfAborted()
    await deleteBackup(context, id)
  }

  if (plan.packs === undefined) return {...plan, dryRun: false}
  // Packs last, each step from a fresh reading of the store: a backup committed meanwhile keeps what
  // it references. Repacking first, so that the packs it supersedes are condemned in the same run.
  const identities = await identitiesIfAny(context)
  const repacked = await repack(context, await catalogOf(context), {dryRun: false, identities, removing: new Set()})
  const packs = await collectPacks(context, await catalogOf(context), {
    dryRun: false,
    identities: typeof identities === 'string' ? undefined : identities,
    removing: new Set(),
  })
  return {...plan, dryRun: false, ...(packs ? {packs: {...packs, ...(repacked ? {repacked} : {})}} : {})}
}

/**
 * The failure a prune ends with after doing the rest, when its pack work did not run for a fault (a
 * damaged backup, an index that cannot be read): a store that would otherwise grow unseen, prune after
 * prune, each exiting 0. Undefined when there is none; a setting of this machine (no identity, no
 * writer key) is not one, and is only said.
 */
export function packWorkFailure(result: PruneResult): BackupError | undefined {
  const {dryRun, packs} = result
  const were = dryRun ? 'would be' : 'were'
  const collection = packs?.fault ? {fault: packs.fault, what: `collected`, why: packs.skipped} : undefined
  const repacking = packs?.repacked?.fault
    ? {fault: packs.repacked.fault, what: 'repacked', why: packs.repacked.skipped}
    : undefined
  const failed = collection ?? repacking
  if (failed === undefined) return undefined
  const done = dryRun ? 'Retention would be applied' : 'Retention was applied'
  return new BackupError(failed.fault.code, `${done}, but no packs ${were} ${failed.what}: ${failed.why}.`, {
    exitCode: failed.fault.exitCode as ExitCodeValue,
    suggestion: failed.fault.suggestion,
  })
}

/** The identity, or why there is none: repacking and checking a copy need it; collecting does not. */
async function identitiesIfAny(context: BackupContext): Promise<string | X25519Identity[]> {
  try {
    return await context.keys.identities()
  } catch (error) {
    if (!(error instanceof BackupError)) throw error
    return error.message
  }
}

/** Repacking needs the identity to read the indexes; without it, prune only deletes whole packs. */
async function repack(
  context: BackupContext,
  catalog: Catalog,
  options: {dryRun: boolean; identities: string | X25519Identity[]; removing: ReadonlySet<string>},
): Promise<RepackResult | undefined> {
  const {identities} = options
  if (typeof identities === 'string') {
    return {
      deferred: 0,
      freedBytes: 0,
      from: [],
      into: [],
      liveBytes: 0,
      skipped: `no identity to read the indexes with (${identities})`,
    }
  }

  return repackPacks(context, catalog, {...options, identities})
}

/**
 * The retention run that follows a successful create: the policy of that trigger only, so that an
 * on-demand backup never causes scheduled ones to be deleted, and the reverse. `created`: the backup
 * just committed, whose time in the store checks the clock too. Nothing is deleted on a clock that
 * cannot be trusted (services/clock.ts).
 */
export async function retentionAfterCreate(
  context: BackupContext,
  trigger: 'on-demand' | 'scheduled',
  created?: string,
): Promise<PruneDecision[]> {
  const catalog = await catalogOf(context)
  assertClockTrusted(
    context,
    catalog,
    created === undefined
      ? 'Retention was not applied'
      : `Backup ${created} is complete, but retention was not applied`,
    created,
  )
  const triggers = new Map(catalog.complete.map(({manifest}) => [manifest.id, manifest.trigger]))
  const removals = decideRetention(context, catalog).remove.filter(({id}) => triggers.get(id) === trigger)
  for (const {id} of removals) await deleteBackup(context, id)
  return removals.map(({id, reason}) => ({id, reason}))
}

function sortById(decisions: PruneDecision[]): PruneDecision[] {
  return decisions.sort((a, b) => b.id.localeCompare(a.id))
}

function formatHours(hours: number): string {
  return hours < 48 ? `${hours.toFixed(1)} h` : `${(hours / 24).toFixed(1)} days`
}
