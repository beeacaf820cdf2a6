import {createRequire} from 'node:module'
import {pathToFileURL} from 'node:url'
import {Worker, WorkerOptions} from 'node:worker_threads'

import {deferred, Deferred} from './deferred.js'
import {setMemoryFlagsAgain} from './memory.js'

/**
 * A worker thread running `name`, the sibling module of `from` (a module's import.meta.url): name.js
 * when built. From source (tests, scripts, and a plugin linked into a host, which oclif loads from src/)
 * it is name.ts, and the worker registers tsx itself: a loader given to the parent with --import does
 * not apply to workers on Node 20. tsx is resolved here, from this module: an eval worker would resolve
 * it from the current folder, which is the user's app, not this plugin.
 */
export function startModuleWorker(name: string, from: string, options: WorkerOptions = {}): Worker {
  const url = new URL(`${name}${from.endsWith('.ts') ? '.ts' : '.js'}`, from)
  const worker = url.pathname.endsWith('.ts')
    ? new Worker(
        `import(${JSON.stringify(tsxApiUrl())}).then(({register}) => { register(); return import(${JSON.stringify(url.href)}) })`,
        {...options, eval: true},
      )
    : new Worker(url, options)
  worker.once('online', setMemoryFlagsAgain)
  return worker
}

/** tsx's loader API, found from this module (import.meta.resolve is not there when tsx runs this file as CommonJS). */
function tsxApiUrl(): string {
  return pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api')).href
}

/**
 * A worker thread that answers requests, one reply each, shared by the whole process: one per module.
 * It keeps the process alive only while a request is open. If it dies, the open requests fail, and the
 * next request starts a new one.
 */
export class RequestThread<Request extends object, Reply extends {id: number}> {
  private static readonly running = new Map<string, RequestThread<object, {id: number}>>()
  private nextId = 1
  private readonly open = new Map<number, Deferred<Reply>>()
  private readonly worker: Worker

  private constructor(name: string, from: string, options: WorkerOptions, onExit: () => void) {
    this.worker = startModuleWorker(name, from, options)
    this.worker.on('message', (reply: Reply) => {
      const waiting = this.open.get(reply.id)
      this.open.delete(reply.id)
      if (this.open.size === 0) this.worker.unref()
      waiting?.resolve(reply)
    })
    const fail = (error: Error) => {
      onExit()
      for (const waiting of this.open.values()) waiting.reject(new Error(`the ${name} thread failed: ${error.message}`))
      this.open.clear()
    }

    this.worker.on('error', fail)
    this.worker.on('exit', (code) => fail(new Error(`it stopped (exit code ${code})`)))
    // After the listeners: adding a 'message' listener refs the worker again.
    this.worker.unref()
  }

  /** The thread running `name` (see startModuleWorker), started on first use. */
  static of<Request extends object, Reply extends {id: number}>(
    name: string,
    from: string,
    options: WorkerOptions = {},
  ): RequestThread<Request, Reply> {
    const key = new URL(name, from).href
    let thread = RequestThread.running.get(key)
    if (thread === undefined) {
      // A dead thread reports both 'error' and 'exit'; by the second, a new thread may hold the key.
      const started: RequestThread<object, {id: number}> = new RequestThread(name, from, options, () => {
        if (RequestThread.running.get(key) === started) RequestThread.running.delete(key)
      })
      thread = started
      RequestThread.running.set(key, thread)
    }

    return thread as unknown as RequestThread<Request, Reply>
  }

  /** Sends `request` with an `id` of its own, transferring `transfer`; resolves with the reply that names that id. */
  request(request: Request, transfer: ArrayBuffer[] = []): Promise<Reply> {
    const id = this.nextId++
    const reply = deferred<Reply>()
    this.open.set(id, reply)
    this.worker.ref()
    this.worker.postMessage({...request, id}, transfer)
    return reply.promise
  }
}
