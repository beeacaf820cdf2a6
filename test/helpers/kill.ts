import {ChildProcess, spawn, spawnSync, SpawnSyncReturns} from 'node:child_process'
import {setTimeout as sleep} from 'node:timers/promises'

import {Project, runJs} from './project.js'

/** Starts `divio app backup ARGS` in the background, with no output, to be killed part-way. */
export function startCli(
  project: Pick<Project, 'env' | 'root'>,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): ChildProcess {
  return spawn(process.execPath, [runJs, 'app', 'backup', ...args], {
    cwd: project.root,
    env: {...project.env, ...env},
    stdio: ['ignore', 'ignore', 'ignore'],
  })
}

/** Sends SIGKILL after `ms` milliseconds, and resolves once the process is gone. */
export async function killAfter(child: ChildProcess, ms: number): Promise<void> {
  const exited = new Promise<void>((resolve) => {
    child.on('exit', () => resolve())
  })
  await sleep(ms)
  child.kill('SIGKILL')
  await exited
}

/**
 * Runs `divio app backup ARGS` under strace, which makes the first of `syscalls` that names `path` do
 * `inject` (strace's `signal=KILL`, `error=EIO`): a fault in one step's own system call, whatever the
 * machine's speed.
 */
export function cliUnderStrace(
  project: Pick<Project, 'env' | 'root'>,
  args: string[],
  fault: {inject: string; path: string; syscalls: string},
): SpawnSyncReturns<string> {
  const {inject, path, syscalls} = fault
  return straceCli(project, args, [
    '-o',
    '/dev/null',
    '-P',
    path,
    '-e',
    `trace=${syscalls}`,
    '-e',
    `inject=${syscalls}:${inject}:when=1`,
  ])
}

/** Runs `divio app backup ARGS` under strace with `options`, following the programs it starts. */
export function straceCli(
  project: Pick<Project, 'env' | 'root'>,
  args: string[],
  options: string[],
): SpawnSyncReturns<string> {
  return spawnSync('strace', ['-f', '-qq', ...options, process.execPath, runJs, 'app', 'backup', ...args], {
    cwd: project.root,
    encoding: 'utf8',
    env: project.env,
  })
}
