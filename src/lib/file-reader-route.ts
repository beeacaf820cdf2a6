import {deferred} from './deferred.js'
import {listHere, readHere} from './file-reader-inline.js'
import {FolderListing, ListRequest, ReadBatch, ReadReply} from './file-reader-protocol.js'
import {RequestThread, SMALL_WORK_UNITS, UNIT_BYTES} from './worker.js'

/**
 * Who answers the file reader's requests (file-reader.ts): the reader thread, or, for a small tree,
 * this thread, which spares every backup of a small app the thread's start.
 */

/** The worker holds a batch or two at a time: a small heap is plenty. */
const WORKER_LIMITS = {maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1}

/** Who answers the reader's requests: the reader thread, or this thread (file-reader-inline.ts). */
export interface ReaderRoute {
  list(request: ListRequest): Promise<FolderListing>
  read(batch: ReadBatch): Promise<ReadReply>
}

/** Always the reader thread (file-reader-worker.ts), started on first use and shared by the process. */
export const onTheReaderThread: ReaderRoute = {
  async list(request) {
    return (await readerThread().request(request, [request.folder])) as FolderListing
  },
  async read(batch) {
    return (await readerThread().request(batch, [batch.contents, batch.paths])) as ReadReply
  },
}

/** Always this thread, with asynchronous calls (what {@link SmallWorkHere} does within its budget): for tests. */
export const onThisThread: ReaderRoute = {
  async list(request) {
    return (await listHere(request, Number.POSITIVE_INFINITY))!
  },
  read: readHere,
}

/**
 * The work of a small tree costs less on this thread than starting the reader thread does (about
 * 0.1 CPU-s and 8 MiB, which every backup of a small app would pay). Names listed and files read are
 * counted against a budget (SMALL_WORK_UNITS: a file hashed whole, whose size the request does not
 * say, one unit); the request that would spend past it, and
 * every one after it, goes to the thread. A folder wider than what is left of the budget is listed on
 * the thread, never held here as an object a name.
 *
 * The thread takes about 0.1 s to start, which the walk would wait for: so once the budget is spent,
 * the thread starts in the background, and the work goes on here until it is up, within as much again.
 */
export class SmallWorkHere implements ReaderRoute {
  /** Units that may still be spent here: the budget, then as much again while the thread starts. */
  private left: number
  /** Settles when the last listing asked for here is done. */
  private listing: Promise<void> = Promise.resolve()
  private readonly startAt: number
  private started = false

  constructor(budget = SMALL_WORK_UNITS) {
    this.left = 2 * budget
    this.startAt = Number.isFinite(budget) ? budget : Number.NEGATIVE_INFINITY
  }

  /** Whether requests now go to the reader thread. */
  get onThread(): boolean {
    return this.left <= 0
  }

  /**
   * Starts the thread now, for work known to be larger than the budget: the work goes on here until
   * the thread is up, within the budget, instead of the thread starting only once the budget is spent.
   */
  expectLargeWork(): void {
    // A route without a budget does everything here, whatever comes.
    if (!Number.isFinite(this.startAt)) return
    this.left = Math.min(this.left, this.startAt)
    this.spend(0)
  }

  /**
   * Listings here go one at a time, though a walk asks for the next folders ahead (FoldersAhead):
   * listHere holds one pool thread at a time (see there), and each listing spends from what the one
   * before left of the budget.
   */
  async list(request: ListRequest): Promise<FolderListing> {
    const before = this.listing
    const done = deferred<void>()
    this.listing = done.promise
    try {
      await before
      if (this.here()) {
        const listing = await listHere(request, this.left)
        if (listing !== undefined) {
          this.spend(Math.max(listing.count, 1))
          return listing
        }

        this.left = 0
      }
    } finally {
      done.resolve()
    }

    return onTheReaderThread.list(request)
  }

  async read(batch: ReadBatch): Promise<ReadReply> {
    const units = batch.sizes.reduce((sum, size) => sum + 1 + Math.floor(Math.max(size, 0) / UNIT_BYTES), 0)
    if (this.here() && units <= this.left) {
      this.spend(units)
      return readHere(batch)
    }

    this.left = 0
    return onTheReaderThread.read(batch)
  }

  /** Whether the next request is done here: units are left, and the thread is not up yet. */
  private here(): boolean {
    if (this.started && readerThread().online) this.left = 0
    return this.left > 0
  }

  private spend(units: number): void {
    this.left -= units
    if (this.left <= this.startAt && !this.started) {
      this.started = true
      readerThread()
    }
  }
}

let processRoute: SmallWorkHere | undefined

/**
 * Tells the reader that a walk of about `names` names is coming (the previous backup's count): past
 * the budget of work here, the thread starts at once. In an unchanged packed backup of the bench tree
 * (16,002 files), the walk otherwise listed its first names here, an lstat at a time, before the thread
 * took over (about a third of a second, when the budget was 2,000 units).
 */
export function expectWalk(names: number): void {
  if (names > SMALL_WORK_UNITS) smallWorkHere().expectLargeWork()
}

/** The process's route: one budget for the whole command. */
export function smallWorkHere(): SmallWorkHere {
  processRoute ??= new SmallWorkHere()
  return processRoute
}

function readerThread(): RequestThread<ListRequest | ReadBatch, FolderListing | ReadReply> {
  return RequestThread.of('lib/file-reader-worker', {resourceLimits: WORKER_LIMITS})
}
