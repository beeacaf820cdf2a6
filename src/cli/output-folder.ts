import {BackupError} from '../errors.js'

/**
 * The folder that `-o/--output` names. Other tools read "-" as standard output; here it would be a
 * folder named "-" in the working folder, with the decrypted database and media in it, where nobody
 * looks for them.
 */
export function outputFolder(value: string | undefined): string | undefined {
  if (value !== '-') return value
  throw new BackupError(
    'USAGE',
    '-o/--output names a folder to write files into, and "-" is not standard output here. Nothing was written.',
    {
      suggestion:
        'Give a folder (-o ./backup, or -o ./- for a folder of that name). To stream a backup into another program, decrypt its stored object with the stock tools (docs/restore.md).',
    },
  )
}
