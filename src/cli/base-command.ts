import {Command, Errors, Flags, Interfaces} from '@oclif/core'

import {redactDsn} from '../config/load.js'
import {BackupError} from '../errors.js'
import {startStopDeadline} from '../lib/guards.js'
import {traceProcesses} from '../lib/process.js'
import {ownStagingTag, tempFolderError} from '../lib/staging.js'
import {onServiceThread} from '../service-thread/run.js'
import {ThreadServiceName, ThreadServiceOptions, ThreadServiceResult} from '../service-thread/services.js'
import {BackupContext, ServiceSetup} from '../services/context.js'
import {RestoreConfirmation} from '../services/restore.js'
import {ContextRequest, serviceContext, serviceSetup, tempRootOf} from './context.js'
import {spellCommands} from './host.js'
import {nearestName} from './nearest.js'
import {terminalReporter} from './terminal.js'

/**
 * How long a command has to stop cleanly after SIGINT/SIGTERM before it ends by the signal itself: a
 * clean stop takes well under a second, unless a call into the kernel never returns (a hung mount).
 */
export const STOP_GRACE_MS = 10_000

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<
  (typeof BackupCommand)['baseFlags'] & T['flags']
>

/**
 * Shared by every `app backup` command: --env/--config/--json, building the service context, SIGINT and
 * SIGTERM handling, and mapping errors to one message, one suggestion and a documented exit code.
 */
export abstract class BackupCommand extends Command {
  static override baseFlags = {
    color: Flags.boolean({
      allowNo: true,
      description: 'Colour the pictures (default: on a terminal, unless NO_COLOR is set); --no-color for plain ASCII.',
      helpGroup: 'GLOBAL',
    }),
    config: Flags.string({
      description: 'Config file to use instead of the nearest .divio/backups.json.',
      helpGroup: 'GLOBAL',
    }),
    env: Flags.string({
      char: 'e',
      description: "Environment to act on (default: the config's defaultEnvironment, or its only one).",
      helpGroup: 'GLOBAL',
    }),
    help: Flags.help({char: 'h', description: 'Show this help.', helpGroup: 'GLOBAL'}),
    verbose: Flags.boolean({
      description:
        'Show each stage with its timing, and every program started with its arguments (never secrets), on stderr.',
      helpGroup: 'GLOBAL',
    }),
  }
  static override enableJsonFlag = true
  protected readonly abort = new AbortController()
  private drainHandler?: () => void
  private reported = false
  private signalHandler?: (signal: NodeJS.Signals) => void
  private stopAsked?: {at: number; signal: NodeJS.Signals}

  override async catch(error: Error & {exitCode?: number}): Promise<unknown> {
    // After SIGINT/SIGTERM, whatever a stage failed with on the way down (an AbortError, a stream cut
    // short that looks damaged) is the interruption the user asked for, unless it says so itself.
    const interrupted =
      this.abort.signal.aborted && !(error instanceof BackupError && error.code === 'INTERRUPTED')
        ? (this.abort.signal.reason as BackupError)
        : undefined
    const mapped =
      interrupted ?? this.usageError(error) ?? toUserError(tempFolderError(error, tempRootOf(process.env)) ?? error)
    if (mapped === undefined) return super.catch(error)
    this.report(mapped)
    if (process.env.DEBUG && error.stack) process.stderr.write(`${error.stack}\n`)
    if (this.jsonEnabled()) return
    // The error is printed: the exit must add nothing. A host checks `instanceof ExitError` against its
    // own copy of @oclif/core, so it would print ours as "EEXIT: 3"; this flag is read across copies.
    const alreadyReported = new Errors.ExitError(mapped.exitCode)
    alreadyReported.skipOclifErrorHandling = true
    throw alreadyReported
  }

  protected async context(flags: {config?: string; env?: string; verbose?: boolean}): Promise<BackupContext> {
    return serviceContext(this.setup(flags), this.contextRequest(flags))
  }

  /** Which environment the flags name, for a context built here or on the service thread. */
  protected contextRequest(flags: {config?: string; env?: string}): ContextRequest {
    return {
      configPath: flags.config,
      environment: flags.env,
      toolVersion: this.ctor.plugin?.version ?? this.config.version,
    }
  }

  protected override async finally(error: Error | undefined): Promise<unknown> {
    this.releaseSignals()

    if (this.drainHandler) process.off('beforeExit', this.drainHandler)
    traceProcesses()

    return super.finally(error)
  }

  override async init(): Promise<void> {
    await super.init()
    // The first signal asks the running operation to stop cleanly (abort uploads, write no manifest),
    // and gives it STOP_GRACE_MS; a second one, or the deadline's, ends the process at once.
    this.signalHandler = (signal) => {
      if (this.stopAsked) return this.stopNow(signal, this.stopAsked)
      process.stderr.write(`\nReceived ${signal}: stopping cleanly (press Ctrl-C again to exit at once)…\n`)
      this.stopAsked = {at: Date.now(), signal}
      startStopDeadline(signal, STOP_GRACE_MS, {root: tempRootOf(process.env), tag: ownStagingTag()})
      this.abort.abort(new BackupError('INTERRUPTED', `Interrupted by ${signal}.`))
    }

    process.on('SIGINT', this.signalHandler)
    process.on('SIGTERM', this.signalHandler)
    // Node exits when nothing is left to wait for, even while a promise is pending: with code 13 and no
    // output at all. That is always a bug (a stage that neither ended nor failed), and it must still
    // read as a failure that says so, never as silence.
    this.drainHandler = () => {
      process.off('beforeExit', this.drainHandler!)
      this.report(
        new BackupError('INTERNAL', 'The command stopped before it finished: a stage neither completed nor failed.', {
          suggestion:
            'Nothing was committed by this run. Run it again with DEBUG=* and report the output (check it for secrets first).',
        }),
      )
    }

    process.on('beforeExit', this.drainHandler)
  }

  /** One line for what went wrong, one for what to do; unwrapped, so that logs and grep keep them whole. */
  /** Human output, with commands spelled the way this host spells them. */
  override log(message = '', ...args: unknown[]): void {
    super.log(spellCommands(message, this.config), ...args)
  }

  /**
   * Runs a service that streams a backup's data on the service thread (service-thread/run.ts), with the
   * environment the flags name, this command's reporter and its SIGINT/SIGTERM signal.
   */
  protected onServiceThread<Name extends ThreadServiceName>(
    service: Name,
    flags: {config?: string; env?: string; verbose?: boolean},
    options: ThreadServiceOptions<Name>,
    confirm?: (confirmation: RestoreConfirmation) => Promise<void>,
  ): Promise<ThreadServiceResult<Name>> {
    return onServiceThread(service, options, {
      confirm,
      context: this.contextRequest(flags),
      reporter: this.setup(flags).reporter,
      signal: this.abort.signal,
      verbose: flags.verbose === true,
    })
  }

  /** What every service gets from the command line and the process, before any config is read. */
  protected setup(flags: {verbose?: boolean}): ServiceSetup {
    return serviceSetup({
      cwd: process.cwd(),
      reporter: terminalReporter(process.stderr, {verbose: flags.verbose}),
      signal: this.abort.signal,
      variables: process.env,
      verbose: flags.verbose,
    })
  }

  /** Takes back the SIGINT/SIGTERM handlers: the host's own handling, or the signals' default, again. */
  private releaseSignals(): void {
    if (!this.signalHandler) return
    process.off('SIGINT', this.signalHandler)
    process.off('SIGTERM', this.signalHandler)
  }

  private report(unspelled: BackupError): void {
    const error = new BackupError(unspelled.code, spellCommands(unspelled.message, this.config), {
      exitCode: unspelled.exitCode,
      suggestion: unspelled.suggestion === undefined ? undefined : spellCommands(unspelled.suggestion, this.config),
    })
    process.exitCode = error.exitCode
    this.reported = true
    // Interrupted, the command is on its way out: from here a signal ends it at once, by its default
    // action. Left to `finally`, the handlers' removal could lose a second signal sent as soon as this
    // is read (caught, but not yet passed to them), and the process then waited out the grace period.
    if (this.stopAsked) this.releaseSignals()
    if (this.jsonEnabled()) {
      this.logJson({error: error.toJSON()})
      return
    }

    process.stderr.write(`Error: ${error.message}\n${error.suggestion ? `Try this: ${error.suggestion}\n` : ''}`)
  }

  /**
   * Ends the process by `signal`'s default action, now: the one way out while a thread waits in a call
   * that never returns, where process.exit() would wait with it (startStopDeadline). The interruption is
   * reported first if the command has not reported it; whatever had not finished is not committed (a
   * backup is listed, and a restore swapped in, only once whole). A shell sees 128 + the signal's number.
   */
  private stopNow(signal: NodeJS.Signals, asked: {at: number; signal: NodeJS.Signals}): void {
    const seconds = STOP_GRACE_MS / 1000
    const late = Date.now() - asked.at >= STOP_GRACE_MS - 500
    if (!this.reported) {
      this.report(
        new BackupError(
          'INTERRUPTED',
          late
            ? `Interrupted by ${asked.signal}, and still running ${seconds} s later: a call to the file system has not returned (a hung mount, or a special file where a file was expected).`
            : `Interrupted by ${asked.signal}, then stopped at once by ${signal}.`,
          {
            suggestion: late
              ? 'Nothing unfinished was committed. Check the mounts of the store, the media, the key files and DIVIO_BACKUP_TMPDIR, then run the command again.'
              : 'Nothing unfinished was committed. Run the command again when you are ready.',
          },
        ),
      )
    }

    process.removeAllListeners(signal)
    process.kill(process.pid, signal)
  }

  /**
   * oclif's parse errors (an unknown flag, a missing argument, a bad option value) as the same two
   * lines and JSON error as every other error, with exit 2, the nearest flag for a typo, and the help
   * command spelled the way this host spells it.
   */
  private usageError(error: Error): BackupError | undefined {
    const parse = error as Error & {code?: string; flags?: string[]; oclif?: {exit?: number}; parse?: unknown}
    if (parse.parse === undefined && (parse.oclif?.exit !== 2 || parse.code === 'EEXIT')) return undefined
    let lines = error.message
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('See more help') && !line.startsWith('Note:'))
      .filter((line) => !/^(provide all arguments|Alternatively, you can use|beginning of arguments)/.test(line))
    // Several problems at once: the first is enough to act on.
    if (lines[0]?.startsWith('The following errors occurred')) lines = lines.slice(1, 2)
    const message = lines.join(' ').replaceAll(/\s+/g, ' ')
    const help = `Run \`${this.config.bin} ${(this.id ?? '').split(':').join(this.config.topicSeparator)} --help\` for the usage.`
    const known = Object.keys({...this.ctor.baseFlags, ...this.ctor.flags, json: true})
    const typos = (parse.flags ?? []).map((flag) => flag.replace(/^--?/, '').split('=')[0])
    const nearest = typos.map((typo) => nearestName(typo, known)).find((name) => name !== undefined)
    return new BackupError('USAGE', message.endsWith('.') ? message : `${message}.`, {
      suggestion: nearest ? `Did you mean --${nearest}? ${help}` : help,
    })
  }
}

/** Every error a user sees passes through here: typed errors as they are, anything else redacted. */
function toUserError(error: Error & {exitCode?: number; oclif?: unknown}): BackupError | undefined {
  if (error instanceof BackupError) {
    return new BackupError(error.code, redactDsn(error.message), {
      exitCode: error.exitCode,
      suggestion: error.suggestion === undefined ? undefined : redactDsn(error.suggestion),
    })
  }

  // oclif's own errors (unknown flags, missing arguments) already carry their message and exit code.
  if (error.oclif !== undefined) return undefined
  return new BackupError('INTERNAL', `Unexpected error: ${redactDsn(error.message)}`, {
    suggestion:
      'Run again with DEBUG=* for details; if it persists, report it with that output (check it for secrets first).',
  })
}
