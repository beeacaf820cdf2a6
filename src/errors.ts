/**
 * Exit codes are part of the CLI contract: scripts and cron wrappers branch on them.
 * They are documented in docs/output.md; change both together.
 */
/* eslint-disable perfectionist/sort-objects -- listed in numeric order, as documented */
export const ExitCode = {
  /** A backup, restore or other operation failed for a reason not listed below. */
  Failure: 1,
  /** Invalid flags, invalid config, unknown environment. Fix the invocation or the config. */
  Usage: 2,
  /** The named backup (or the latest one) does not exist. */
  NotFound: 3,
  /** Stored data failed authentication or a checksum: the backup cannot be trusted. */
  Integrity: 4,
  /** A key is missing or does not match: recipients to encrypt, or the identity to decrypt. */
  Keys: 5,
  /** A destructive action was not confirmed, or would overwrite existing files. */
  Refused: 6,
  /** A source or store could not be reached or written (server down, disk full, permissions). */
  Unavailable: 7,
  /** Interrupted by SIGINT/SIGTERM. */
  Interrupted: 130,
} as const
/* eslint-enable perfectionist/sort-objects */

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

export type ErrorCode =
  | 'BACKUP_FAILED'
  | 'BACKUP_NOT_FOUND'
  | 'CLOCK_UNTRUSTED'
  | 'CONFIG_INVALID'
  | 'CONFIG_NOT_FOUND'
  | 'CONFIG_VARIABLE_UNSET'
  | 'CONFIRMATION_REQUIRED'
  | 'CONFIRMATION_WRONG'
  | 'ENV_BUSY'
  | 'ENV_UNKNOWN'
  | 'IDENTITY_MISSING'
  | 'IDENTITY_WRONG'
  | 'INTEGRITY'
  | 'INTERNAL'
  | 'INTERRUPTED'
  | 'NOTHING_TO_BACK_UP'
  | 'OUTPUT_EXISTS'
  | 'OUTPUT_UNAVAILABLE'
  | 'RECIPIENTS_INVALID'
  | 'SOURCE_UNAVAILABLE'
  | 'STORE_NOT_FOUND'
  | 'STORE_UNAVAILABLE'
  | 'USAGE'

/**
 * An error meant for the person at the terminal: one line that says what went wrong,
 * one line that says what to do, and the exit code that scripts see.
 * Messages must never contain secrets; callers redact before constructing.
 */
export class BackupError extends Error {
  readonly code: ErrorCode
  readonly exitCode: ExitCodeValue
  readonly suggestion: string | undefined

  constructor(
    code: ErrorCode,
    message: string,
    options: {cause?: unknown; exitCode?: ExitCodeValue; suggestion?: string} = {},
  ) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = 'BackupError'
    this.code = code
    this.exitCode = options.exitCode ?? defaultExitCode(code)
    this.suggestion = options.suggestion
  }

  toJSON(): {code: ErrorCode; exitCode: number; message: string; suggestion?: string} {
    return {
      code: this.code,
      exitCode: this.exitCode,
      message: this.message,
      ...(this.suggestion ? {suggestion: this.suggestion} : {}),
    }
  }
}

function defaultExitCode(code: ErrorCode): ExitCodeValue {
  switch (code) {
    case 'BACKUP_NOT_FOUND': {
      return ExitCode.NotFound
    }

    case 'CONFIG_INVALID':
    case 'CONFIG_NOT_FOUND':
    case 'CONFIG_VARIABLE_UNSET':
    case 'ENV_UNKNOWN':
    case 'NOTHING_TO_BACK_UP':
    case 'USAGE': {
      return ExitCode.Usage
    }

    case 'CONFIRMATION_REQUIRED':
    case 'CONFIRMATION_WRONG':
    case 'OUTPUT_EXISTS': {
      return ExitCode.Refused
    }

    case 'IDENTITY_MISSING':
    case 'IDENTITY_WRONG':
    case 'RECIPIENTS_INVALID': {
      return ExitCode.Keys
    }

    case 'INTEGRITY': {
      return ExitCode.Integrity
    }

    case 'INTERRUPTED': {
      return ExitCode.Interrupted
    }

    case 'OUTPUT_UNAVAILABLE':
    case 'SOURCE_UNAVAILABLE':
    case 'STORE_NOT_FOUND':
    case 'STORE_UNAVAILABLE': {
      return ExitCode.Unavailable
    }

    default: {
      return ExitCode.Failure
    }
  }
}

/**
 * Maps low-level filesystem errors to something a user can act on, naming `what` was being written and
 * the path that failed; anything else passes through. `code` says whose fault it is (the store by
 * default; an output folder for download and export).
 */
export function describeIoError(
  error: unknown,
  what: string,
  code: 'OUTPUT_UNAVAILABLE' | 'STORE_UNAVAILABLE' = 'STORE_UNAVAILABLE',
): BackupError | undefined {
  const errno = (error as NodeJS.ErrnoException | undefined)?.code
  const path = (error as NodeJS.ErrnoException | undefined)?.path
  const at = ` (${errno}${path ? `: ${path}` : ''})`
  switch (errno) {
    case 'EACCES':
    case 'EPERM': {
      return new BackupError(code, `Permission denied while writing ${what}${at}.`, {
        cause: error,
        suggestion: 'Check the ownership and permissions of the folder, or choose another location.',
      })
    }

    case 'EDQUOT':
    case 'ENOSPC': {
      return new BackupError(code, `No space left on the device while writing ${what}${at}.`, {
        cause: error,
        suggestion: 'Free some space (nothing partial was committed), then run the command again.',
      })
    }

    case 'EEXIST':
    case 'EISDIR':
    case 'ENOTDIR': {
      return new BackupError(
        code,
        `Cannot write ${what}: ${errno === 'ENOTDIR' ? 'a part of the path is a file, not a folder' : errno === 'EISDIR' ? 'a folder is where a file should go' : 'something already exists where a folder should go'}${at}.`,
        {
          cause: error,
          suggestion: 'Choose a folder path whose parents are folders, or move the file that is in the way.',
        },
      )
    }

    case 'EIO': {
      return new BackupError(code, `An input/output error occurred while writing ${what}${at}.`, {
        cause: error,
        suggestion: 'The disk or network file system failed; check it, then run the command again.',
      })
    }

    case 'ENOENT': {
      return new BackupError(code, `A folder disappeared while writing ${what}${at}.`, {
        cause: error,
        suggestion: 'Something removed it meanwhile; run the command again.',
      })
    }

    case 'EROFS': {
      return new BackupError(code, `The file system is read-only while writing ${what}${at}.`, {
        cause: error,
        suggestion: 'Choose a writable location.',
      })
    }

    default: {
      return undefined
    }
  }
}

/** Failures of a local file system written to: full, over quota, read-only, refused or failing. */
const LOCAL_WRITE_FAULTS = new Set(['EACCES', 'EDQUOT', 'EIO', 'ENOSPC', 'EPERM', 'EROFS'])

/**
 * A failure of the local file system that a restore writes `what` into, named as such (exit 7):
 * a full disk is not a damaged backup, nor an unexpected error. Undefined for any other failure.
 */
export function targetFailure(error: unknown, what: string): BackupError | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  if (code === undefined || !LOCAL_WRITE_FAULTS.has(code)) return undefined
  return describeIoError(error, what, 'OUTPUT_UNAVAILABLE')
}

/**
 * A file that a command writes into its temp folder (DIVIO_BACKUP_TMPDIR) could not be written. That
 * folder is the one to blame, not the source the data came from or the store it goes to, so the
 * message names it, and says what it needs room for (`room`). A write to an open file reports no path,
 * which is why the caller, which knows where it was writing, says so.
 */
export function tempFolderFailure(error: unknown, what: string, folder: string, room: string): BackupError {
  const full = /FULL|ENOSPC|EDQUOT/.test(String((error as undefined | {code?: unknown})?.code ?? ''))
  return new BackupError(
    'SOURCE_UNAVAILABLE',
    `Cannot write ${what} into the temp folder ${folder}: ${full ? 'the disk is full' : describeCause(error)}.`,
    {
      cause: error,
      suggestion: full
        ? `Free space there, or point DIVIO_BACKUP_TMPDIR at a folder with room for ${room}.`
        : 'Check that the temp folder is writable, or point DIVIO_BACKUP_TMPDIR elsewhere.',
    },
  )
}

/**
 * Why a read of a file failed, as a clause, for the failures a disk gives: an input/output error (a
 * failing sector, a network file system that went away) or a permission; else the system's words.
 */
export function describeReadError(error: unknown): string {
  const {code} = error as NodeJS.ErrnoException
  if (code === 'EIO') return 'an input/output error (EIO): the disk or file system that holds it could not read it'
  if (code === 'EACCES' || code === 'EPERM') return `permission denied (${code})`
  return describeCause(error)
}

/** A source (a database, the media) that failed as it was read, for a cause this tool has no words of its own for. */
export function sourceReadFailure(error: unknown, location: string): BackupError {
  if ((error as NodeJS.ErrnoException | undefined)?.code === 'ENAMETOOLONG') return pathTooLong(error, location)
  return new BackupError('SOURCE_UNAVAILABLE', `Reading ${location} failed: ${describeCause(error)}.`, {
    cause: error,
    suggestion: 'Check that the source is reachable and readable, then run the command again.',
  })
}

/**
 * A read under a path longer than the system names a file by (PATH_MAX): a tree nested that deep.
 * The path is named by its start, not whole (it is some 4 KB long): `path`, else the error's own.
 */
export function pathTooLong(error: unknown, location: string, path?: string): BackupError {
  const {message, path: errorPath} = error as NodeJS.ErrnoException
  const named = path ?? (typeof errorPath === 'string' ? errorPath : /'([^']*)'/.exec(String(message))?.[1])
  return new BackupError(
    'SOURCE_UNAVAILABLE',
    `Reading ${location} failed: a path in it is longer than this system names a file by (ENAMETOOLONG, 4,096 bytes on Linux)${named ? `: ${named.slice(0, 120)}…` : ''}.`,
    {
      cause: error,
      suggestion:
        'Move or rename the folders on the way to it, so that its whole path is shorter (a backup names every file by it), then run the command again.',
    },
  )
}

/** Whether `error` is the system's own (an errno), not a program's or this tool's. */
export function isSystemError(error: unknown): error is NodeJS.ErrnoException {
  const {code} = (error ?? {}) as NodeJS.ErrnoException
  return !(error instanceof BackupError) && typeof code === 'string' && /^E[A-Z]+$/.test(code)
}

/** An error's message as a clause: for "…failed: <cause>." */
export function describeCause(error: unknown): string {
  return error instanceof Error ? error.message.replace(/\.$/, '') : String(error)
}
