import {Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {colourFor} from '../../../cli/calendar.js'
import {renderPackCollection, renderPrune} from '../../../cli/render.js'
import {confirmEnvironment} from '../../../cli/terminal.js'
import {countOf} from '../../../domain/format.js'
import {executePrune, packWorkFailure, PruneResult, readPrunePlan} from '../../../services/retention.js'

export type PruneCommandResult = PruneResult

export default class Prune extends BackupCommand {
  static override description = `Apply the retention policies: print keep or remove, with the reason, for every backup, then remove.

Also removes incomplete backups that nothing has written to for the grace period (24 h by default), never younger ones. Asks for the environment name to be typed; without a terminal, --confirm ENV is required.`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %> --dry-run',
      description: 'Show what the retention policies keep and remove, with reasons, and change nothing.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> -e live --confirm live --json',
      description: 'Apply the policies to live from a script, and print the decisions as JSON.',
    },
  ]
  static override flags = {
    confirm: Flags.string({description: 'Confirm without a prompt by naming the environment.'}),
    'dry-run': Flags.boolean({description: 'Only print what would be kept and removed.'}),
  }

  async run(): Promise<PruneCommandResult> {
    const {flags} = await this.parse(Prune)
    const context = await this.context(flags)
    const plan = await readPrunePlan(context, {dryRun: flags['dry-run']})
    const calendar = {
      colour: colourFor(process.stdout, process.env, flags.color),
      lastDay: context.now().toISOString().slice(0, 10),
    }
    const packWork = plan.packs
      ? plan.packs.condemned.length +
        plan.packs.deleted.length +
        plan.packs.pardoned.length +
        plan.packs.leftovers.length +
        (plan.packs.repacked?.from.length ?? 0)
      : 0
    if (flags['dry-run'] || (plan.remove.length === 0 && packWork === 0)) {
      const result = {...plan, dryRun: flags['dry-run']}
      return this.ended(result, renderPrune(plan, flags['dry-run'] ? 'dry-run' : 'plan', calendar))
    }

    if (!this.jsonEnabled()) this.log(renderPrune(plan, 'plan', calendar))
    await confirmEnvironment({
      action:
        plan.remove.length > 0
          ? `remove ${countOf(plan.remove.length, 'backup')} of ${context.env.app}/${context.env.name}`
          : `collect the unreferenced packs of ${context.env.app}/${context.env.name}`,
      confirm: flags.confirm,
      environment: context.env.name,
    })
    const result = await executePrune(context, plan)
    const removed = result.remove.map(({id}) => id)
    return this.ended(
      result,
      `Removed ${countOf(removed.length, 'backup')}${removed.length > 0 ? `: ${removed.join(', ')}` : ''}.${result.packs ? ` ${renderPackCollection(result.packs, false)}` : ''}`,
    )
  }

  /** Prints the report, then fails if the pack work did not run for a fault: the report is printed either way. */
  private ended(result: PruneResult, report: string): PruneCommandResult {
    const failure = packWorkFailure(result)
    if (failure && this.jsonEnabled()) {
      process.exitCode = failure.exitCode
      return result
    }

    this.log(report)
    if (failure) throw failure
    return result
  }
}
