import {Readable} from 'node:stream'

import {BackupError} from '../errors.js'

/** One stored object as listed. */
export interface ObjectInfo {
  bytes: number
  /** `/`-separated, relative to the store's root, never starting with `/`. */
  key: string
  /**
   * When the store wrote the object, by the store's own clock, which a writer of the store cannot set
   * back (S3's LastModified; a folder's later of mtime and ctime). Grace periods count from it.
   */
  modifiedAt: Date
}

/** Raised by {@link Store.get} for a key that does not exist. Permanent: retrying will not help. */
export class ObjectNotFoundError extends Error {
  constructor(readonly key: string) {
    super(`object not found: ${key}`)
    this.name = 'ObjectNotFoundError'
  }
}

/**
 * Raised by {@link Store.get} for a key under which the store holds something that is not an object (a
 * FIFO or a device in a local store). It is as good as missing, and callers that only need to know
 * that treat it so; `reason` says what is there, for those that report it.
 */
export class ObjectUnreadableError extends ObjectNotFoundError {
  constructor(
    key: string,
    readonly reason: string,
  ) {
    super(key)
    this.message = `object unreadable: ${key}: ${reason}`
    this.name = 'ObjectUnreadableError'
  }
}

/**
 * Raised by a store's read (`get`, or the stream it gives) when the store holds the object but cannot
 * read it: a disk's input/output error. Where a command needs the object it ends there
 * (exit 7), naming it; a check of a backup (verify) counts the object as failed, since what it holds
 * cannot be had from this store now, and goes on with the next.
 */
export class ObjectReadError extends BackupError {
  constructor(
    readonly key: string,
    /** Why, as a clause: "an input/output error (EIO): …". */
    readonly reason: string,
    location: string,
    options: {cause?: unknown; suggestion?: string},
  ) {
    super('STORE_UNAVAILABLE', `Cannot read ${location} from the store: ${reason}.`, options)
    this.name = 'ObjectReadError'
  }
}

/** What the command that opens a store gives it for every call. */
export interface StoreCallOptions {
  /**
   * The command's signal: SIGINT or SIGTERM ends every call of the store at once, including those
   * that take no signal of their own (a listing, a HEAD, a stat).
   */
  signal?: AbortSignal
  /**
   * How long one call may take without answering (DIVIO_BACKUP_STALL_SECONDS): an S3 endpoint that
   * accepts connections and never answers, a local store on a mount that hangs. The call fails as a
   * stall of the store (exit 7), not forever.
   */
  stallTimeoutMs?: number
}

export interface PutFileOptions {
  /** Hears of the file's bytes as they leave: a slow upload is still progress. */
  onProgress?: (bytes: number) => void
  signal?: AbortSignal
}

/**
 * Where backups live: a flat namespace of immutable objects addressed by `/`-separated keys.
 *
 * Contract, checked for every implementation by test/store/contract.ts:
 * - `put` is atomic: readers see either no object or the whole of it, never a prefix. When the
 *   source stream fails (or `signal` aborts), `put` rejects with that error and no object appears
 *   under `key`. Writing an existing key replaces it. `putFile` is the same, from a file.
 * - `get` resolves to a stream of the whole object, or rejects with {@link ObjectNotFoundError}.
 * - `stat` resolves to undefined for a missing key.
 * - `list(prefix)` yields every object whose key starts with `prefix`, in ascending key order. It may
 *   also yield the leftovers of interrupted writes (their keys never equal a committed key), so that
 *   garbage collection can find them; nothing may treat such an object as a committed one.
 * - `delete` is idempotent: deleting a missing key succeeds.
 * - An error of the source stream, or the abort of `signal`, rejects `put` with that same error.
 * - Transient failures of the store itself are retried inside the store where it can (S3); what is
 *   left is reported as a BackupError (STORE_UNAVAILABLE) or, for the local store, the file system's
 *   error, except on reads: an object it holds but cannot read is an {@link ObjectReadError}.
 */
export interface Store {
  /** `signal` bounds the call: an aborted delete rejects with the signal's reason, and may or may not have happened. */
  delete(key: string, options?: {signal?: AbortSignal}): Promise<void>
  /** A human-readable location for messages, with no credentials. */
  readonly description: string
  get(key: string): Promise<Readable>
  /**
   * Whether the store holds no object at all, in one cheap call (a folder's first entry, one listing
   * of one key): what `create` and `init` ask before they say that they started a store.
   */
  isEmpty(): Promise<boolean>
  list(prefix: string): AsyncIterable<ObjectInfo>
  /**
   * True when puts go to a file system on this machine, which takes data as fast as it can be
   * encrypted: `create` then encrypts on a second thread. A remote store is bound by the network and
   * needs memory for its upload buffers, so the work stays on one thread, and an object of a known
   * small size (a pack) is better staged in a file and given to putFile.
   */
  readonly local: boolean
  /**
   * Days an object is billed for at least, however soon it is deleted (S3 Standard-IA: 30); absent
   * where deleting early costs nothing. Repacking leaves younger packs alone.
   */
  readonly minimumStorageDays?: number
  /**
   * True when the times the store gives objects come from a clock of its own, which no one can set from
   * here (S3's LastModified): commands that decide by the clock then check this machine's against it
   * (domain/clock-check.ts). A folder's file times come from this machine's kernel, and anyone who can
   * write the folder can set an mtime.
   */
  readonly ownClock?: boolean
  /**
   * A URL that reads the object with a plain HTTP GET, without credentials, until `expiresInSeconds`
   * have passed (S3: a presigned GetObject). Only stores that can give such links implement it; the
   * URL is a bearer credential for that one object, so it is for the user, never for logs.
   */
  presign?(key: string, options: {expiresInSeconds: number}): Promise<string>
  put(key: string, source: Readable, options?: {signal?: AbortSignal}): Promise<{bytes: number}>
  /**
   * Stores the file at `path` under `key`, as put stores a stream; the file stays the caller's. A
   * store sends it the cheapest way it has (S3: one request read from the file, with no part buffers,
   * each try reading it anew). `onProgress` hears of the bytes as they leave, so that a slow upload is
   * not taken for a stalled one.
   */
  putFile(key: string, path: string, options?: PutFileOptions): Promise<{bytes: number}>
  /**
   * The store's own time now, from the last answer it gave (S3's Date header, advanced by the time
   * since on this machine's monotonic clock); undefined before any answer, and for a store whose clock
   * is not its own.
   */
  serverTime?(): Date | undefined
  stat(key: string): Promise<ObjectInfo | undefined>
}

export function assertValidKey(key: string): void {
  if (
    key === '' ||
    key.startsWith('/') ||
    key.endsWith('/') ||
    key.split('/').some((part) => part === '' || part === '.' || part === '..')
  ) {
    throw new Error(`invalid object key: ${JSON.stringify(key)}`)
  }
}
