import {formatBytes, truncate} from '../domain/format.js'
import {BackupError} from '../errors.js'
import {noProgress, Progress, Reporter} from '../services/context.js'

/** Progress goes to stderr, and is drawn only when stderr is a terminal; notices always go to stderr. */
export function terminalReporter(
  stream: NodeJS.WriteStream = process.stderr,
  options: {verbose?: boolean} = {},
): Reporter {
  const interactive = stream.isTTY === true
  return {
    detail(message) {
      // On its own line: a progress line being drawn is cleared first, and redrawn by its next update.
      if (options.verbose) stream.write(`${interactive ? '\r\u001B[2K' : ''}verbose: ${message}\n`)
    },
    interactive,
    notice(message) {
      stream.write(`${message}\n`)
    },
    progress(label, totalBytes) {
      return interactive ? new TerminalProgress(stream, label, totalBytes) : noProgress
    },
  }
}

/** The width of a progress line's label: `database.sqlite3.zst.age`, the longest object name, fits. */
const LABEL_WIDTH = 24
/** How often the line is redrawn. */
const REDRAW_MS = 100
const BAR_WIDTH = 24

/**
 * One line, redrawn in place: `media  [#####.....] 12.0 MiB / ~31.5 MiB  45.1 MiB/s  0:03 left`. A total
 * that is an estimate is marked `~`; once the bytes pass it, only the bytes and the rate are shown.
 */
class TerminalProgress implements Progress {
  private bytes = 0
  private drawnAt = 0
  private estimated = false
  private readonly startedAt = Date.now()

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly label: string,
    private totalBytes?: number,
  ) {}

  advance(bytes: number): void {
    this.bytes += bytes
    const now = Date.now()
    if (now - this.drawnAt < REDRAW_MS) return
    this.drawnAt = now
    this.draw(now)
  }

  done(): void {
    this.stream.write('\r\u001B[2K')
  }

  expect(totalBytes: number, options: {estimated?: boolean} = {}): void {
    this.totalBytes = totalBytes
    this.estimated = options.estimated ?? false
  }

  private draw(now: number): void {
    const seconds = Math.max((now - this.startedAt) / 1000, 0.001)
    const rate = this.bytes / seconds
    // One width for every label (the longest object name is 24 characters), so that bars line up.
    const parts = [truncate(this.label, LABEL_WIDTH).padEnd(LABEL_WIDTH)]
    const total = this.totalBytes
    if (total !== undefined && total > 0 && this.bytes <= total) {
      const filled = Math.min(BAR_WIDTH, Math.round((this.bytes / total) * BAR_WIDTH))
      parts.push(
        `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}]`,
        `${formatBytes(this.bytes)} / ${this.estimated ? '~' : ''}${formatBytes(total)}`,
        ` ${formatBytes(rate)}/s`,
      )
      if (this.bytes > 0) parts.push(` ${formatDuration((total - this.bytes) / rate)} left`)
    } else {
      parts.push(formatBytes(this.bytes), ` ${formatBytes(rate)}/s`)
    }

    this.stream.write(`\r\u001B[2K${parts.join(' ')}`)
  }
}

/** Time left as `m:ss`, or `h:mm:ss` from an hour. */
export function formatDuration(seconds: number): string {
  const whole = Math.max(0, Math.ceil(seconds))
  const hours = Math.floor(whole / 3600)
  const minutes = Math.floor((whole % 3600) / 60)
  const rest = String(whole % 60).padStart(2, '0')
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${rest}` : `${minutes}:${rest}`
}

/**
 * Asks for the environment name before a destructive action. `--confirm ENV` must name the target
 * environment exactly. Without a terminal and without --confirm the action is refused, never assumed.
 */
export async function confirmEnvironment(options: {
  action: string
  confirm?: string
  environment: string
}): Promise<void> {
  const {action, confirm, environment} = options
  if (confirm !== undefined) {
    if (confirm !== environment) {
      throw new BackupError(
        'CONFIRMATION_WRONG',
        `--confirm ${confirm} does not match the target environment "${environment}"; nothing was changed.`,
        {
          suggestion: `Pass --confirm ${environment} to ${action}.`,
        },
      )
    }

    return
  }

  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw new BackupError(
      'CONFIRMATION_REQUIRED',
      `Refusing to ${action} without confirmation: there is no terminal to ask on.`,
      {
        suggestion: `Pass --confirm ${environment} to confirm non-interactively.`,
      },
    )
  }

  // Loaded only here: the prompt library and its encodings cost every command's start-up otherwise.
  const {input} = await import('@inquirer/prompts')
  // The answer is judged below: the prompt must not mark it done with a green tick, right or wrong.
  const typed = await input(
    {
      message: `This will ${action}. Type the environment name (${environment}) to confirm:`,
      theme: {prefix: {done: '?', idle: '?'}},
    },
    {output: process.stderr},
  )
  if (typed.trim() !== environment) {
    throw new BackupError('CONFIRMATION_WRONG', `"${typed.trim()}" is not "${environment}"; nothing was changed.`, {
      suggestion: `Type ${environment} exactly, or pass --confirm ${environment}.`,
    })
  }
}

/** What `init` asks on a terminal for the settings its flags left out; an empty answer keeps the default. */
export async function askForSetup<T extends {env?: string; schedule?: string; store?: string; timezone?: string}>(
  flags: T,
): Promise<T> {
  const {input} = await import('@inquirer/prompts')
  const ask = async (message: string, given: string | undefined) =>
    given ?? ((await input({message}, {output: process.stderr})).trim() || undefined)
  const env = await ask('Environment name (empty: local):', flags.env)
  const store = await ask('Store, a folder or s3://bucket/prefix (empty: ./.divio/backups):', flags.store)
  const schedule = await ask('Daily backup time, HH:MM (empty: no schedule):', flags.schedule)
  const timezone =
    schedule === undefined ? undefined : await ask('Time zone of that time (empty: UTC):', flags.timezone)
  return {...flags, env, schedule, store, timezone}
}
