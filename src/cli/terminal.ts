import {formatBytes} from '../domain/format.js'
import {BackupError} from '../errors.js'
import {Progress, Reporter} from '../services/context.js'

/** Progress goes to stderr, and is drawn only when stderr is a terminal; notices always go to stderr. */
export function terminalReporter(stream: NodeJS.WriteStream = process.stderr): Reporter {
  return {
    notice(message) {
      stream.write(`${message}\n`)
    },
    progress(label, totalBytes) {
      if (!stream.isTTY) return {advance() {}, done() {}}
      return new TerminalProgress(stream, label, totalBytes)
    },
  }
}

class TerminalProgress implements Progress {
  private bytes = 0
  private drawnAt = 0
  private readonly startedAt = Date.now()

  constructor(
    private readonly stream: NodeJS.WriteStream,
    private readonly label: string,
    private readonly totalBytes?: number,
  ) {}

  advance(bytes: number): void {
    this.bytes += bytes
    const now = Date.now()
    if (now - this.drawnAt < 100) return
    this.drawnAt = now
    this.draw(now)
  }

  done(): void {
    this.stream.write('\r\u001B[2K')
  }

  private draw(now: number): void {
    const seconds = Math.max((now - this.startedAt) / 1000, 0.001)
    const rate = `${formatBytes(this.bytes / seconds)}/s`
    const width = 24
    let bar = ''
    if (this.totalBytes) {
      const filled = Math.min(width, Math.round((this.bytes / this.totalBytes) * width))
      bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] `
    }

    this.stream.write(`\r\u001B[2K${this.label.padEnd(14)} ${bar}${formatBytes(this.bytes)}  ${rate}`)
  }
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
  const typed = await input(
    {message: `This will ${action}. Type the environment name (${environment}) to confirm:`},
    {output: process.stderr},
  )
  if (typed.trim() !== environment) {
    throw new BackupError('CONFIRMATION_WRONG', `"${typed.trim()}" is not "${environment}"; nothing was changed.`, {
      suggestion: `Type ${environment} exactly, or pass --confirm ${environment}.`,
    })
  }
}
