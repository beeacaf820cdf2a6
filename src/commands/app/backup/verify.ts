import {Args, Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {renderVerify, renderVerifySummary} from '../../../cli/render.js'
import {countOf} from '../../../domain/format.js'
import {BackupError} from '../../../errors.js'
import {VerifyResult} from '../../../services/verify.js'

export type VerifyCommandResult = VerifyResult | VerifyResult[]

export default class Verify extends BackupCommand {
  static override args = {
    id: Args.string({description: 'Backup id (or a unique prefix of it), or "latest" (the default).'}),
  }
  static override description = `Read a backup back from the store and check it: every object's size and SHA-256, age authentication of every chunk, and every media file against the backup's listing.

Exits non-zero (4) naming each bad object when anything does not match.`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %>',
      description: 'Read the newest backup back and check every checksum and signature.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> 20261128T020000Z-k3m9qa',
      description: 'Check one backup.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> --all --json',
      description: 'Check every complete backup, and print the results as JSON (exit 4 if any is bad).',
    },
  ]
  static override flags = {
    all: Flags.boolean({description: 'Verify every complete backup of the environment (instead of one ID).'}),
    sample: Flags.integer({
      description:
        "Incremental media: read this percentage of each backup's packs (at least one), chosen at random, instead of every blob.",
      max: 100,
      min: 1,
    }),
  }

  async run(): Promise<VerifyCommandResult> {
    const {args, flags} = await this.parse(Verify)
    // Checked here rather than with oclif's `exclusive`, which cannot name an argument in the usage line.
    if (flags.all && args.id !== undefined) {
      throw new BackupError('USAGE', `Give a backup ID or --all, not both.`, {
        suggestion: `Run \`divio app backup verify ${args.id}\` for one backup, or \`divio app backup verify --all\` for every one.`,
      })
    }

    const options = {samplePercent: flags.sample}
    const results = flags.all
      ? await this.onServiceThread('verify all', flags, options)
      : [await this.onServiceThread('verify', flags, {...options, reference: args.id ?? 'latest'})]
    const bad = results.filter((result) => !result.ok)
    const damaged = bad.filter((result) => result.error === undefined)
    const unchecked = bad.filter((result) => result.error !== undefined)
    // Damage outranks a missing key: exit 4 if any backup failed its checks, else 5 if some could not
    // be opened here. The report is the useful part of a failure: it is printed either way.
    const failure =
      damaged.length > 0 ? integrityFailure(damaged) : unchecked.length > 0 ? keysFailure(unchecked) : undefined
    if (failure && this.jsonEnabled()) {
      process.exitCode = failure.exitCode
      return flags.all ? results : results[0]
    }

    this.log(renderVerify(results))
    if (flags.all) this.log(renderVerifySummary(results))
    if (failure) throw failure
    return flags.all ? results : results[0]
  }
}

function integrityFailure(damaged: readonly VerifyResult[]): BackupError {
  const names = damaged.flatMap((result) =>
    result.objects.filter((object) => !object.ok).map((object) => `${result.id}/${object.name}`),
  )
  return new BackupError('INTEGRITY', `Verification failed: ${names.join(', ')}.`, {
    suggestion: names.some((name) => name.includes('/packs'))
      ? 'Do not rely on the failed backup. Take a new one: `create` does not build on a pack that is missing, or that failed a check here, and stores those files again. Delete the failed backup once the new one verifies, and look for what removes or changes objects in the store.'
      : 'Do not rely on the failed backup; take a new one, and check the store for disk or transfer problems.',
  })
}

function keysFailure(unchecked: readonly VerifyResult[]): BackupError {
  const [first] = unchecked
  return new BackupError(
    first.error!.code,
    `${countOf(unchecked.length, 'backup')} could not be checked with the keys of this machine: ${unchecked.map(({id}) => id).join(', ')}.`,
    {
      suggestion:
        'Point DIVIO_BACKUP_IDENTITY_FILE at the secret key those backups were encrypted to, and verify again.',
    },
  )
}
