import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, renameSync, rmdirSync, rmSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'

/** A small tmpfs at `folder`, to make a full or read-only file system; skips (saying why) where mounting is not allowed. */
export function mountTmpfs(context: Mocha.Context, folder: string, options: string): string {
  mkdirSync(folder)
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', folder]).status !== 0) {
    console.log('      (skipped: mounting a tmpfs needs root; CI runs the suite as root)')
    context.skip()
  }

  return folder
}

/**
 * Puts a small tmpfs where the folder `folder` is, holding what the folder held: a folder turned into
 * a mount point (a volume, as containers mount one), contents and all. Skips as mountTmpfs does.
 */
export function mountOverFolder(context: Mocha.Context, folder: string): void {
  const contents = `${folder}.contents`
  renameSync(folder, contents)
  mountTmpfs(context, folder, 'size=16m')
  execFileSync('cp', ['-a', `${contents}/.`, folder])
  rmSync(contents, {recursive: true})
}

/** The Python that has python3-fuse, for the suite's FUSE file systems (test/fixtures/*fs.py). */
export const SYSTEM_PYTHON = '/usr/bin/python3'

/** Skips the suite that calls it, saying why, where FUSE file systems cannot be mounted. */
export function skipWithoutFuse(context: Mocha.Context): void {
  if (fuseAvailable()) return
  console.log('      (skipped: needs /dev/fuse and python3-fuse: apt-get install -y python3-fuse fuse3)')
  context.skip()
}

/** Whether this machine can mount the suite's FUSE file systems (python3-fuse, fusermount and /dev/fuse). */
export function fuseAvailable(): boolean {
  return (
    existsSync('/dev/fuse') &&
    spawnSync(SYSTEM_PYTHON, ['-c', 'import fuse'], {stdio: 'ignore'}).status === 0 &&
    spawnSync('fusermount', ['-V'], {stdio: 'ignore'}).status === 0
  )
}

const holdFs = fileURLToPath(new URL('../fixtures/holdfs.py', import.meta.url))

/**
 * Serves the local store at `store` from a read-only FUSE mirror of itself (test/fixtures/holdfs.py)
 * whose reads of one object, from `offset` on, wait until the test lets them go: a store on a mount
 * that hangs, on demand, with the object still a regular file (the local store reads nothing else).
 * `held()` turns true once a read has reached the offset; `hang()` makes every later call wait, as
 * on a mount whose server has gone away; `letGo()` lets every call go on; `release()` unmounts the
 * mirror and puts the store back.
 */
export async function holdStoreRead(store: string, object: string, offset: number) {
  const real = `${store}.real`
  const control = mkdtempSync(join(dirname(store), 'hold-'))
  renameSync(store, real)
  mkdirSync(store)
  const server = spawn(SYSTEM_PYTHON, [holdFs, store, '-f'], {
    env: {
      ...process.env,
      HOLDFS_CONTROL: control,
      HOLDFS_FILE: `/${object}`,
      HOLDFS_HALF: String(offset),
      HOLDFS_SOURCE: real,
    },
    stdio: 'ignore',
  })
  const gone = new Promise((resolve) => {
    server.on('exit', resolve)
  })
  // A hang guard only: the mount is there within a second.
  for (let waited = 0; !existsSync(join(store, object)); waited += 20) {
    if (waited > 60_000) throw new Error('the FUSE mirror of the store did not come up')
    await sleep(20)
  }

  const letGo = () => writeFileSync(join(control, 'release'), '')
  return {
    hang: () => writeFileSync(join(control, 'hang'), ''),
    held: () => existsSync(join(control, 'held')),
    letGo,
    async release() {
      letGo()
      execFileSync('fusermount', ['-u', '-z', store])
      server.kill()
      await gone
      rmdirSync(store)
      renameSync(real, store)
      rmSync(control, {force: true, recursive: true})
    },
  }
}
