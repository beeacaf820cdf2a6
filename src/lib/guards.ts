import {startGuardProcess} from './process.js'

/**
 * Guards: small `sh` processes that act for this process once it is gone, however it ended (SIGKILL,
 * a crash and the OOM killer run no cleanup in it). Each waits on a pipe from this process, which the
 * kernel closes as the process ends (process.ts starts them).
 */

/**
 * A guard that cleans up after this process however it ends, SIGKILL included: `sh -c script` waits on
 * a pipe from this process and runs the rest of the script when the pipe closes, which the kernel does
 * when this process is gone. `release()` closes it on purpose, once the caller has cleaned up itself;
 * `dismiss()` ends it without running the script (what it was to clean up is not this process's).
 */
export function startReaper(script: string, args: readonly string[]): Guard {
  return startGuard(`read _ignored; ${script}`, args)
}

/**
 * Ends this process with `signal` if it still runs `graceMs` from now (SIGKILL 5 s later if that did
 * not), and once it is gone, however it ended, removes what is left of its staging folders in
 * `staging.root` (named `divio-<purpose>-<tag>-<random>`: staging.ts).
 *
 * For SIGINT and SIGTERM, which must end any command within seconds: Node.js cannot exit while one of
 * its threads waits in a system call that does not return (a read from a hung mount, the open of a
 * FIFO), since process.exit() first waits for its worker threads and its thread pool. Only a
 * signal's default action ends such a process, and only another process can send it: by then this
 * one's event loop may be gone. A guard, like the reaper: the timer stops when the pipe closes.
 */
export function startStopDeadline(signal: NodeJS.Signals, graceMs: number, staging: {root: string; tag: string}): void {
  const script = [
    '( sleep "$3"; kill -s "$2" "$1"; sleep 5; kill -s KILL "$1" ) 2>/dev/null & timer=$!',
    'read _ignored',
    'kill "$timer" 2>/dev/null',
    'rm -rf -- "$4"/divio-*-"$5"-??????',
  ].join('\n')
  const seconds = String(Math.ceil(graceMs / 1000))
  startGuard(script, [String(process.pid), signal.replace(/^SIG/, ''), seconds, staging.root, staging.tag])
}

export interface Guard {
  /** Stops the guard without running its script. */
  dismiss(): void
  /** Runs its script now, and ends the guard. */
  release(): void
}

function startGuard(script: string, args: readonly string[]): Guard {
  const child = startGuardProcess(script, args, 'guard')
  return {
    dismiss() {
      child.kill('SIGKILL')
    },
    release() {
      child.stdin!.end()
    },
  }
}

/**
 * A guard told what to clean up as it goes (exit-guard.ts): its script reads lines from this process
 * until the pipe closes, and then acts on all of them. `name` is its `$0`, which `ps` shows.
 */
export interface ToldGuard {
  /** Whether the guard has ended (killed from outside): what it was told is no longer guarded. */
  readonly ended: boolean
  /** Resolves once `line` is in the pipe, where the guard reads it even if this process is gone next. */
  tell(line: string): Promise<void>
}

export function startToldGuard(script: string, name: string): ToldGuard {
  const child = startGuardProcess(script, [], name)
  let ended = false
  child.once('exit', () => {
    ended = true
  })
  return {
    get ended() {
      return ended
    },
    tell(line) {
      return new Promise((resolve) => {
        // An error (the guard is gone) is the guard's `ended`, not the caller's to handle.
        child.stdin!.write(`${line}\n`, () => resolve())
      })
    },
  }
}
