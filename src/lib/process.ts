import {ChildProcess, spawn} from 'node:child_process'
import {Duplex, Readable, Transform} from 'node:stream'

import {redactDsn} from '../config/dsn.js'
import {giveBack, lendToFree} from './buffer-loan.js'

/**
 * The one place that starts external programs (pg_dump, pg_restore, psql, …).
 *
 * Secrets never go into argv, where any local user can read them in /proc/<pid>/cmdline or `ps`:
 * callers pass them through `env` (PGPASSWORD) or a 0600 file. Every message built here is redacted.
 */

export interface RunOptions {
  /** The working folder of the program; the current one if not given. */
  cwd?: string
  /** Added to the inherited environment. */
  env?: NodeJS.ProcessEnv
  /** Bytes written to stdin, if any. */
  input?: Buffer | string
  signal?: AbortSignal
  /** A stream fed to stdin (streamFrom only). */
  stdin?: Readable
  /** Kill the process after this many milliseconds. */
  timeoutMs?: number
}

/**
 * Receives every program this process starts, as one redacted line (`pg_dump --format=custom …`),
 * for `--verbose`. Only names and arguments: secrets never reach argv (see above), and the line is
 * redacted once more on the way out.
 */
let trace: ((line: string) => void) | undefined

export function traceProcesses(sink?: (line: string) => void): void {
  trace = sink
}

/** One argument as a shell would need it, so that a traced line can be pasted. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", String.raw`'\''`)}'`
}

function traced(command: string, args: readonly string[], options: RunOptions): void {
  if (trace === undefined) return
  trace(
    redactDsn([command, ...args].map((word) => shellWord(word)).join(' ')) +
      (options.cwd ? `  (in ${options.cwd})` : ''),
  )
}

export class ProcessError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: null | number,
    readonly signal: NodeJS.Signals | null,
    /** The last non-empty line the program wrote to stderr, redacted. */
    readonly lastStderrLine: string,
  ) {
    super(
      exitCode === null && signal === null
        ? `${command} could not be started: ${lastStderrLine}`
        : `${command} ${signal ? `was killed by ${signal}` : `exited with status ${exitCode}`}${lastStderrLine ? `: ${lastStderrLine}` : ' without an error message'}`,
    )
    this.name = 'ProcessError'
  }
}

/** Runs a program to completion and returns its stdout; rejects with ProcessError on a non-zero exit. */
export async function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  traced(command, args, options)
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: {...process.env, ...options.env},
    signal: options.signal,
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    timeout: options.timeoutMs,
  })
  const stdout: Buffer[] = []
  const stderr = new StderrTail()
  child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk))
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk))
  if (child.stdin) {
    // A program that exits without reading its input closes the pipe; its exit status tells the story.
    child.stdin.on('error', () => {})
    child.stdin.end(options.input)
  }

  const [exitCode, signal] = await exited(child, command)
  if (exitCode !== 0) throw new ProcessError(command, exitCode, signal, stderr.lastLine())
  return Buffer.concat(stdout).toString('utf8')
}

/**
 * Starts a program whose stdout is data (a dump). The returned stream ends only if the program exits 0;
 * a non-zero exit, a signal or a spawn failure makes it error with ProcessError instead, so a dump that
 * stops half-way can never pass for a complete one.
 */
export function streamFrom(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): {pid: number | undefined; stream: Readable} {
  const {child, output} = start(command, args, options, options.stdin ? 'pipe' : 'ignore')
  const input = options.stdin
  if (input && child.stdin) {
    input.pipe(child.stdin)
    // pipe() leaves its source paused when the program stops reading (a restore that failed and
    // exited): a file's read stream then keeps the file, a decrypted dump in a folder that is removed
    // next, open until a collection. Stopped when the program's stdin closes, without an error: the
    // program's exit says how it ended. (pipeline() would also end the program's input when the
    // source fails, and a program that had read part of a script could then exit 0.)
    child.stdin.once('close', () => {
      if (!input.readableEnded) input.destroy()
    })
  }

  return {pid: child.pid, stream: output}
}

/** A program as a stream stage (zstd, for example): bytes in through stdin, out through stdout, checked like streamFrom. */
export function through(command: string, args: readonly string[], options: RunOptions = {}): Duplex {
  const {child, output} = start(command, args, options, 'pipe')
  const stdin = child.stdin!
  // Each chunk of stdout is passed on as it came, a buffer of its own that the stage reading it last
  // may free (see start). (Duplex.from read its readable side with read(), which joined whatever was
  // buffered into a new buffer: a copy of every byte the program wrote, and garbage.)
  const stage = new Duplex({
    destroy(error, callback) {
      // Destroyed before its end (its reader stopped early), the program ends too: left waiting for
      // input, it would keep this process alive.
      output.destroy()
      stdin.destroy()
      callback(error)
    },
    final(callback) {
      stdin.end(callback)
    },
    read() {
      output.resume()
    },
    readableHighWaterMark: 1024 * 1024,
    write(chunk: Buffer, _encoding, callback) {
      // Given back once the pipe has taken it (buffer-loan.ts).
      stdin.write(chunk, (error) => {
        if (!error) giveBack(chunk)
        callback(error)
      })
    },
  })
  output.on('data', (chunk: Buffer) => {
    if (!stage.push(chunk)) output.pause()
  })
  output.once('end', () => stage.push(null))
  output.once('error', (error) => stage.destroy(error))
  output.pause()
  return stage
}

/**
 * A guard (guards.ts): `sh -c script`, in a process group of its own so that a signal to this one's
 * group does not stop it, with a pipe from this process as its input. The pipe closes when this
 * process is gone (the kernel closes it) and when the worker thread that started the guard ends
 * (Node.js closes the thread's handles). It never keeps this process alive. `name` is its `$0`, which
 * `ps` shows.
 */
export function startGuardProcess(script: string, args: readonly string[], name: string): ChildProcess {
  traced('sh', ['-c', script, name, ...args], {})
  const child = spawn('sh', ['-c', script, name, ...args], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  })
  child.on('error', () => {})
  child.stdin!.on('error', () => {})
  // It must not keep this process alive: it is there for when this process is gone.
  child.unref()
  ;(child.stdin as unknown as {unref?: () => void}).unref?.()
  return child
}

/** A server started in the background (a drill's scratch database): stopped with `stop`, or by a guard. */
export interface BackgroundServer {
  readonly pid: number | undefined
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>
}

export function startServer(command: string, args: readonly string[], options: RunOptions = {}): BackgroundServer {
  traced(command, args, options)
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: {...process.env, ...options.env},
    stdio: 'ignore',
  })
  const done = new Promise<void>((resolve) => {
    child.once('error', () => resolve())
    child.once('close', () => resolve())
  })
  return {
    pid: child.pid,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await done
      clearTimeout(timer)
    },
  }
}

/** A program held open for a conversation (psql holding a transaction): lines in, lines out. */
export interface Session {
  /** Ends its input and waits for it to exit; rejects with ProcessError on a non-zero exit. */
  close(): Promise<void>
  /** Stops it at once (on a failure elsewhere); safe to call more than once. */
  kill(): void
  /** The next line it writes to stdout; rejects if it exits first. */
  readLine(): Promise<string>
  send(text: string): void
}

/** Starts a program to talk to through stdin and stdout, a line at a time. */
export function session(command: string, args: readonly string[], options: RunOptions = {}): Session {
  traced(command, args, options)
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: {...process.env, ...options.env},
    signal: options.signal,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  child.stdin!.on('error', () => {})
  const stderr = new StderrTail()
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk))
  const done = exited(child, command)
  const lines: string[] = []
  let partial = ''
  let waiting: undefined | {reject: (error: Error) => void; resolve: (line: string) => void}
  let ended: Error | undefined
  const failure = async (): Promise<Error> => {
    const [exitCode, signal] = await done.catch(() => [null, null] as const)
    return new ProcessError(command, exitCode, signal, stderr.lastLine() || 'it stopped before answering')
  }

  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    const parts = (partial + text).split('\n')
    partial = parts.pop()!
    lines.push(...parts)
    if (waiting && lines.length > 0) {
      const {resolve} = waiting
      waiting = undefined
      resolve(lines.shift()!)
    }
  })
  child.stdout!.on('end', async () => {
    ended = await failure()
    waiting?.reject(ended)
    waiting = undefined
  })
  done.catch(() => {})
  return {
    async close() {
      child.stdin!.end()
      const [exitCode, signal] = await done
      if (exitCode !== 0) throw new ProcessError(command, exitCode, signal, stderr.lastLine())
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    },
    readLine() {
      if (lines.length > 0) return Promise.resolve(lines.shift()!)
      if (ended) return Promise.reject(ended)
      return new Promise((resolve, reject) => {
        waiting = {reject, resolve}
      })
    },
    send(text) {
      child.stdin!.write(text)
    },
  }
}

function start(
  command: string,
  args: readonly string[],
  options: RunOptions,
  stdin: 'ignore' | 'pipe',
): {child: ChildProcess; output: Readable} {
  traced(command, args, options)
  const child = spawn(command, args, {
    env: {...process.env, ...options.env},
    signal: options.signal,
    stdio: [stdin, 'pipe', 'pipe'],
  })
  // A program that exits early closes stdin; its exit status, not EPIPE, is the error worth reporting.
  child.stdin?.on('error', () => {})
  const stderr = new StderrTail()
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk))
  const done = exited(child, command)
  // Hold back the end of stdout until the exit status is known.
  const gate = new Transform({
    flush(callback) {
      done.then(
        ([exitCode, signal]) =>
          callback(exitCode === 0 ? null : new ProcessError(command, exitCode, signal, stderr.lastLine())),
        (error: Error) => callback(error),
      )
    },
    highWaterMark: 1024 * 1024,
    transform(chunk: Buffer, _encoding, callback) {
      // Node.js reads each chunk from the pipe into a buffer of its own: the stage that reads it last
      // may free it at once (buffer-loan.ts), as it does the cipher's output.
      callback(null, lendToFree(chunk))
    },
  })
  done.catch((error: Error) => gate.destroy(error))
  child.stdout!.on('error', (error) => gate.destroy(error))
  child.stdout!.pipe(gate)
  gate.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
  })
  return {child, output: gate}
}

function exited(child: ChildProcess, command: string): Promise<[null | number, NodeJS.Signals | null]> {
  return new Promise((resolve, reject) => {
    child.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'ENOENT'
          ? new ProcessError(command, null, null, `${command} is not installed or not on PATH`)
          : error,
      )
    })
    child.once('close', (code, signal) => resolve([code, signal]))
  })
}

/** Keeps the last few KiB of stderr, for the one line worth showing when a program fails. */
class StderrTail {
  private text = ''

  /**
   * The last line that reports an error (tools often follow it with a hint), else the last line; with
   * the detail that PostgreSQL's tools give on the next line (`pg_dump: detail: Query was: LOCK TABLE
   * public.orders …`), which says what failed.
   */
  lastLine(): string {
    const lines = this.text
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean)
    const at = lines.findLastIndex((line) => /error|fatal|failed|denied|refused/i.test(line))
    if (at === -1) return redactDsn(lines.at(-1) ?? '')
    const detail = lines[at + 1]
    return redactDsn(detail !== undefined && /^[\w-]+: detail: /.test(detail) ? `${lines[at]}; ${detail}` : lines[at])
  }

  push(chunk: Buffer): void {
    this.text = (this.text + chunk.toString('utf8')).slice(-8192)
  }
}
