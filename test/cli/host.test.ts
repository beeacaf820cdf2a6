import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {cli, makeProject, repoRoot} from '../helpers/project.js'

/**
 * A minimal host CLI named `divio`, as the platform ships it (oclif with plugin-plugins), with this
 * plugin linked into it the way a user or the platform would: `divio plugins link`.
 */
function makeHost(): {env: NodeJS.ProcessEnv; run: (args: string[], cwd: string) => ReturnType<typeof spawnSync>} {
  const host = mkdtempSync(join(tmpdir(), 'divio-host-'))
  writeFileSync(
    join(host, 'package.json'),
    JSON.stringify({
      dependencies: {'@oclif/core': '^4', '@oclif/plugin-help': '^6', '@oclif/plugin-plugins': '^5'},
      name: 'divio',
      oclif: {
        bin: 'divio',
        dirname: 'divio-host-test',
        plugins: ['@oclif/plugin-help', '@oclif/plugin-plugins'],
        topicSeparator: ' ',
      },
      type: 'module',
      version: '3.0.0',
    }),
  )
  mkdirSync(join(host, 'bin'))
  writeFileSync(
    join(host, 'bin', 'run.js'),
    "import {execute} from '@oclif/core'\nawait execute({dir: import.meta.url})\n",
  )
  mkdirSync(join(host, 'node_modules', '@oclif'), {recursive: true})
  for (const name of ['core', 'plugin-help', 'plugin-plugins']) {
    symlinkSync(join(repoRoot, 'node_modules', '@oclif', name), join(host, 'node_modules', '@oclif', name))
  }

  const state = join(host, 'state')
  const env = {
    ...process.env,
    NODE_ENV: 'production',
    XDG_CACHE_HOME: join(state, 'cache'),
    XDG_CONFIG_HOME: join(state, 'config'),
    XDG_DATA_HOME: join(state, 'data'),
  }
  const run = (args: string[], cwd: string) =>
    spawnSync(process.execPath, [join(host, 'bin', 'run.js'), ...args], {
      cwd,
      encoding: 'utf8',
      env: {...env, HOME: join(state, 'home')},
    })
  return {env, run}
}

describe('through the host CLI `divio`', function () {
  it('links the plugin and runs `divio app backup --help` and `divio app backup list --json`', () => {
    const host = makeHost()
    const packageJson = readFileSync(join(repoRoot, 'package.json'), 'utf8')
    const link = host.run(['plugins', 'link', repoRoot, '--no-install'], repoRoot)
    expect(link.status, String(link.stderr)).to.equal(0)

    const plugins = host.run(['plugins'], repoRoot)
    expect(String(plugins.stdout)).to.include('@divio/plugin-app-backup')

    const help = host.run(['app', 'backup', '--help'], repoRoot)
    expect(help.status, String(help.stderr)).to.equal(0)
    for (const command of ['create', 'list', 'info', 'download', 'verify', 'delete']) {
      expect(String(help.stdout)).to.match(new RegExp(`^  app backup ${command} `, 'm'))
    }

    const project = makeProject()
    const created = cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const listed = host.run(['app', 'backup', 'list', '--json'], project.root)
    expect(listed.status, String(listed.stderr)).to.equal(0)
    const backups = JSON.parse(String(listed.stdout)) as {id: string}[]
    expect(backups.map((backup) => backup.id)).to.deep.equal([(created.json() as {id: string}).id])
    expect(readFileSync(join(repoRoot, 'package.json'), 'utf8'), 'linking must not edit the plugin').to.equal(
      packageJson,
    )
  })
})
