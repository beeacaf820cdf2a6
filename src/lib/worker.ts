import {createRequire} from 'node:module'
import {pathToFileURL} from 'node:url'
import {Worker, WorkerOptions} from 'node:worker_threads'

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
