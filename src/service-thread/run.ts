import {MessageChannel, Worker} from 'node:worker_threads'

import {serveCipherRequests} from '../archive/cipher-server.js'
import {ContextRequest} from '../cli/context.js'
import {BackupError} from '../errors.js'
import {deferred} from '../lib/deferred.js'
import {startModuleWorker} from '../lib/worker.js'
import {Progress, Reporter} from '../services/context.js'
import {RestoreConfirmation} from '../services/restore.js'
import {FromServiceThread, receivedError, sendableError, ToServiceThread} from './protocol.js'
import {ThreadServiceName, ThreadServiceOptions, ThreadServiceResult} from './services.js'

/**
 * The service thread's heap. V8 sizes a heap by what its thread has done: the young generation of a
 * thread that walks a tree and streams for a while grows to 16 MiB semi-spaces, and the old generation
 * may grow to about four times what it holds before its next full collection, less the smaller its
 * limit. A plugin runs inside its host's process, whose V8 flags are not its own to set; a worker's
 * resource limits are. A backup of 100,000 tiny files peaked at 176 MiB (Node.js 24) to 202 MiB (20)
 * with its work on the main thread and nothing limited; here, at 124–156 MiB. With the old generation
 * allowed 2 GiB instead, at 190 MiB. The largest work measured, an unchanged packed backup of
 * 1,000,000 files, peaks at under 150 MiB for the whole process: 512 MiB of old generation leaves it
 * room several times over, and a thread that runs out fails clearly (threadFailure).
 */
export const SERVICE_THREAD_LIMITS = {maxOldGenerationSizeMb: 512, maxYoungGenerationSizeMb: 3}

/** Who runs a command's service: its own context, as the flags name it, and the command's reporter and signal. */
export interface ServiceCaller {
  /** Asks the person to confirm, at the terminal; throws if they do not (restore). */
  confirm?: (confirmation: RestoreConfirmation) => Promise<void>
  context: ContextRequest
  reporter: Reporter
  signal: AbortSignal
  verbose: boolean
}

/**
 * Runs a service that streams a backup's data on the service thread (service-worker.ts), whose heap
 * the command bounds (SERVICE_THREAD_LIMITS), and resolves with its result or rejects with its error,
 * as if it had run here. Its notices, details and progress reach the caller's reporter; the caller's
 * signal reaches the service's context. The main thread only relays, so its own heap stays small.
 *
 * A thread runs one service at a time. Once it has answered, it is kept, idle and never holding the
 * process, for the next command in the same process (a host that runs several, or the tests): starting
 * one and loading the services into it costs about 0.2 CPU-s. A command that starts while another
 * runs gets a thread of its own.
 */
export async function onServiceThread<Name extends ThreadServiceName>(
  service: Name,
  options: ThreadServiceOptions<Name>,
  caller: ServiceCaller,
): Promise<ThreadServiceResult<Name>> {
  const {reporter, signal} = caller
  const worker = idleThread ?? startServiceThread()
  idleThread = undefined
  const run = nextRun++
  const outcome = deferred<ThreadServiceResult<Name>>()
  const progress = new Map<number, Progress>()
  const send = (message: ToServiceThread) => worker.postMessage(message)
  const onMessage = (message: FromServiceThread) => {
    if (message.run !== run) return
    switch (message.kind) {
      case 'advance': {
        progress.get(message.progress)?.advance(message.bytes)
        break
      }

      case 'confirm': {
        const answer = (error?: unknown) =>
          send({error: error === undefined ? undefined : sendableError(error), kind: 'confirmed', run})
        const confirm =
          caller.confirm ??
          (() => Promise.reject(new BackupError('INTERNAL', `The ${service} asked for a confirmation it cannot get.`)))
        confirm(message.confirmation).then(() => answer(), answer)
        break
      }

      case 'detail': {
        reporter.detail(message.message)
        break
      }

      case 'done': {
        progress.get(message.progress)?.done()
        progress.delete(message.progress)
        break
      }

      case 'error': {
        outcome.reject(receivedError(message.error))
        break
      }

      case 'expect': {
        progress.get(message.progress)?.expect(message.totalBytes, {estimated: message.estimated})
        break
      }

      case 'notice': {
        reporter.notice(message.message)
        break
      }

      case 'progress': {
        progress.set(message.progress, reporter.progress(message.label, message.totalBytes))
        break
      }

      case 'result': {
        outcome.resolve(message.value as ThreadServiceResult<Name>)
        break
      }
    }
  }

  const onError = (error: Error) => outcome.reject(threadFailure(service, error))
  // After a result or an error this changes nothing: a deferred settles once.
  const onExit = (code: number) =>
    outcome.reject(
      new BackupError('INTERNAL', `The ${service} stopped before it finished: its thread exited (code ${code}).`, {
        suggestion: 'Run it again with DEBUG=* and report the output (check it for secrets first).',
      }),
    )
  const stop = () => send({kind: 'abort', reason: sendableError(signal.reason), run})
  worker.on('message', onMessage)
  worker.on('error', onError)
  worker.on('exit', onExit)
  signal.addEventListener('abort', stop, {once: true})
  worker.ref()
  send({
    context: caller.context,
    cwd: process.cwd(),
    interactive: reporter.interactive,
    kind: 'run',
    options,
    run,
    service,
    variables: {...process.env},
    verbose: caller.verbose,
  })
  if (signal.aborted) stop()
  try {
    return await outcome.promise
  } finally {
    signal.removeEventListener('abort', stop)
    worker.off('message', onMessage)
    worker.off('error', onError)
    worker.off('exit', onExit)
    // Idle, the thread never holds the process (after the listeners: adding one refs it again).
    worker.unref()
    keepOrEnd(worker)
  }
}

/**
 * Starts the service thread ahead of its command, from the init hook: the thread takes about 0.17 s
 * to load the services, and the main thread about 0.09 s from the hook to the command's first call
 * here (loading the command, reading its flags), so the two overlap on two cores. The thread waits
 * idle, never holding the process, as one kept between runs does; a command that fails before it
 * runs a service leaves it for the next, or to end with the process.
 */
export function startServiceThreadAhead(): void {
  if (idleThread !== undefined) return
  const worker = startServiceThread()
  worker.unref()
  idleThread = worker
}

/** The thread kept for the next run, if one is. */
let idleThread: undefined | Worker
const ended = new WeakSet<Worker>()
let nextRun = 1

function startServiceThread(): Worker {
  // The thread's cipher work is done here, where the thread's command only waits (serveCipherFrom).
  const {port1: here, port2: there} = new MessageChannel()
  serveCipherRequests(here)
  here.unref()
  const started = startModuleWorker('service-thread/service-worker', {
    resourceLimits: SERVICE_THREAD_LIMITS,
    transferList: [there],
    workerData: {cipher: there},
  })
  // A thread that died (out of heap, say) is not kept; its own run has been told why.
  started.on('error', () => {})
  started.once('exit', () => {
    ended.add(started)
    if (idleThread === started) idleThread = undefined
  })
  return started
}

/** One idle thread is kept; a second (from commands that ran side by side) ends. */
function keepOrEnd(worker: Worker): void {
  if (ended.has(worker)) return
  if (idleThread === undefined) idleThread = worker
  else worker.terminate().catch(() => {})
}

/** The thread itself failed (not the service, which answers with its error): out of heap, most likely. */
function threadFailure(service: string, error: Error & {code?: string}): BackupError {
  if (error.code === 'ERR_WORKER_OUT_OF_MEMORY') {
    return new BackupError(
      'INTERNAL',
      `The ${service} stopped: its thread needed more than the ${SERVICE_THREAD_LIMITS.maxOldGenerationSizeMb} MiB of heap it is given.`,
      {
        suggestion:
          'Nothing of a backup is committed before its manifest. Report this with the number of media files, and run it again with DEBUG=*.',
      },
    )
  }

  return new BackupError('INTERNAL', `Unexpected error on the ${service} thread: ${error.message}`, {
    cause: error,
    suggestion: 'Run it again with DEBUG=* and report the output (check it for secrets first).',
  })
}
