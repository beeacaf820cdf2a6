import {PassThrough, Readable} from 'node:stream'

import {redactDsn} from '../../config/dsn.js'
import {BackupError} from '../../errors.js'
import {ProcessError} from '../../lib/process.js'

/** A tool's failure as one redacted sentence, ending in its last error line. */
export function describeToolError(error: unknown): string {
  const text = error instanceof ProcessError ? error.message : redactDsn((error as Error).message)
  return /[.?!]$/.test(text) ? text : `${text}.`
}

/**
 * Wraps a dump tool's output so that its failure reaches the backup as the error users need to read:
 * the dump did not finish, and the tool's last error line; or what `explain` makes of that line, for a
 * failure the provider knows the cause of.
 */
export function dumpStream(stream: Readable, explain?: (detail: string) => BackupError | undefined): Readable {
  const output = new PassThrough({highWaterMark: 1024 * 1024})
  stream.on('error', (error) => {
    const detail = describeToolError(error)
    output.destroy(
      explain?.(detail) ??
        new BackupError('BACKUP_FAILED', `The database dump did not finish: ${detail}`, {
          cause: error,
          suggestion: 'Check that the database server stayed up and reachable during the backup, then run it again.',
        }),
    )
  })
  return stream.pipe(output)
}
