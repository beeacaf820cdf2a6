import {ContextRequest} from '../cli/context.js'
import {BackupError, ErrorCode, ExitCodeValue} from '../errors.js'
import {RestoreConfirmation} from '../services/restore.js'

/**
 * What the main thread sends the service thread: a service to run, then perhaps a request to stop it,
 * and the answer to each confirmation it asked for. Each names its run, so that nothing late from one
 * command reaches the next.
 */
export type ToServiceThread =
  | {
      context: ContextRequest
      cwd: string
      interactive: boolean
      kind: 'run'
      options: unknown
      run: number
      service: string
      variables: Record<string, string | undefined>
      verbose: boolean
    }
  | {error?: SentError; kind: 'confirmed'; run: number}
  | {kind: 'abort'; reason: SentError; run: number}

/**
 * What the service thread sends back: what the reporter was told, a confirmation to ask the person
 * (on the main thread, which has the terminal), then one result or one error.
 */
export type FromServiceThread = {run: number} & (
  | {bytes: number; kind: 'advance'; progress: number}
  | {confirmation: RestoreConfirmation; kind: 'confirm'}
  | {error: SentError; kind: 'error'}
  | {estimated?: boolean; kind: 'expect'; progress: number; totalBytes: number}
  | {kind: 'detail'; message: string}
  | {kind: 'done'; progress: number}
  | {kind: 'notice'; message: string}
  | {kind: 'progress'; label: string; progress: number; totalBytes?: number}
  | {kind: 'result'; value: unknown}
)

/**
 * An error on its way between threads. Structured cloning keeps an Error's message and stack but not
 * its own fields, so a BackupError's code, suggestion and exit code travel beside them.
 */
export interface SentError {
  code?: ErrorCode
  exitCode?: ExitCodeValue
  message: string
  name: string
  stack?: string
  suggestion?: string
}

export function sendableError(error: unknown): SentError {
  if (error instanceof BackupError) {
    const {code, exitCode, message, name, stack, suggestion} = error
    return {code, exitCode, message, name, stack, suggestion}
  }

  const {message, name, stack} = error instanceof Error ? error : new Error(String(error))
  return {message, name, stack}
}

/** The error as it was thrown, as near as it can be: a BackupError again, or an Error of the same name. */
export function receivedError(sent: SentError): Error {
  const error =
    sent.code === undefined
      ? Object.assign(new Error(sent.message), {name: sent.name})
      : new BackupError(sent.code, sent.message, {exitCode: sent.exitCode, suggestion: sent.suggestion})
  if (sent.stack !== undefined) error.stack = sent.stack
  return error
}
