import type {Duplex} from 'node:stream'
import type {MessagePort, Worker} from 'node:worker_threads'

import type {SealResult} from './seal.js'

import {startModuleWorker} from '../lib/worker.js'

/**
 * Messages to the cipher thread (see seal-worker.ts). Buffers are transferred, not copied: `batch`
 * holds plaintext, and `output`, when there is one, is room for the sealed bytes. A job is either a
 * seal (`start`) or a hash alone (`hash`).
 */
export type CipherRequest =
  | {batch: ArrayBuffer; id: number; kind: 'data'; length: number; output?: ArrayBuffer}
  | {hashPlaintext: boolean; id: number; kind: 'start'; recipients: Uint8Array[]}
  | {id: number; kind: 'cancel'}
  | {id: number; kind: 'end'; output?: ArrayBuffer}
  | {id: number; kind: 'hash'}

/**
 * Messages from the cipher thread: sealed bytes in `batch`, and the plaintext's buffer given back as
 * `spent`; for a hash job, each batch given back (`hashed`), then the digest (`digest`).
 */
export type CipherReply =
  | (SealResult & {id: number; kind: 'done'})
  | {batch: ArrayBuffer; id: number; kind: 'sealed'; length: number; spent?: ArrayBuffer}
  | {bytes: number; id: number; kind: 'digest'; sha256: string}
  | {id: number; kind: 'error'; message: string}
  | {id: number; kind: 'hashed'; spent: ArrayBuffer}

/** A stream whose work runs on the cipher thread: it gets its job's replies. */
export type CipherJob = Duplex & {receive(reply: CipherReply): void}

/**
 * The thread holds a few batches and no long-lived objects: a small heap keeps its share of the
 * process's memory small.
 */
const WORKER_LIMITS = {maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 2}

const idleHooks = new Set<() => void>()

/** Runs `hook` whenever the thread has no job left: to drop buffers that only its jobs reuse. */
export function whenCipherThreadIdle(hook: () => void): void {
  idleHooks.add(hook)
}

/** Where this thread's cipher work is served, when another thread serves it (see {@link serveCipherFrom}). */
let servedFrom: MessagePort | undefined

/**
 * Has the thread that holds the other end of `port` do this thread's cipher work (cipher-server.ts),
 * instead of a worker of its own. The service thread's work is served by the main thread, which
 * otherwise only waits for it: the same two cores at work, and one V8 isolate fewer (about 18 MiB of
 * RSS on Node.js 24).
 */
export function serveCipherFrom(port: MessagePort): void {
  servedFrom = port
}

/**
 * One worker thread per process, shared by the seal and hash streams of a command (they run one after
 * another, but need not), or the thread that serves this one (serveCipherFrom). It only keeps the
 * process alive while a job is open. If it dies, its open jobs fail and the next stream starts a new one.
 */
class CipherThread {
  private readonly endpoint: MessagePort | Worker
  private readonly jobs = new Map<number, CipherJob>()
  private nextId = 1

  constructor(onExit: () => void) {
    const fail = (error: Error) => {
      onExit()
      for (const stream of this.jobs.values()) stream.destroy(error)
      this.jobs.clear()
    }

    if (servedFrom === undefined) {
      const worker = startModuleWorker('archive/seal-worker', {resourceLimits: WORKER_LIMITS})
      worker.on('error', (error) => fail(new Error(`the cipher thread failed: ${error.message}`)))
      worker.on('exit', (code) => fail(new Error(`the cipher thread stopped (exit code ${code})`)))
      this.endpoint = worker
    } else {
      servedFrom.once('close', () => fail(new Error('the thread that serves the cipher stopped')))
      this.endpoint = servedFrom
    }

    this.endpoint.on('message', (reply: CipherReply) => this.jobs.get(reply.id)?.receive(reply))
    // After the listeners: adding a 'message' listener refs the worker again.
    this.endpoint.unref()
  }

  cancel(id: number): void {
    if (!this.jobs.delete(id)) return
    this.send({id, kind: 'cancel'})
    if (this.jobs.size === 0) this.idle()
  }

  send(request: CipherRequest, transfer: ArrayBuffer[] = []): void {
    this.endpoint.postMessage(request, transfer)
  }

  /** Opens a job for `stream`, which ends it by ending (or cancels it when destroyed). */
  start(stream: CipherJob, request: DistributiveOmit<Extract<CipherRequest, {kind: 'hash' | 'start'}>, 'id'>): number {
    const id = this.nextId++
    this.jobs.set(id, stream)
    this.endpoint.ref()
    this.send({...request, id} as CipherRequest)
    stream.once('end', () => this.finish(id))
    return id
  }

  private finish(id: number): void {
    this.jobs.delete(id)
    if (this.jobs.size === 0) this.idle()
  }

  private idle(): void {
    this.endpoint.unref()
    for (const hook of idleHooks) hook()
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

let shared: CipherThread | undefined

/** The process's cipher thread, started on first use. */
export function cipherThread(): CipherThread {
  shared ??= new CipherThread(() => {
    shared = undefined
  })
  return shared
}
