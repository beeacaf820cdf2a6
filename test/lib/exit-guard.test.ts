import {expect} from 'chai'
import * as fc from 'fast-check'
import {spawn, spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {pathToFileURL} from 'node:url'

import {printfEscaped} from '../../src/lib/exit-guard.js'
import {firstOutput} from '../helpers/processes.js'
import {repoRoot} from '../helpers/project.js'

/**
 * A name a user or an upload could give a folder: any characters but NUL and `/`, up to 200 bytes. (A
 * path is a string here, written as UTF-8: a lone surrogate would come back from the disk as U+FFFD.)
 */
const folderName = fc
  .string({maxLength: 60, minLength: 1, unit: 'binary'})
  .filter(
    (name) =>
      !/[\0/]/.test(name) &&
      name !== '.' &&
      name !== '..' &&
      Buffer.byteLength(name) <= 200 &&
      Buffer.from(name).toString() === name,
  )
const tsxApi = pathToFileURL(createRequire(join(repoRoot, 'package.json')).resolve('tsx/esm/api')).href
/** Names that a guard which split words, expanded globs or read options would get wrong. */
const TRICKY = [
  '*',
  '?',
  '[a]',
  'a b',
  ' lead',
  'trail ',
  '-rf',
  '\\',
  String.raw`\n`,
  '%b',
  String.raw`\c`,
  '$(x)',
  '`x`',
  "'",
  '"',
  '\n',
]

async function until(condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition() && waited < 30_000; waited += 20) await sleep(20)
}

/** How a helper script imports the guard. */
const IMPORT_GUARD = `import {removeAtExit} from ${JSON.stringify(join(repoRoot, 'src', 'lib', 'exit-guard.ts'))}`

/**
 * Runs `lines` as a module of its own in `root`, a process that holds what it told its guard (it
 * ends only when killed); resolves once it has printed its first line.
 */
async function startGuarded(root: string, lines: string[], stdin: 'ignore' | 'pipe' = 'ignore') {
  const script = join(root, 'guarded.mts')
  writeFileSync(script, [...lines, `setInterval(() => {}, 60_000)`].join('\n'))
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: repoRoot,
    stdio: [stdin, 'pipe', 'inherit'],
  })
  await firstOutput(child)
  return child
}

describe('the exit guard', () => {
  it('gives the shell every name back byte for byte (printf %b)', () => {
    const names = [
      ...TRICKY,
      String.fromCodePoint(...Array.from({length: 127}, (_, index) => index + 1)),
      ...fc.sample(folderName, 300),
    ]
    const written = spawnSync('sh', [
      '-c',
      String.raw`for name; do printf "%bx" "$name"; printf "\000"; done`,
      'sh',
      ...names.map((name) => printfEscaped(name)),
    ])
    const back = written.stdout.toString('latin1').split('\0').slice(0, -1)
    expect(
      back.map((name) => name.slice(0, -1)),
      'each name as the shell writes it',
    ).to.deep.equal(names.map((name) => Buffer.from(name).toString('latin1')))
  })

  it('starts no program for what its owner removed itself', async () => {
    const root = mkdtempSync(join(tmpdir(), 'exit-guard-'))
    try {
      // An `rm` first on the guard's PATH, which notes each start.
      const bin = join(root, 'bin')
      mkdirSync(bin)
      const started = join(root, 'started')
      writeFileSync(join(bin, 'rm'), `#!/bin/sh\necho rm >> '${started}'\nexec /bin/rm "$@"\n`, {mode: 0o755})
      const child = await startGuarded(root, [
        `import {mkdirSync, rmSync} from 'node:fs'`,
        `import {join} from 'node:path'`,
        IMPORT_GUARD,
        `process.env.PATH = ${JSON.stringify(bin)} + ':' + process.env.PATH`,
        `const root = ${JSON.stringify(root)}`,
        // A long-lived process: 200 folders made and removed by their owner, and one left over, whose
        // name needs decoding.
        `for (let index = 0; index < 200; index++) {`,
        `  const folder = join(root, 'staging', 'divio-create-' + index)`,
        `  await removeAtExit('folder', folder)`,
        `  mkdirSync(folder, {recursive: true})`,
        `  rmSync(folder, {recursive: true})`,
        `}`,
        `const left = join(root, 'staging', 'left over, café')`,
        `await removeAtExit('folder', left)`,
        `mkdirSync(left)`,
        `console.log('ready')`,
      ])
      child.kill('SIGKILL')
      await until(() => readdirSync(join(root, 'staging')).length === 0)
      expect(readdirSync(join(root, 'staging')), 'the folder left over is removed').to.deep.equal([])
      // It was told last: once it is gone, the guard has passed over every other.
      expect(readFileSync(started, 'utf8'), 'one rm, for the one folder left').to.equal('rm\n')
    } finally {
      rmSync(root, {force: true, recursive: true})
    }
  })

  it('removes what it was told when its process is killed, and only that; a worker thread’s as the thread ends', async () => {
    const root = mkdtempSync(join(tmpdir(), 'exit-guard-'))
    try {
      const names = [...new Set([...fc.sample(folderName, 100), ...TRICKY])]
      const thread = join(root, 'thread.mts')
      writeFileSync(
        thread,
        [
          `import {mkdirSync} from 'node:fs'`,
          `import {parentPort} from 'node:worker_threads'`,
          IMPORT_GUARD,
          `await removeAtExit('folder', ${JSON.stringify(join(root, 'thread'))})`,
          `mkdirSync(${JSON.stringify(join(root, 'thread'))})`,
          `parentPort.postMessage('made')`,
          `setInterval(() => {}, 60_000)`,
        ].join('\n'),
      )
      const child = await startGuarded(
        root,
        [
          `import {mkdirSync, writeFileSync} from 'node:fs'`,
          `import {join} from 'node:path'`,
          `import {Worker} from 'node:worker_threads'`,
          IMPORT_GUARD,
          `const root = ${JSON.stringify(root)}`,
          `const guard = async (kind, path) => (await removeAtExit(kind, path), path)`,
          // Each told folder has a sibling that is not told, named to catch a glob or a split word.
          `for (const name of ${JSON.stringify(names)}) {`,
          `  mkdirSync(await guard('folder', join(root, 'told', name)), {recursive: true})`,
          `  writeFileSync(join(root, 'told', name, 'plaintext'), 'secret')`,
          `  mkdirSync(join(root, 'told', name + '.kept'))`,
          `}`,
          // A mark goes with its folder and the one above; a mark left by no one keeps its folder.
          `for (const env of ['live', 'test']) mkdirSync(join(root, 'running', env), {recursive: true})`,
          `writeFileSync(await guard('mark', join(root, 'running', 'live', 'backup-mark')), '')`,
          `writeFileSync(await guard('mark', join(root, 'running', 'test', 'restore-mark')), '')`,
          `writeFileSync(join(root, 'running', 'test', 'tick-of-another'), '')`,
          // A worker thread's guard is its own: its folder goes when the thread ends, before the process.
          // (The worker registers tsx itself, as src/lib/worker.ts explains.)
          `const worker = new Worker(${JSON.stringify(
            `import(${JSON.stringify(tsxApi)}).then(({register}) => { register(); return import(${JSON.stringify(pathToFileURL(thread).href)}) })`,
          )}, {eval: true})`,
          `await new Promise((resolve) => worker.once('message', resolve))`,
          `console.log('ready')`,
          `process.stdin.once('data', () => worker.terminate())`,
        ],
        'pipe',
      )
      const listed = (...path: string[]) => readdirSync(join(root, ...path)).sort()
      expect(listed('told')).to.have.length(names.length * 2)
      expect(listed()).to.include('thread')

      child.stdin!.write('end the thread\n')
      await until(() => !listed().includes('thread'))
      expect(listed(), 'the thread’s folder, once the thread ended').to.not.include('thread')
      expect(listed('told'), 'the process’s folders, while it runs').to.have.length(names.length * 2)

      child.kill('SIGKILL')
      const kept = names.map((name) => `${name}.kept`).sort()
      await until(
        () =>
          listed('told').length === kept.length &&
          listed('running').length === 1 &&
          listed('running', 'test').length === 1,
      )
      expect(listed('told'), 'the told folders are removed, their siblings kept').to.deep.equal(kept)
      expect(listed('running'), 'a folder whose marks are gone is removed').to.deep.equal(['test'])
      expect(listed('running', 'test'), 'another’s mark is kept').to.deep.equal(['tick-of-another'])
    } finally {
      rmSync(root, {force: true, recursive: true})
    }
  })
})
