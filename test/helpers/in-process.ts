import {run} from '@oclif/core'
import {Exit, handle} from '@oclif/core/handle'
import {readdirSync, readFileSync, readlinkSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {setTimeout as sleep} from 'node:timers/promises'
import {pathToFileURL} from 'node:url'

/** What one command printed, and how it ended. */
export interface Outcome {
  status: number
  stderr: string
  stdout: string
}

/** Process-wide events a command may listen to while it runs; it must leave them as it found them. */
const PROCESS_EVENTS = ['SIGINT', 'SIGTERM', 'beforeExit', 'exit', 'uncaughtException', 'unhandledRejection'] as const

let busy = false

/**
 * A thread's exit guard (src/lib/exit-guard.ts) stays with its thread, by design: a command may leave
 * one for the main thread and one for the service thread, and the process holds no more than those
 * and the ones of the test's own modules (loaded from src/, apart from the bundle's).
 */
const EXIT_GUARD_NAME = 'divio-exit-guard'
const EXIT_GUARDS_AT_MOST = 4

/**
 * Runs one command of the built plugin inside this process, the way a host such as the divio CLI runs
 * it: oclif's `run` (on a config loaded afresh, from modules loaded once), then oclif's own error
 * handling, with its process exit turned into a status. The command gets `cwd` and exactly `env` as the process's working folder and
 * environment, no terminal, and its own stdout and stderr; all of them are put back afterwards.
 *
 * Besides saving a Node.js start per command (most of what a short command costs), this checks that
 * the plugin is a good guest: a command that leaves a signal or exit listener behind fails here, as it
 * would pile up in a long-lived host, and so does one that leaves a file open in its project or the
 * temp folder, or a program it started still running.
 *
 * One command at a time: the working folder and the environment belong to the whole process. Tests of
 * signals, of commands running side by side and of the process boundary itself start real processes.
 */
export async function runInThisProcess(executable: string, cwd: string, env: NodeJS.ProcessEnv, argv: string[]) {
  if (busy)
    throw new Error(
      'a command is still running in this process (one that a test did not await?): start a process for a second one',
    )
  busy = true
  try {
    return await runWith(pathToFileURL(executable).href, cwd, env, argv)
  } finally {
    busy = false
  }
}

async function runWith(executable: string, cwd: string, env: NodeJS.ProcessEnv, argv: string[]): Promise<Outcome> {
  const listeners = PROCESS_EVENTS.map((event) => process.listenerCount(event))
  const folders = [cwd, env.TMPDIR ?? tmpdir()]
  const filesBefore = openFilesUnder(folders)
  const childrenBefore = childProcesses()
  const previousCwd = process.cwd()
  // First: a folder that is not there throws here, before anything of the process has been changed.
  process.chdir(cwd)
  const restoreEnvironment = replaceEnvironment(env)
  const stdout = capture(process.stdout)
  const stderr = capture(process.stderr)
  const restoreTerminal = withoutTerminal()
  const {exit} = Exit
  let exitedWith: number | undefined
  Exit.exit = ((code = 0) => {
    exitedWith ??= code
  }) as typeof Exit.exit

  let status: number
  try {
    try {
      // Its output is captured whole as it is written: there is nothing to flush.
      await run(argv, executable)
    } catch (error) {
      await handle(error as Error)
    }

    status = exitedWith ?? Number(process.exitCode ?? 0)
  } finally {
    Exit.exit = exit
    process.exitCode = undefined
    restoreTerminal()
    stderr.restore()
    stdout.restore()
    process.chdir(previousCwd)
    restoreEnvironment()
  }

  const left = PROCESS_EVENTS.filter((event, index) => process.listenerCount(event) !== listeners[index])
  if (left.length > 0) {
    throw new Error(`divio ${argv.join(' ')} changed the process's ${left.join(', ')} listeners and left them so`)
  }

  const open = await filesLeftOpen(folders, filesBefore)
  if (open.length > 0) throw new Error(`divio ${argv.join(' ')} left files open: ${open.join(', ')}`)
  const running = await processesLeftRunning(childrenBefore)
  if (running.length > 0) throw new Error(`divio ${argv.join(' ')} left processes running: ${running.join('; ')}`)
  const guards = [...childProcesses()].filter((pid) => isExitGuard(pid))
  const newGuards = guards.filter((pid) => !childrenBefore.has(pid))
  if (newGuards.length > 2 || guards.length > EXIT_GUARDS_AT_MOST) {
    throw new Error(
      `divio ${argv.join(' ')} left ${newGuards.length} new exit guards, ${guards.length} in all: one a thread is enough`,
    )
  }

  return {status, stderr: stderr.text(), stdout: stdout.text()}
}

/**
 * The files under `folders` that this process opened since `before` ({@link openFilesUnder}) and still
 * has open, once any that close within five seconds have (a stream destroyed as a command failed may
 * close just after it ends, later on a loaded machine). A command that leaves one open for good leaves
 * it to a collection, which in a host may come much later: its descriptor keeps a removed file's bytes
 * on disk (a decrypted download's, in a staging folder), and a host that runs many commands runs out
 * of descriptors.
 */
async function filesLeftOpen(folders: string[], before: Set<string>): Promise<string[]> {
  for (let waited = 0; ; waited += 20) {
    const open = [...openFilesUnder(folders)].filter((file) => !before.has(file))
    if (open.length === 0 || waited >= 5000) return open.map((file) => file.slice(file.indexOf(' ') + 1))
    await sleep(20)
  }
}

/**
 * The programs this process started since `before` ({@link childProcesses}) that still run, exit guards
 * and the test runner's compiler aside, once any that end within five seconds have: a command that
 * leaves one running (a database session, a guard of its own, a compressor) leaves it to its host,
 * which may run many commands and never end them. As the program's command line.
 */
async function processesLeftRunning(before: Set<number>): Promise<string[]> {
  for (let waited = 0; ; waited += 20) {
    const running = [...childProcesses()].filter((pid) => !before.has(pid) && !isExitGuard(pid) && !isTestCompiler(pid))
    if (running.length === 0 || waited >= 5000) return running.map((pid) => commandLine(pid))
    await sleep(20)
  }
}

/** The running children of this process (of any of its threads), as /proc shows them (Linux); zombies left out. */
function childProcesses(): Set<number> {
  const children = new Set<number>()
  let tasks: string[]
  try {
    tasks = readdirSync('/proc/self/task')
  } catch {
    return children
  }

  for (const task of tasks) {
    let listed = ''
    try {
      listed = readFileSync(`/proc/self/task/${task}/children`, 'utf8')
    } catch {
      // The thread has ended since it was listed.
    }

    for (const pid of listed.split(' ').filter(Boolean).map(Number)) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
        if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z') children.add(pid)
      } catch {
        // It has ended since.
      }
    }
  }

  return children
}

function isExitGuard(pid: number): boolean {
  return commandLine(pid).endsWith(` ${EXIT_GUARD_NAME}`)
}

/**
 * tsx's esbuild service, which compiles this process's TypeScript as it is imported: it starts with the
 * first module that is not in tsx's cache, and runs as long as the process. When the only such module
 * is one that a command imports lazily (a cache warm but for a module just edited), it starts during
 * that command, which did not start it. The plugin itself never runs esbuild.
 */
function isTestCompiler(pid: number): boolean {
  return /\/esbuild --service=[\d.]+ --ping$/.test(commandLine(pid))
}

function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()
  } catch {
    return `process ${pid}, ended since`
  }
}

/**
 * This process's open files under `folders`, as "descriptor path", where /proc shows them (Linux).
 * The files of the S3 server that a test runs in this process (test/helpers/s3.ts) are the test's own.
 */
function openFilesUnder(folders: string[]): Set<string> {
  const under = folders.map((folder) => `${folder.replace(/\/$/, '')}/`)
  let descriptors: string[]
  try {
    descriptors = readdirSync('/proc/self/fd')
  } catch {
    return new Set()
  }

  return new Set(
    descriptors.flatMap((descriptor) => {
      try {
        const target = readlinkSync(`/proc/self/fd/${descriptor}`)
        const ours = under.some((folder) => target.startsWith(folder)) && !target.includes('/s3rver-')
        return ours ? [`${descriptor} ${target}`] : []
      } catch {
        // Closed since it was listed (the listing's own descriptor, too).
        return []
      }
    }),
  )
}

/** Sets the process's environment (the C-level one too, which os.homedir() reads) to `env` for a while. */
function replaceEnvironment(env: NodeJS.ProcessEnv): () => void {
  const saved = {...process.env}
  const set = (variables: NodeJS.ProcessEnv) => {
    for (const name of Object.keys(process.env)) if (!(name in variables)) delete process.env[name]
    for (const [name, value] of Object.entries(variables)) if (value !== undefined) process.env[name] = value
  }

  set(env)
  return () => set(saved)
}

/** Collects what is written to `stream` instead of letting it through. */
function capture(stream: NodeJS.WriteStream) {
  const chunks: Buffer[] = []
  const write = (chunk: string | Uint8Array, encoding?: unknown, callback?: unknown): boolean => {
    chunks.push(
      typeof chunk === 'string'
        ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
        : Buffer.from(chunk),
    )
    const done = typeof encoding === 'function' ? encoding : callback
    if (typeof done === 'function') queueMicrotask(() => done())
    return true
  }

  const own = Object.getOwnPropertyDescriptor(stream, 'write')
  Object.defineProperty(stream, 'write', {configurable: true, value: write, writable: true})
  return {
    restore() {
      if (own) Object.defineProperty(stream, 'write', own)
      else delete (stream as {write?: unknown}).write
    },
    text: () => Buffer.concat(chunks).toString('utf8'),
  }
}

/** No terminal on any of the three streams, as for a command whose output a script reads. */
function withoutTerminal(): () => void {
  const streams = [process.stdin, process.stdout, process.stderr]
  const saved = streams.map((stream) => Object.getOwnPropertyDescriptor(stream, 'isTTY'))
  for (const stream of streams)
    Object.defineProperty(stream, 'isTTY', {configurable: true, value: false, writable: true})
  return () => {
    for (const [index, stream] of streams.entries()) {
      const own = saved[index]
      if (own) Object.defineProperty(stream, 'isTTY', own)
      else delete (stream as {isTTY?: boolean}).isTTY
    }
  }
}
