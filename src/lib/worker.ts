import {createRequire} from 'node:module'
import {basename} from 'node:path'
import {pathToFileURL} from 'node:url'
import {Worker, WorkerOptions} from 'node:worker_threads'

import {deferred, Deferred} from './deferred.js'

/**
 * A worker thread running `module`, named from the source root without extension
 * (`archive/seal-worker`): src/archive/seal-worker.ts from source, dist/archive/seal-worker.js when
 * built. Every `*-worker.ts` module is an entry point of the build (scripts/build.js), at that path,
 * while the code that starts it is bundled wherever the bundler puts it; so the path is taken from the
 * root, not from the caller.
 *
 * From source (tests, scripts, and a plugin linked into a host, which oclif loads from src/), the
 * worker registers tsx itself: a loader given to the parent with --import does not apply to workers on
 * Node 20. tsx is resolved here, from this module: an eval worker would resolve it from the current
 * folder, which is the user's app, not this plugin.
 *
 * The worker gets the process's Node.js options without its module loaders: those are the host's,
 * for the host's code, and Node.js resolves them again in each worker from the current folder, where
 * a relative or package name (`--import=tsx`) is not found, and the worker fails to start. See
 * {@link constructWorker} for the options a worker refuses.
 */
export function startModuleWorker(module: string, options: WorkerOptions = {}): Worker {
  const url = workerModuleUrl(module)
  const worker = url.pathname.endsWith('.ts')
    ? constructWorker(
        `import(${JSON.stringify(tsxApiUrl())}).then(({register}) => { register(); return import(${JSON.stringify(url.href)}) })`,
        {...options, eval: true},
      )
    : constructWorker(url, options)
  return worker
}

/**
 * Options given to a worker explicitly are checked, and V8's (`--max-old-space-size`, `--trace-gc`)
 * and the process's own are refused, while inherited ones are not: so the process's options are
 * inherited as they are when there is no loader among them, and otherwise given without the loaders
 * and without what Node.js names as refused. V8's options apply to the whole process anyway.
 */
export function constructWorker(target: string | URL, options: WorkerOptions, execArgv = process.execArgv): Worker {
  if (options.execArgv !== undefined) return new Worker(target, options)
  const kept = withoutLoaders(execArgv)
  if (kept.length === execArgv.length) return new Worker(target, options)
  try {
    return new Worker(target, {...options, execArgv: kept})
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw error
    const refused = new Set(/: (.*)$/.exec((error as Error).message)?.[1].split(', '))
    const accepted = kept.filter((option) => !refused.has(option))
    try {
      return new Worker(target, {...options, execArgv: accepted})
    } catch {
      return new Worker(target, {...options, execArgv: []})
    }
  }
}

const LOADER_OPTIONS = new Set(['--experimental-loader', '--import', '--loader', '--require', '-r'])

/**
 * How much file system work a command does on its own thread, with the thread pool's asynchronous
 * calls, before it starts the reader or the writer thread for the rest: names listed, and files read or
 * written, each a unit (a file also a unit per {@link UNIT_BYTES}). Starting a thread costs about
 * 0.1 CPU-s and 8 MiB (20 MiB on Node.js 24); a file done here, a round trip through the thread pool
 * for each of its calls, about 0.35 ms. The two meet at about 300 files: past that, the thread costs
 * less than the calls it saves, and a backup of 1,600 files that read 2,000 units here before it
 * started the reader took 1.31–1.46 s against 1.14–1.16 s, its restore 1.94–2.43 s against 1.55–1.91 s.
 */
export const SMALL_WORK_UNITS = 256
/** A file's bytes count a unit of {@link SMALL_WORK_UNITS} per this much. */
export const UNIT_BYTES = 64 * 1024

/** Node.js options without those that load modules, in either spelling (`--import=x`, `--import x`). */
export function withoutLoaders(execArgv: readonly string[]): string[] {
  const kept: string[] = []
  for (let index = 0; index < execArgv.length; index++) {
    const option = execArgv[index]
    if (LOADER_OPTIONS.has(option)) index++
    else if (!LOADER_OPTIONS.has(option.split('=')[0])) kept.push(option)
  }

  return kept
}

/**
 * From source this module is src/lib/worker.ts. Built, its code is in some file under dist/ (a shared
 * chunk or a command's entry): the root is the last `/dist/` of its URL, the plugin's own.
 */
export function workerModuleUrl(module: string, from: string = import.meta.url): URL {
  if (from.endsWith('.ts')) return new URL(`../${module}.ts`, from)
  const root = from.lastIndexOf('/dist/')
  if (root === -1) throw new Error(`cannot locate the worker ${module}: ${from} is not under dist/`)
  return new URL(`${module}.js`, from.slice(0, root + '/dist/'.length))
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
  private up = false
  private readonly worker: Worker

  private constructor(module: string, options: WorkerOptions, onExit: () => void) {
    this.worker = startModuleWorker(module, options)
    this.worker.once('online', () => {
      this.up = true
    })
    this.worker.on('message', (reply: Reply) => {
      const waiting = this.open.get(reply.id)
      this.open.delete(reply.id)
      if (this.open.size === 0) this.worker.unref()
      waiting?.resolve(reply)
    })
    const fail = (error: Error) => {
      onExit()
      for (const waiting of this.open.values())
        waiting.reject(new Error(`the ${basename(module)} thread failed: ${error.message}`))
      this.open.clear()
    }

    this.worker.on('error', fail)
    this.worker.on('exit', (code) => fail(new Error(`it stopped (exit code ${code})`)))
    // After the listeners: adding a 'message' listener refs the worker again.
    this.worker.unref()
  }

  /** The thread running `module` (see startModuleWorker), started on first use. */
  static of<Request extends object, Reply extends {id: number}>(
    module: string,
    options: WorkerOptions = {},
  ): RequestThread<Request, Reply> {
    let thread = RequestThread.running.get(module)
    if (thread === undefined) {
      // A dead thread reports both 'error' and 'exit'; by the second, a new thread may hold the key.
      const started: RequestThread<object, {id: number}> = new RequestThread(module, options, () => {
        if (RequestThread.running.get(module) === started) RequestThread.running.delete(module)
      })
      thread = started
      RequestThread.running.set(module, thread)
    }

    return thread as unknown as RequestThread<Request, Reply>
  }

  /**
   * Ends the thread running `module`, if one runs with no request open, and waits for it to end: its
   * isolate's memory goes back now instead of at the process's end. The next request starts a new one.
   */
  static async stop(module: string): Promise<void> {
    const thread = RequestThread.running.get(module)
    if (thread === undefined || thread.open.size > 0) return
    RequestThread.running.delete(module)
    await thread.worker.terminate()
  }

  /** Whether the thread has started and runs its module: until then, requests wait for it. */
  get online(): boolean {
    return this.up
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
