import {MessagePort, parentPort, workerData} from 'node:worker_threads'

import {serveCipherFrom} from '../archive/cipher-thread.js'
import {serviceContext, serviceSetup} from '../cli/context.js'
import {deferred, Deferred} from '../lib/deferred.js'
import {tempFolderError} from '../lib/staging.js'
import {BackupContext, noProgress, Progress, Reporter} from '../services/context.js'
import {FromServiceThread, receivedError, sendableError, ToServiceThread} from './protocol.js'
import {ThreadCaller, ThreadServiceName, threadServices} from './services.js'

/**
 * The service thread (see run.ts): for each run it is sent, builds the context from what the command
 * sent, runs the service it names, and sends back what the reporter is told and the result or the
 * error. A request to stop aborts the run's signal, as SIGINT does on the main thread. One run at a
 * time; the thread stays for the next.
 */

const port = parentPort!
serveCipherFrom((workerData as {cipher: MessagePort}).cipher)

/** The run under way: its signal, and the confirmation it asked for and has no answer to yet. */
let current: undefined | {confirming?: Deferred<void>; run: number; stop: AbortController}

port.on('message', (message: ToServiceThread) => {
  if (message.kind === 'run') {
    start(message)
    return
  }

  if (current?.run !== message.run) return
  if (message.kind === 'abort') {
    current.stop.abort(receivedError(message.reason))
    return
  }

  const {confirming} = current
  current.confirming = undefined
  if (message.error === undefined) confirming?.resolve()
  else confirming?.reject(receivedError(message.error))
})

const send = (message: FromServiceThread) => port.postMessage(message)

function start(request: Extract<ToServiceThread, {kind: 'run'}>): void {
  const {run} = request
  current = {run, stop: new AbortController()}
  runService(request, current.stop.signal).then(
    (value) => send({kind: 'result', run, value}),
    (error: unknown) => send({error: sendableError(error), kind: 'error', run}),
  )
}

async function runService(request: Extract<ToServiceThread, {kind: 'run'}>, signal: AbortSignal): Promise<unknown> {
  const {run} = request
  // What libraries read for themselves (the AWS SDK's credentials, say): this thread's copy of the
  // environment, which the command's may differ from when the thread outlives a command.
  for (const name of Object.keys(process.env)) if (!(name in request.variables)) delete process.env[name]
  Object.assign(process.env, request.variables)
  const setup = serviceSetup({
    cwd: request.cwd,
    reporter: reporterOverThePort(request.interactive, request.verbose, (message) => send({...message, run})),
    signal,
    variables: request.variables,
    verbose: request.verbose,
  })
  const context = await serviceContext(setup, request.context)
  const caller: ThreadCaller = {
    confirm(confirmation) {
      const answer = deferred<void>()
      if (current?.run === run) current.confirming = answer
      send({confirmation, kind: 'confirm', run})
      return answer.promise
    },
    contextOf: (environment) => serviceContext(setup, {...request.context, environment}),
  }
  const service = threadServices[request.service as ThreadServiceName] as (
    context: BackupContext,
    options: unknown,
    caller: ThreadCaller,
  ) => Promise<unknown>
  // A file system error crosses to the main thread as its message alone: one on a temp file is
  // explained here, while its code and path are known.
  return service(context, request.options, caller).catch((error: unknown) => {
    throw tempFolderError(error, context.tempRoot) ?? error
  })
}

type Sent = FromServiceThread extends infer Message ? (Message extends unknown ? Omit<Message, 'run'> : never) : never

/** How often progress is sent, at most: the terminal redraws no faster. */
const PROGRESS_MS = 100

/** A reporter whose lines and progress go to the main thread, which draws them. */
function reporterOverThePort(interactive: boolean, verbose: boolean, send: (message: Sent) => void): Reporter {
  let nextProgress = 0
  return {
    detail(message) {
      if (verbose) send({kind: 'detail', message})
    },
    interactive,
    notice(message) {
      send({kind: 'notice', message})
    },
    progress(label, totalBytes) {
      if (!interactive) return noProgress
      const progress = nextProgress++
      send({kind: 'progress', label, progress, totalBytes})
      return new ThrottledProgress(progress, send)
    },
  }
}

/** Bytes are added up and sent at most every PROGRESS_MS: a message per chunk would cost more than the chunk. */
class ThrottledProgress implements Progress {
  private pending = 0
  private sentAt = 0

  constructor(
    private readonly progress: number,
    private readonly send: (message: Sent) => void,
  ) {}

  advance(bytes: number): void {
    this.pending += bytes
    const now = performance.now()
    if (now - this.sentAt < PROGRESS_MS) return
    this.sentAt = now
    this.flush()
  }

  done(): void {
    this.flush()
    this.send({kind: 'done', progress: this.progress})
  }

  expect(totalBytes: number, options?: {estimated?: boolean}): void {
    this.send({estimated: options?.estimated, kind: 'expect', progress: this.progress, totalBytes})
  }

  private flush(): void {
    if (this.pending === 0) return
    this.send({bytes: this.pending, kind: 'advance', progress: this.progress})
    this.pending = 0
  }
}
