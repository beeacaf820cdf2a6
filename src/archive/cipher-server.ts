import type {MessagePort} from 'node:worker_threads'

import {createHash, Hash} from 'node:crypto'

import type {CipherReply, CipherRequest} from './cipher-thread.js'

import {freeNow} from '../lib/buffer-loan.js'
import {AgeSealer} from './age.js'

/**
 * The cipher thread's work (cipher-thread.ts), served on `port`. For createSealStream (seal.ts) it hashes the plaintext,
 * encrypts it and hashes what it sealed, one job per stream; for an off-thread HashingStream (hash.ts)
 * it only hashes. Every reply carries the job's id; a job's batches are answered in order,
 * one sealed batch each, which gives the plaintext's buffer back and carries the sealed bytes in the
 * buffer the request brought for them: the same few buffers go round, whatever the size of the stream.
 */

/** A hash alone: each batch goes back once hashed, and the end brings the digest. */
interface HashJob {
  bytes: number
  readonly hash: Hash
  readonly kind: 'hash'
}

interface SealJob {
  readonly kind: 'seal'
  plainBytes: number
  plainHash?: Hash
  sealedBytes: number
  readonly sealedHash: Hash
  readonly sealer: AgeSealer
}

export function serveCipherRequests(port: MessagePort): void {
  const jobs = new Map<number, HashJob | SealJob>()
  const post = (message: CipherReply, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer)
  port.on('message', (request: CipherRequest) => {
    try {
      handle(request, jobs, post)
    } catch (error) {
      jobs.delete(request.id)
      post({id: request.id, kind: 'error', message: (error as Error).message})
    }
  })
}

type Post = (message: CipherReply, transfer?: ArrayBuffer[]) => void

function handle(request: CipherRequest, jobs: Map<number, HashJob | SealJob>, post: Post): void {
  switch (request.kind) {
    case 'cancel': {
      jobs.delete(request.id)
      break
    }

    case 'data': {
      const job = jobs.get(request.id)
      if (job === undefined) return
      if (job.kind === 'hash') {
        job.hash.update(new Uint8Array(request.batch, 0, request.length))
        job.bytes += request.length
        post({id: request.id, kind: 'hashed', spent: request.batch}, [request.batch])
        break
      }

      const plaintext = Buffer.from(request.batch, 0, request.length)
      job.plainHash?.update(plaintext)
      job.plainBytes += plaintext.length
      reply(job, job.sealer.update(plaintext, {borrowed: true}), {
        id: request.id,
        output: request.output,
        post,
        spent: request.batch,
      })
      break
    }

    case 'end': {
      const job = jobs.get(request.id)
      if (job === undefined) return
      if (job.kind === 'hash') {
        jobs.delete(request.id)
        post({bytes: job.bytes, id: request.id, kind: 'digest', sha256: job.hash.digest('hex')})
        break
      }

      reply(job, job.sealer.final(), {id: request.id, output: request.output, post})
      jobs.delete(request.id)
      post({
        id: request.id,
        kind: 'done',
        plaintext: {bytes: job.plainBytes, sha256: job.plainHash?.digest('hex')},
        sealed: {bytes: job.sealedBytes, sha256: job.sealedHash.digest('hex')},
      })
      break
    }

    case 'hash': {
      jobs.set(request.id, {bytes: 0, hash: createHash('sha256'), kind: 'hash'})
      break
    }

    case 'start': {
      jobs.set(request.id, {
        kind: 'seal',
        plainBytes: 0,
        plainHash: request.hashPlaintext ? createHash('sha256') : undefined,
        sealedBytes: 0,
        sealedHash: createHash('sha256'),
        sealer: new AgeSealer(request.recipients),
      })
      break
    }
  }
}

/**
 * Hashes the sealed pieces and joins them into `output` (a new buffer when there is none, or it is too
 * small), which is handed over without a copy, with the spent plaintext buffer.
 */
function reply(
  job: SealJob,
  pieces: Buffer[],
  to: {id: number; output?: ArrayBuffer; post: Post; spent?: ArrayBuffer},
): void {
  const {id, output, post, spent} = to
  let length = 0
  for (const piece of pieces) length += piece.length
  const joined =
    output !== undefined && output.byteLength >= length ? Buffer.from(output) : Buffer.allocUnsafeSlow(length)
  let offset = 0
  for (const piece of pieces) {
    offset += piece.copy(joined, offset)
    // The sealer's output (node:crypto's new buffers) is spent once copied.
    freeNow(piece)
  }

  const sealed = joined.subarray(0, length)
  job.sealedHash.update(sealed)
  job.sealedBytes += length
  const transfer = spent === undefined ? [joined.buffer] : [joined.buffer, spent]
  post({batch: joined.buffer, id, kind: 'sealed', length, spent}, transfer)
}
