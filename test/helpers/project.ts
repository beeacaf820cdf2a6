import {spawn, spawnSync} from 'node:child_process'
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'

import {parseWriterKey} from '../../src/archive/writer-key.js'
import {signManifest} from '../../src/domain/authenticity.js'
import {Manifest} from '../../src/domain/manifest.js'
import {CHANGE_TIME_WINDOW_MS} from '../../src/media-format/packs/media-index.js'
import {runInThisProcess} from './in-process.js'
import {openTestDatabase} from './sqlite.js'
import {hashFile} from './tools.js'

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const runJs = join(repoRoot, 'bin', 'run.js')

export interface Project {
  /** Environment for the CLI: a private HOME, so the generated identity lands in the project. */
  env: NodeJS.ProcessEnv
  home: string
  identityFile: string
  root: string
  store: string
}

/** A Django-like project on the embedded default: db.sqlite3 and a media folder. */
export function makeProject(options: {name?: string; under?: string} = {}): Project {
  const parent = mkdtempSync(join(options.under ?? tmpdir(), 'divio-backup-test-'))
  const root = join(parent, options.name ?? 'shop')
  mkdirSync(root)
  const home = join(parent, 'home')
  mkdirSync(home)
  const database = openTestDatabase(join(root, 'db.sqlite3'))
  database.exec(`
    CREATE TABLE auth_user (id INTEGER PRIMARY KEY, username TEXT NOT NULL, email TEXT);
    CREATE TABLE shop_product (id INTEGER PRIMARY KEY, name TEXT, price_cents INTEGER, image BLOB);
  `)
  const insertUser = database.prepare('INSERT INTO auth_user (username, email) VALUES (?, ?)')
  for (let index = 0; index < 50; index++) insertUser.run(`user${index}`, `user${index}@example.com`)
  const insertProduct = database.prepare('INSERT INTO shop_product (name, price_cents, image) VALUES (?, ?, ?)')
  for (let index = 0; index < 20; index++)
    insertProduct.run(`Produit ${index} — café`, index * 100, Buffer.alloc(1000, index))
  database.close()

  const media = join(root, 'media')
  mkdirSync(join(media, 'uploads', '2026', 'ünïcødé 文件'), {recursive: true})
  mkdirSync(join(media, 'empty-folder'))
  writeFileSync(join(media, 'uploads', 'readme.txt'), 'hello media\n')
  writeFileSync(
    join(media, 'uploads', '2026', 'ünïcødé 文件', 'photo.bin'),
    Buffer.from(Array.from({length: 200_000}, (_, index) => (index * 7919) % 251)),
  )
  writeFileSync(join(media, 'uploads', 'empty.txt'), '')
  writeFileSync(join(media, `${'long-name-'.repeat(15)}.txt`), 'a name longer than 100 bytes')
  symlinkSync('uploads/readme.txt', join(media, 'latest-readme'))
  return {
    env: {...process.env, DIVIO_BACKUP_IDENTITY_FILE: '', HOME: home, NO_COLOR: '1'},
    home,
    identityFile: join(home, '.config', 'divio', 'backup-identity.txt'),
    root,
    store: join(root, '.divio', 'backups'),
  }
}

/**
 * Waits until every file written so far changed longer ago than a packed backup's window, so that a
 * backup started next knows them by their change times and the one after it does not read them again
 * (a file read within the window is read again: changeTimeSettled). A wait on the clock, whatever the
 * machine's speed.
 */
export async function settleChangeTimes(): Promise<void> {
  await sleep(CHANGE_TIME_WINDOW_MS + 100)
}

export interface CliResult {
  json: () => unknown
  status: null | number
  stderr: string
  stdout: string
}

const CLI_TIMEOUT_MS = 600_000

/**
 * `divio app backup ARGS` in the project, with its environment plus `extraEnv`. The command runs inside
 * this process, as a host runs it (see {@link runInThisProcess}): a Node.js start saved per command, and
 * a check that the plugin leaves the process as it found it. With DIVIO_TEST_CLI=process set, or
 * `{process: true}`, it runs as a process of its own instead.
 */
export async function cli(
  project: Pick<Project, 'env' | 'root'>,
  args: string[],
  extraEnv: NodeJS.ProcessEnv = {},
  options: {process?: boolean} = {},
): Promise<CliResult> {
  if (options.process || process.env.DIVIO_TEST_CLI === 'process') return cliInProcessOfItsOwn(project, args, extraEnv)
  const {status, stderr, stdout} = await runInThisProcess(runJs, project.root, {...project.env, ...extraEnv}, [
    'app',
    'backup',
    ...args,
  ])
  return {json: () => JSON.parse(stdout), status, stderr, stdout}
}

/**
 * {@link cli}, or, where it has not ended within `ms`, a result that says so (status null): for a test
 * of a wait that must end, which then fails at once instead of hanging until the suite's own timeout.
 */
export async function cliWithin(ms: number, ...call: Parameters<typeof cli>): Promise<CliResult> {
  const waiting = `still waiting after ${ms / 1000} s`
  const timer = new AbortController()
  try {
    return await Promise.race([
      cli(...call),
      sleep(ms, undefined, {signal: timer.signal}).then(() => ({
        json: () => null,
        status: null,
        stderr: waiting,
        stdout: waiting,
      })),
    ])
  } finally {
    timer.abort()
  }
}

/** Like {@link cli}, always as a process of its own, which blocks this one until it exits. */
export function cliInProcessOfItsOwn(
  project: Pick<Project, 'env' | 'root'>,
  args: string[],
  extraEnv: NodeJS.ProcessEnv = {},
): CliResult {
  const result = spawnSync(process.execPath, [runJs, 'app', 'backup', ...args], {
    cwd: project.root,
    encoding: 'utf8',
    env: {...project.env, ...extraEnv},
    killSignal: 'SIGKILL',
    stdio: ['ignore', 'pipe', 'pipe'],
    // A CLI that does not exit is a bug to report, not a reason for the suite to hang.
    timeout: CLI_TIMEOUT_MS,
  })
  if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT') {
    throw new Error(`divio app backup ${args.join(' ')} did not exit within ${CLI_TIMEOUT_MS / 1000} s`)
  }

  return {
    json: () => JSON.parse(result.stdout),
    status: result.status,
    stderr: result.stderr,
    stdout: result.stdout,
  }
}

/**
 * Like {@link cli}, as a process of its own that does not block this one, so that a server running in
 * the test process (s3rver) still answers it: for what only a process of its own shows, such as its
 * peak RSS or modules loaded afresh. {@link cli} talks to such servers too.
 */
export async function cliInBackground(
  project: Pick<Project, 'env' | 'root'>,
  args: string[],
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<CliResult> {
  const child = spawn(process.execPath, [runJs, 'app', 'backup', ...args], {
    cwd: project.root,
    env: {...project.env, ...extraEnv},
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text
  })
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text
  })
  const status = await new Promise<null | number>((resolve) => {
    child.on('close', resolve)
  })
  return {json: () => JSON.parse(stdout), status, stderr, stdout}
}

export function cliAsync(project: Pick<Project, 'env' | 'root'>, args: string[]) {
  return spawn(process.execPath, [runJs, 'app', 'backup', ...args], {
    cwd: project.root,
    env: project.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
}

/**
 * Every entry under a folder: path → a file's size and SHA-256, a symlink's target, or a folder
 * marker. A digest, not the bytes: chai compares two Maps by sorting their entries as strings, which
 * made a string of a file's whole contents in hex for every comparison of the sort (2.8% of the
 * suite's CPU, profiled over a run).
 */
export function snapshotTree(root: string): Map<string, string> {
  const tree = new Map<string, string>()
  const walk = (relative: string) => {
    for (const name of readdirSync(join(root, relative)).sort()) {
      const path = relative ? `${relative}/${name}` : name
      const info = lstatSync(join(root, path))
      if (info.isSymbolicLink()) tree.set(path, `symlink → ${readlinkSync(join(root, path))}`)
      else if (info.isDirectory()) {
        tree.set(path, 'folder')
        walk(path)
      } else {
        const {sha256, size} = hashFile(join(root, path))
        tree.set(path, `file ${size} ${sha256}`)
      }
    }
  }

  walk('')
  return tree
}

/** Files under a folder, relative paths, recursively. */
export function listFiles(root: string): string[] {
  try {
    return readdirSync(root, {recursive: true}).map(String).sort()
  } catch {
    return []
  }
}

/** Writes `.divio/backups.json` for app `shop` with one environment, `live`. */
export function writeConfig(project: Pick<Project, 'root'>, live: Record<string, unknown>): void {
  writeEnvironments(project, {live})
}

/** Writes `.divio/backups.json` for app `shop` with these environments; the first is the default. */
export function writeEnvironments(
  project: Pick<Project, 'root'>,
  environments: Record<string, Record<string, unknown>>,
): void {
  mkdirSync(join(project.root, '.divio'), {recursive: true})
  const [defaultEnvironment] = Object.keys(environments)
  writeFileSync(
    join(project.root, '.divio', 'backups.json'),
    JSON.stringify({app: 'shop', defaultEnvironment, environments}),
  )
}

/** The project's writer key, as the first `create` wrote it into its private HOME. */
export function writerKeyFile(project: Pick<Project, 'home'>): string {
  return join(project.home, '.config', 'divio', 'backup-writer-key.txt')
}

/**
 * Writes `manifest` to `path` signed with the project's writer key: what an attacker who stole the
 * writer key could do. Tests of the checks behind the signature (checksums, tar safety) use it.
 */
export function writeSignedManifest(project: Pick<Project, 'home'>, path: string, manifest: unknown): void {
  const key = parseWriterKey(readFileSync(writerKeyFile(project), 'utf8'))
  const fields: Partial<Manifest> = {...(manifest as Manifest)}
  delete fields.signature
  writeFileSync(path, JSON.stringify(signManifest(fields as Manifest, key), null, 2))
}
