import {ChildProcess, spawnSync} from 'node:child_process'
import {readdirSync, readFileSync, readlinkSync} from 'node:fs'
import {setTimeout as sleep} from 'node:timers/promises'

/**
 * Waits (up to 10 s) for a running child of `parent` whose argv matches, and returns its argv and
 * environment. Matching on the parent keeps concurrent test runs on one machine from confusing each other.
 */
export async function waitForProcess(
  parent: number | undefined,
  matches: (argv: string[]) => boolean,
): Promise<undefined | {argv: string[]; environ: string}> {
  for (let attempt = 0; attempt < 200; attempt++) {
    for (const pid of readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
      try {
        // /proc/<pid>/stat is "pid (comm) state ppid …"; comm may hold spaces, so read after the last ")".
        const stat = readFileSync(`/proc/${pid}/stat`).toString()
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
        if (ppid !== parent) continue
        const argv = readFileSync(`/proc/${pid}/cmdline`).toString().split('\0')
        if (matches(argv)) return {argv, environ: readFileSync(`/proc/${pid}/environ`).toString()}
      } catch {
        // The process ended between listing and reading.
      }
    }

    await sleep(50)
  }

  return undefined
}

/** This process's open descriptors on files under `folder`: a host's process outlives the command. */
export function openUnder(folder: string): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`)
      return target.startsWith(`${folder}/`) ? [target] : []
    } catch {
      return []
    }
  })
}

/** Whether a process with this pid is alive (or a zombie not yet reaped). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Resolves once `pid` has gone. Polled without a deadline of its own: the test's timeout is the bound. */
export async function untilGone(pid: number): Promise<void> {
  while (isAlive(pid)) await sleep(20)
}

/**
 * The first chunk a child writes to its stdout (as UTF-8): a helper script's "ready". Rejects if the
 * child exits first, as a script that fails to start does (its error goes to the test's stderr), so
 * that the test fails at once instead of waiting for its timeout.
 */
export function firstOutput(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', (chunk: Buffer) => resolve(chunk.toString()))
    child.once('exit', (code, signal) =>
      reject(new Error(`the helper process exited (${signal ?? `status ${code}`}) before it wrote anything`)),
    )
  })
}

/** Collects what a child prints; `exited` resolves with its exit code. */
export function watch(child: ChildProcess): {
  exited: Promise<null | number>
  output: () => {stderr: string; stdout: string}
  pid: number | undefined
} {
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const exited = new Promise<null | number>((resolve) => {
    child.on('exit', (code) => resolve(code))
  })
  return {exited, output: () => ({stderr, stdout}), pid: child.pid}
}

/** The pids of processes whose command line names `path` (a drill's scratch server, while it runs). */
export function processesUsing(path: string): string[] {
  return spawnSync('pgrep', ['-f', path], {encoding: 'utf8'}).stdout.split('\n').filter(Boolean)
}

/**
 * Starts `drill` with DIVIO_BACKUP_TMPDIR=`tmp`, sends `signal` once its scratch server runs (the
 * moment there is most to clean up), and resolves with its exit code once every process and file of
 * the scratch is gone; fails if they are still there after 30 s.
 */
export async function drillStoppedOnceItsServerRuns(
  start: () => ChildProcess,
  tmp: string,
  signal: NodeJS.Signals,
): Promise<null | number> {
  const child = start()
  const exited = new Promise<null | number>((resolve) => {
    child.on('exit', (code) => resolve(code))
  })
  for (let waited = 0; processesUsing(tmp).length === 0; waited += 20) {
    if (waited > 60_000) throw new Error('the drill did not start its server within 60 s')
    await sleep(20)
  }

  child.kill(signal)
  const code = await exited
  for (let waited = 0; processesUsing(tmp).length > 0 || readdirSync(tmp).length > 0; waited += 50) {
    if (waited > 30_000) throw new Error(`the scratch server or its files were left after ${signal}`)
    await sleep(50)
  }

  return code
}

/**
 * Whether a thread of `pid` waits in one of the kernel functions `wchans` (the wchan of each task in /proc):
 * wait_for_partner for the open of a FIFO, folio_wait_bit_common for a page a hung mount has not
 * filled. A test that needs a call blocked in the kernel waits for this, not for time to pass.
 */
export function waitsIn(pid: number, ...wchans: string[]): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).some((task) => {
      try {
        return wchans.includes(readFileSync(`/proc/${pid}/task/${task}/wchan`, 'utf8'))
      } catch {
        return false
      }
    })
  } catch {
    return false
  }
}

/** Waits until `condition` holds, checking often: a guard against a hang, far above any honest wait. */
export async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline && !condition()) await sleep(20)
  if (!condition()) throw new Error(`gave up waiting: ${what}`)
}
