import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'

import {makeProject, runJs} from '../helpers/project.js'

/**
 * Node.js modules that a command over a local store has no use for, and that every command loaded
 * with the chunk they share: node:https and TLS cost a thread that loads them about 15 ms and 3 MiB
 * (a `list` on Node.js 24 peaked 5 MiB lower without them), and the service thread loads that chunk
 * too. They are loaded where a request is made (a hook's, S3's). node:assert came with node-tar, which
 * only what builds media.tar loads now (loadTarEncoder).
 */
const UNNEEDED = ['_http_client', '_tls_wrap', 'assert', 'http', 'https', 'tls']

describe('start-up', () => {
  it('a command over a local store loads neither HTTP(S), TLS nor the node:assert that node-tar brings', () => {
    const project = makeProject()
    // Written at the process's end: the built-in modules its main thread loaded.
    const preload = join(project.root, 'loaded.mjs')
    writeFileSync(
      preload,
      "process.on('exit', () => process.stderr.write(`\\nloaded: ${JSON.stringify(process.moduleLoadList)}\\n`))\n",
    )
    for (const args of [['create', '--media-only'], ['list']]) {
      const result = spawnSync(
        process.execPath,
        ['--import', pathToFileURL(preload).href, runJs, 'app', 'backup', ...args],
        {
          cwd: project.root,
          encoding: 'utf8',
          env: project.env,
        },
      )
      expect(result.status, result.stderr).to.equal(0)
      const loaded = JSON.parse(/^loaded: (.*)$/m.exec(result.stderr)![1]) as string[]
      // The list is the real one: the command's own modules are in it.
      expect(loaded, args[0]).to.include.members(['NativeModule crypto', 'NativeModule worker_threads'])
      expect(
        UNNEEDED.filter((name) => loaded.includes(`NativeModule ${name}`)),
        args[0],
      ).to.deep.equal([])
    }
  })
})
