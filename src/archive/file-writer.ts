import {deferred, Deferred} from '../lib/deferred.js'
import {RequestThread, SMALL_WORK_UNITS, UNIT_BYTES} from '../lib/worker.js'
import {writeHere} from './file-writer-inline.js'
import {FILE_FIELDS, WriteBatch, WrittenBatch} from './file-writer-protocol.js'

/** A file that failed to be written, with the label it was added under. */
export class FileWriteError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly label: string,
  ) {
    super(message)
  }
}

/** A batch is sent when it holds this many bytes or files: few messages, each one transfer. */
const BATCH_BYTES = 1024 * 1024
const BATCH_FILES = 64
/** Batches with the worker and not yet back: both threads stay busy, and memory stays bounded. */
const BATCHES_IN_FLIGHT = 2

interface Filling {
  bytes: Buffer
  files: number[]
  filled: number
  labels: string[]
}

interface Sent {
  done: Deferred<void>
  labels: string[]
}

/**
 * Writes small files that must not exist yet on the writer thread, in batches, with their mode and
 * mtime, and hashes each as it goes. Tens of thousands of small files cost the main thread little this
 * way: a copy into the batch, instead of a thread-pool round trip for each open, write, futimes and
 * close, and the hashing (a small restore's are written here, with the pool: see {@link SmallWritesHere}).
 * At most three batch buffers exist, reused from batch to batch.
 *
 * `written(label, sha256)` is called for every file, in the order the files were added. Folders a file
 * goes into must exist before it is added. A failure is thrown by the next `add`, or by `drain`, as a
 * FileWriteError naming the file's label; nothing added after it is written.
 */
export class SmallFileWriter {
  /** The largest path and content that fit in one batch. */
  static readonly MAX_FILE_BYTES = BATCH_BYTES
  private current: Filling | undefined
  private failure: Error | undefined
  private readonly sent: Sent[] = []
  private readonly spare: ArrayBuffer[] = []

  constructor(
    private readonly umask: number | undefined,
    private readonly written: (label: string, sha256: string) => void,
    private readonly route: WriterRoute = smallWorkHere(),
  ) {}

  async add(label: string, path: Buffer, data: Buffer, {mode, mtime}: {mode: number; mtime: Date}): Promise<void> {
    if (this.failure) throw this.failure
    const size = path.length + data.length
    if (size > BATCH_BYTES) throw new Error(`a file of ${data.length} bytes is too large for a write batch`)
    if (this.current && (this.current.filled + size > BATCH_BYTES || this.current.labels.length >= BATCH_FILES)) {
      await this.send()
    }

    this.current ??= this.fresh()
    const batch = this.current
    path.copy(batch.bytes, batch.filled)
    data.copy(batch.bytes, batch.filled + path.length)
    batch.filled += size
    // eslint-disable-next-line no-bitwise -- permission bits are a bit mask
    const atCreation = this.umask !== undefined && mode <= 0o777 && (mode & this.umask) === 0
    batch.files.push(path.length, data.length, mode, mtime.getTime() / 1000, atCreation ? 1 : 0)
    batch.labels.push(label)
  }

  /** Writes what has been added; resolves once every file is written, or throws the first failure. */
  async drain(): Promise<void> {
    if (this.current && !this.failure) await this.send(0)
    while (this.sent.length > 0) await this.sent[0].done.promise
    if (this.failure) throw this.failure
  }

  /** Waits for the batches with the worker, and never throws: for clean-up after another failure. */
  async settle(): Promise<void> {
    this.current = undefined
    await this.drain().catch(() => {})
  }

  private fresh(): Filling {
    const buffer = this.spare.pop() ?? new ArrayBuffer(BATCH_BYTES)
    return {bytes: Buffer.from(buffer), files: [], filled: 0, labels: []}
  }

  private receive(reply: WrittenBatch): void {
    const sent = this.sent.shift()!
    this.spare.push(reply.buffer)
    for (const [index, sha256] of reply.hashes.entries()) this.written(sent.labels[index], sha256)
    if (reply.failure && !this.failure) {
      const {code, index, message} = reply.failure
      this.failure = new FileWriteError(message, code, sent.labels[index])
    }

    sent.done.resolve()
  }

  /** Sends the current batch, and waits while more than `inFlight` batches are with the worker. */
  private async send(inFlight = BATCHES_IN_FLIGHT - 1): Promise<void> {
    const batch = this.current!
    this.current = undefined
    const done = deferred<void>()
    this.sent.push({done, labels: batch.labels})
    const buffer = batch.bytes.buffer as ArrayBuffer
    this.route.write({buffer, files: batch.files}).then(
      (reply) => this.receive(reply),
      (error: Error) => {
        this.failure ??= error
        this.sent.shift()
        done.resolve()
      },
    )
    while (this.sent.length > inFlight) await this.sent[0].done.promise
    if (this.failure) throw this.failure
  }
}

/** The worker holds a few batches at a time: a small heap is plenty. */
const WORKER_LIMITS = {maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2}

/** Who writes the batches: the writer thread, or this thread (file-writer-inline.ts). */
export interface WriterRoute {
  write(batch: WriteBatch): Promise<WrittenBatch>
}

/** Always the writer thread (file-writer-worker.ts), started on first use and shared by the process. */
export const onTheWriterThread: WriterRoute = {
  write: (batch) => writerThread().request(batch, [batch.buffer]),
}

/**
 * The writes of a small restore cost less on this thread than starting the writer thread does (about
 * 0.1 CPU-s and 8 MiB). Files are counted against a budget (SMALL_WORK_UNITS). Once it is
 * spent, the thread starts in the background (it takes about 0.1 s, which the restore would wait for),
 * and batches are written here until it is up, within as much again; then they go to the thread.
 *
 * Batches are written one after the other, in the order given, wherever they are written: SmallFileWriter
 * takes the answers in that order, and a batch that fails must not be overtaken by the next.
 */
export class SmallWritesHere implements WriterRoute {
  /** Units that may still be written here: the budget, then as much again while the thread starts. */
  private left: number
  private readonly startAt: number
  private started = false
  /** The last batch written here, settled: what the next batch waits for. */
  private writtenHere: Promise<unknown> = Promise.resolve()

  constructor(budget = SMALL_WORK_UNITS) {
    this.left = 2 * budget
    this.startAt = Number.isFinite(budget) ? budget : Number.NEGATIVE_INFINITY
  }

  /** Whether batches now go to the writer thread. */
  get onThread(): boolean {
    return this.left <= 0
  }

  /**
   * Starts the thread now, for work known to be larger than the budget, and sends it every batch: they
   * wait for it to be up, which took less time than writing them here meanwhile (a file at a time, each
   * four round trips through the thread pool), and kept no more in flight.
   */
  expectLargeWork(): void {
    // A route without a budget does everything here, whatever comes.
    if (!Number.isFinite(this.startAt) || this.started) return
    this.left = 0
    this.started = true
    writerThread()
  }

  write(batch: WriteBatch): Promise<WrittenBatch> {
    let units = 0
    for (let index = 1; index < batch.files.length; index += FILE_FIELDS) {
      units += 1 + Math.floor(batch.files[index] / UNIT_BYTES)
    }

    if (this.started && writerThread().online) this.left = 0
    if (units <= this.left) {
      this.left -= units
      if (this.left <= this.startAt && !this.started) {
        this.started = true
        writerThread()
      }

      const written = this.writtenHere.then(() => writeHere(batch))
      this.writtenHere = written.catch(() => {})
      return written
    }

    // The thread writes what it is sent in order; it is sent this batch once those written here are done.
    this.left = 0
    return this.writtenHere.then(() => onTheWriterThread.write(batch))
  }
}

/** Always this thread, with asynchronous calls: for tests. */
export const onThisThread: WriterRoute = new SmallWritesHere(Number.POSITIVE_INFINITY)

let processRoute: SmallWritesHere | undefined

/**
 * Tells the writer that about `files` files are coming (the count of the backup an extraction writes):
 * past the budget of work here, the thread starts at once and writes them all. A restore of the bench
 * tree (16,002 files) otherwise wrote its first files here, a file at a time, each an open, a write, a
 * utimes and a close through the thread pool, before the thread took over (for more than a second, when
 * the budget was 2,000 units). Told, it took 3.48–3.55 s against 3.92–4.54 s (tar format) and
 * 4.06–4.22 s against 4.45–4.73 s (packs), in three pairs each taken in turn, at the same peak RSS (a
 * restore of 100,000 tiny files peaked about 3 MiB higher: see docs/performance.md).
 */
export function expectWrites(files: number): void {
  if (files > SMALL_WORK_UNITS) smallWorkHere().expectLargeWork()
}

/** The process's route: one budget for the whole command. */
function smallWorkHere(): SmallWritesHere {
  processRoute ??= new SmallWritesHere()
  return processRoute
}

const WRITER_MODULE = 'archive/file-writer-worker'

function writerThread(): RequestThread<WriteBatch, WrittenBatch> {
  return RequestThread.of(WRITER_MODULE, {resourceLimits: WORKER_LIMITS})
}

/**
 * Ends the writer thread, idle once an extraction is done, for a command that goes on to other work on
 * the reader thread, with the writer's isolate idle beside it: a drill reads every file back, a restore
 * in place takes its safety backup (20,000 files on Node.js 24: a drill peaked at 152–161 MiB with it
 * ended, 165–166 MiB with it kept; a restore in place at 155–162 MiB against 165–168). A later
 * extraction in the process starts it again.
 */
export async function stopWriterThread(): Promise<void> {
  await RequestThread.stop(WRITER_MODULE)
}
