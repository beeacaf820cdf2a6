import {spawnSync} from 'node:child_process'
import {mkdirSync} from 'node:fs'

/** A small tmpfs at `folder`, to make a full or read-only file system; skips (saying why) where mounting is not allowed. */
export function mountTmpfs(context: Mocha.Context, folder: string, options: string): string {
  mkdirSync(folder)
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', folder]).status !== 0) {
    console.log('      (skipped: mounting a tmpfs needs root; CI runs the suite as root)')
    context.skip()
  }

  return folder
}
