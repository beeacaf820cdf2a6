import {Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {renderStatus} from '../../../cli/render-status.js'
import {formatDuration, parseDuration} from '../../../domain/duration.js'
import {BackupError, ExitCode} from '../../../errors.js'
import {renderMetrics} from '../../../proof/metrics.js'
import {backupStatus, StatusResult} from '../../../services/status.js'

export type StatusCommandResult = StatusResult

export default class Status extends BackupCommand {
  static override description = `Show whether every environment's backups are fresh: the newest complete backup and its age, the next scheduled slot, and damaged backups.

With --max-age it is a dead man's switch for cron and monitors: it exits 1 when an environment's newest complete backup is older than that, or when its store cannot be read. --format prometheus writes the metrics for node_exporter's textfile collector (docs/monitoring.md).`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %> --max-age 26h',
      description: 'Exit 1 when any environment has no complete backup from the last 26 hours.',
    },
    {
      command:
        '<%= config.bin %> <%= command.id %> --format prometheus --output /var/lib/node_exporter/textfile/divio-backup.prom',
      description: 'Write the metrics for node_exporter, replacing the file in one step.',
    },
  ]
  static override flags = {
    format: Flags.option({
      default: 'human',
      description: 'human: a table; prometheus: the text exposition format.',
      options: ['human', 'prometheus'] as const,
    })(),
    'max-age': Flags.string({
      description: 'Exit 1 when the newest complete backup of an environment is older than this (26h, 90m, 2d, 1h30m).',
    }),
    output: Flags.string({
      char: 'o',
      dependsOn: ['format'],
      description: 'With --format prometheus: the file to write (atomically) instead of stdout.',
    }),
  }

  async run(): Promise<StatusCommandResult> {
    const {flags} = await this.parse(Status)
    const maxAgeSeconds = flags['max-age'] === undefined ? undefined : parseDuration(flags['max-age'])
    if (flags['max-age'] !== undefined && maxAgeSeconds === undefined) {
      throw new BackupError('USAGE', `--max-age ${JSON.stringify(flags['max-age'])} is not a duration.`, {
        suggestion: 'Write it as a number and a unit: 26h, 90m, 2d, 1h30m or 3600s.',
      })
    }

    if (flags.output !== undefined && flags.format !== 'prometheus') {
      throw new BackupError('USAGE', '--output writes the Prometheus metrics, and needs --format prometheus.', {
        suggestion: 'Add --format prometheus, or leave --output out.',
      })
    }

    const result = await backupStatus(this.setup(flags), {
      configPath: flags.config,
      environment: flags.env,
      maxAgeSeconds,
      metricsFile: flags.output,
    })
    if (flags.format === 'human') this.log(renderStatus(result))
    // With --json, stdout is the JSON result alone; --output still gets the metrics.
    else if (flags.output === undefined && !this.jsonEnabled()) process.stdout.write(renderMetrics(result.environments))

    // What is late or unreadable fails the check and is said; a clock that cannot be trusted is said always.
    const said = result.environments.filter(
      (status) => status.clock !== undefined || (!result.ok && (status.late === true || status.error !== undefined)),
    )
    if (!this.jsonEnabled()) for (const status of said) process.stderr.write(`${lateLine(status, flags['max-age'])}\n`)

    // A dead man's switch: late or unknown is 1. Without --max-age an unreadable store is still a
    // failure, with the exit code of an unreachable store.
    const unreadable = result.environments.some((status) => status.error !== undefined)
    if (maxAgeSeconds !== undefined && !result.ok) process.exitCode = ExitCode.Failure
    else if (unreadable) process.exitCode = ExitCode.Unavailable
    return result
  }
}

function lateLine(status: StatusResult['environments'][number], maxAge?: string): string {
  const name = `${status.app}/${status.environment}`
  if (status.error) return `Error: ${name}: ${status.error.message}`
  if (status.clock) return `${status.late ? 'Late' : 'Warning'}: ${name}'s freshness cannot be judged: ${status.clock}.`
  if (status.newest === null || status.newest === undefined) return `Late: ${name} has no complete backup.`
  return `Late: ${name}'s newest complete backup is ${formatDuration(status.newest.ageSeconds)} old, older than --max-age ${maxAge}.`
}
