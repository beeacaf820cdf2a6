import {setTimeout as sleep} from 'node:timers/promises'

import {post} from '../lib/http-post.js'
import {run} from '../lib/process.js'

/**
 * Notification hooks: what a backup run tells the outside world. Three kinds, any of them per
 * environment (config `notify`):
 * - `webhook`: a POST of a JSON body (the event, the backup's view, the error code) to a URL;
 * - `ping`: healthchecks.io-style URLs: `<url>/start` when a run starts, `<url>` on success, `<url>/fail`
 *   on a failure or a failed drill, so that the service alerts when pings stop or say "fail";
 * - `command`: a program run with `sh -c`, the body on stdin and the event in DIVIO_BACKUP_EVENT.
 *
 * A hook never fails the backup it reports on: each is tried a bounded number of times, each try
 * bounded in time, and what failed is returned (and said on stderr by the caller). URLs carry secrets
 * (a ping UUID, a token in the path or the query, a password), so every message names them redacted.
 */

const USER_AGENT = 'divio-app-backup'

export type HookEvent = 'drill-failed' | 'failure' | 'start' | 'success'
export const HOOK_EVENTS: readonly HookEvent[] = ['start', 'success', 'failure', 'drill-failed']

export interface HookSettings {
  command?: string
  /** Which events fire the hooks (default: all of them). */
  events?: HookEvent[]
  ping?: string
  webhook?: string
}

export interface HookBody {
  app: string
  /** The backup the event is about (its --json view), or null when there is none (start, a failure). */
  backup: null | unknown
  /** For drill-failed: what the drill found. */
  drill?: {checks: unknown[]; passed: boolean}
  environment: string
  /** For failure: the error's code and message. */
  error: null | {code: string; message: string}
  event: HookEvent
  /** When the event happened (ISO 8601). */
  time: string
}

/** One hook's outcome, in --json and on stderr; `target` is redacted. */
export interface HookOutcome {
  attempts: number
  error?: string
  event: HookEvent
  kind: 'command' | 'ping' | 'webhook'
  ok: boolean
  target: string
}

export interface HookLimits {
  /** Tries of one hook (default 3). */
  attempts: number
  /** The wait before the second try; it doubles for each further one (default 1 s). */
  backoffMs: number
  signal?: AbortSignal
  /** One try's limit (default 10 s): a hook that hangs costs at most attempts × this. */
  timeoutMs: number
}

export const DEFAULT_HOOK_LIMITS: HookLimits = {attempts: 3, backoffMs: 1000, timeoutMs: 10_000}

/** DIVIO_BACKUP_HOOK_TIMEOUT_SECONDS, which shortens (or lengthens) each try of a hook; undefined when unset. */
export function hookTimeoutMs(variables: NodeJS.ProcessEnv): number | undefined {
  const seconds = Number(variables.DIVIO_BACKUP_HOOK_TIMEOUT_SECONDS)
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined
}

/** The hook limits: the defaults, with one try's limit when the command was given one. */
export function hookLimits(timeoutMs: number | undefined, signal?: AbortSignal): HookLimits {
  return {...DEFAULT_HOOK_LIMITS, signal, ...(timeoutMs === undefined ? {} : {timeoutMs})}
}

/** Fires every hook of `settings` that takes `body.event`; resolves when each has succeeded or given up. */
export async function fireHooks(
  settings: HookSettings | undefined,
  body: HookBody,
  limits: HookLimits = DEFAULT_HOOK_LIMITS,
): Promise<HookOutcome[]> {
  if (settings === undefined || !(settings.events ?? HOOK_EVENTS).includes(body.event)) return []
  const calls: Array<Promise<HookOutcome>> = []
  const json = JSON.stringify(body)
  if (settings.webhook) {
    const url = settings.webhook
    calls.push(
      retried({event: body.event, kind: 'webhook', target: url}, limits, (signal) =>
        post(url, json, {'content-type': 'application/json', 'user-agent': USER_AGENT}, signal),
      ),
    )
  }

  if (settings.ping) {
    const url = pingUrl(settings.ping, body.event)
    const text = body.error ? `${body.error.code}: ${body.error.message}` : body.event
    calls.push(
      retried({event: body.event, kind: 'ping', target: url}, limits, (signal) =>
        post(url, text, {'content-type': 'text/plain', 'user-agent': USER_AGENT}, signal),
      ),
    )
  }

  if (settings.command) {
    const {command} = settings
    calls.push(
      retried({event: body.event, kind: 'command', target: command}, limits, async (signal) => {
        await run('sh', ['-c', command], {
          env: {DIVIO_BACKUP_APP: body.app, DIVIO_BACKUP_ENV: body.environment, DIVIO_BACKUP_EVENT: body.event},
          input: json,
          signal,
        })
      }),
    )
  }

  return Promise.all(calls)
}

/** healthchecks.io's convention: `/start`, the URL itself for success, `/fail`; a query string stays last. */
export function pingUrl(base: string, event: HookEvent): string {
  const suffix = event === 'start' ? '/start' : event === 'success' ? '' : '/fail'
  const url = new URL(base)
  url.pathname = `${url.pathname.replace(/\/$/, '')}${suffix}`
  return url.toString()
}

/**
 * A URL as messages show it: scheme and host only. The path (a ping UUID, a Slack token), the query
 * and any user or password are secrets as often as not. A command is shown by its first word.
 */
export function redactTarget(kind: HookOutcome['kind'], target: string): string {
  if (kind === 'command') return `${target.trim().split(/\s+/)[0]} …`
  try {
    const url = new URL(target)
    return `${url.protocol}//${url.host}/***`
  } catch {
    return '***'
  }
}

async function retried(
  {event, kind, target}: {event: HookEvent; kind: HookOutcome['kind']; target: string},
  limits: HookLimits,
  attempt: (signal: AbortSignal) => Promise<void>,
): Promise<HookOutcome> {
  const shown = redactTarget(kind, target)
  let error = ''
  for (let tried = 1; tried <= limits.attempts; tried++) {
    if (limits.signal?.aborted)
      return {attempts: tried - 1, error: 'interrupted', event, kind, ok: false, target: shown}
    const timeout = AbortSignal.timeout(limits.timeoutMs)
    const signal = limits.signal ? AbortSignal.any([timeout, limits.signal]) : timeout
    try {
      await attempt(signal)
      return {attempts: tried, event, kind, ok: true, target: shown}
    } catch (error_) {
      error = timeout.aborted ? `no answer within ${limits.timeoutMs / 1000} s` : describe(error_, target)
    }

    if (tried < limits.attempts) {
      await sleep(limits.backoffMs * 2 ** (tried - 1), undefined, {signal: limits.signal}).catch(() => {})
    }
  }

  return {attempts: limits.attempts, error, event, kind, ok: false, target: shown}
}

/** An error's words, with the hook's URL (or any part of it) taken out. */
function describe(error: unknown, target: string): string {
  const {cause, code} = error as {cause?: {code?: string; message?: string}; code?: string}
  const text = code ?? cause?.code ?? cause?.message ?? (error as Error).message ?? String(error)
  return text.split(target).join('***')
}
