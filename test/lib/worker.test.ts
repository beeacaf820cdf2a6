import {expect} from 'chai'
import {existsSync, readdirSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {Worker} from 'node:worker_threads'

import {constructWorker, withoutLoaders, workerModuleUrl} from '../../src/lib/worker.js'
import {repoRoot} from '../helpers/project.js'

const WORKERS = [
  'archive/seal-worker',
  'archive/file-writer-worker',
  'lib/file-reader-worker',
  'service-thread/service-worker',
]

describe('worker modules', () => {
  it('are found from the source root, and from the last dist/ of wherever the bundler put the caller', () => {
    const source = pathToFileURL(join(repoRoot, 'src', 'lib', 'worker.ts')).href
    expect(workerModuleUrl('archive/seal-worker', source).href).to.equal(
      pathToFileURL(join(repoRoot, 'src', 'archive', 'seal-worker.ts')).href,
    )
    for (const from of ['chunks/chunk-ABC.js', 'commands/app/backup/create.js']) {
      const built = `file:///home/u/dist/node_modules/@divio/plugin-app-backup/dist/${from}`
      expect(workerModuleUrl('lib/file-reader-worker', built).href).to.equal(
        'file:///home/u/dist/node_modules/@divio/plugin-app-backup/dist/lib/file-reader-worker.js',
      )
    }

    expect(() => workerModuleUrl('archive/seal-worker', 'file:///elsewhere/worker.js')).to.throw(/not under dist/)
  })

  it('every *-worker module is one of them, and exists in the source and in the build', () => {
    const sources = (folder: string): string[] =>
      readdirSync(folder, {withFileTypes: true}).flatMap((entry) =>
        entry.isDirectory() ? sources(join(folder, entry.name)) : [join(folder, entry.name)],
      )
    const found = sources(join(repoRoot, 'src'))
      .filter((path) => path.endsWith('-worker.ts'))
      .map((path) => path.slice(join(repoRoot, 'src').length + 1, -'.ts'.length))
    expect(found.sort()).to.deep.equal([...WORKERS].sort())
    for (const module of WORKERS) {
      expect(existsSync(fileURLToPath(workerModuleUrl(module)))).to.equal(true)
      // npm test builds first: the bundle writes each worker where startModuleWorker looks for it.
      expect(existsSync(join(repoRoot, 'dist', `${module}.js`)), `dist/${module}.js`).to.equal(true)
    }
  })

  it("get the host's Node.js options without its module loaders, in either spelling", () => {
    const host = ['--import=tsx', '--enable-source-maps', '--require', './setup.cjs', '-r', 'x', '--loader=ts-node/esm']
    expect(withoutLoaders([...host, '--experimental-loader', 'y', '--no-warnings', '--import', 'z'])).to.deep.equal([
      '--enable-source-maps',
      '--no-warnings',
    ])
    expect(withoutLoaders(['--max-old-space-size=512'])).to.deep.equal(['--max-old-space-size=512'])
  })

  it("start under V8's options and the process's own, which a worker refuses when they are given explicitly", async () => {
    const echo = "require('node:worker_threads').parentPort.postMessage(process.execArgv)"
    const started = (worker: Worker) =>
      new Promise<string[]>((resolve, reject) => {
        worker.once('message', resolve).once('error', reject)
      })
    // With a loader to drop, the rest is given explicitly, and Node.js refuses V8's options there.
    const host = ['--import=tsx', '--max-old-space-size=300', '--no-warnings', '--trace-gc', '--stack-size=900']
    expect(() => new Worker(echo, {eval: true, execArgv: withoutLoaders(host)})).to.throw(/invalid execArgv/)
    expect(await started(constructWorker(echo, {eval: true}, host))).to.deep.equal(['--no-warnings'])
    // Without one, the process's options are inherited as they are (V8's included).
    expect(await started(constructWorker(echo, {eval: true}, ['--max-old-space-size=300']))).to.deep.equal(
      process.execArgv,
    )
  })
})
