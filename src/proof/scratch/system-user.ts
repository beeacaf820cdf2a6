import {readFile} from 'node:fs/promises'

import {BackupError} from '../../errors.js'

/**
 * The uid and gid of a system user (`postgres`, `mysql`), from /etc/passwd. As root, a drill runs its
 * scratch server as that user, as the Debian packages arrange it: neither server runs as root.
 */
export async function systemUser(name: string): Promise<{gid: number; uid: number}> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '')
  const entry = passwd.split('\n').find((line) => line.startsWith(`${name}:`))
  if (entry === undefined) {
    throw new BackupError(
      'SOURCE_UNAVAILABLE',
      `As root, a drill runs its scratch server as the user ${name}, which does not exist.`,
      {suggestion: 'Run the drill as an ordinary user, or install the server package, which creates the user.'},
    )
  }

  const fields = entry.split(':')
  return {gid: Number(fields[3]), uid: Number(fields[2])}
}
