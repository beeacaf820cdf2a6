import {ChildProcess, spawn} from 'node:child_process'
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
