import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {cli, CliResult, makeProject, Project, repoRoot} from '../helpers/project.js'
import {requireTool, writeRandomFile} from '../helpers/tools.js'

/** The packages a host brings itself: real copies, so that the host's @oclif/core is not the plugin's. */
const HOST_PACKAGES = ['core', 'plugin-help', 'plugin-plugins']

interface Host {
  root: string
  run(args: string[], project: Pick<Project, 'env' | 'root'>): CliResult
}

/**
 * A minimal host CLI named `divio`, as the platform ships it: oclif with plugin-help and
 * plugin-plugins, with its own copy of @oclif/core (as every real host has; a shared copy hides the
 * errors that come from two). npm runs offline with an empty cache, so nothing may need the network.
 */
function makeHost(options: {bin?: string; topicSeparator?: string} = {}): Host {
  const spelling = {bin: options.bin ?? 'divio', topicSeparator: options.topicSeparator ?? ' '}
  const root = mkdtempSync(join(tmpdir(), `${spelling.bin}-host-`))
  writeFileSync(
    join(root, 'package.json'),
    JSON.stringify({
      dependencies: {'@oclif/core': '^4', '@oclif/plugin-help': '^6', '@oclif/plugin-plugins': '^5'},
      name: spelling.bin,
      oclif: {
        bin: spelling.bin,
        dirname: `${spelling.bin}-host-test`,
        plugins: ['@oclif/plugin-help', '@oclif/plugin-plugins'],
        topicSeparator: spelling.topicSeparator,
      },
      type: 'module',
      version: '3.0.0',
    }),
  )
  mkdirSync(join(root, 'bin'))
  writeFileSync(
    join(root, 'bin', 'run.js'),
    "import {execute} from '@oclif/core'\nawait execute({dir: import.meta.url})\n",
  )
  const modules = join(root, 'node_modules')
  mkdirSync(join(modules, '@oclif'), {recursive: true})
  for (const name of HOST_PACKAGES) {
    execFileSync('cp', ['-RL', join(repoRoot, 'node_modules', '@oclif', name), join(modules, '@oclif', name)])
  }

  // Their own dependencies are shared with this checkout, which changes nothing about which copy runs.
  for (const entry of readdirSync(join(repoRoot, 'node_modules'))) {
    if (entry !== '@oclif' && entry !== '.bin') symlinkSync(join(repoRoot, 'node_modules', entry), join(modules, entry))
  }

  const state = join(root, 'state')
  return {
    root,
    run(args, project) {
      const result = spawnSync(process.execPath, [join(root, 'bin', 'run.js'), ...args], {
        cwd: project.root,
        encoding: 'utf8',
        env: {
          ...project.env,
          NODE_ENV: 'production',
          XDG_CACHE_HOME: join(state, 'cache'),
          XDG_CONFIG_HOME: join(state, 'config'),
          XDG_DATA_HOME: join(state, 'data'),
          ...npmConfig({audit: 'false', cache: join(state, 'npm-cache'), fund: 'false', offline: 'true'}),
        },
        timeout: 240_000,
      })
      return {
        json: () => JSON.parse(result.stdout),
        status: result.status,
        stderr: result.stderr,
        stdout: result.stdout,
      }
    },
  }
}

/** npm settings as environment variables (npm_config_*), with the update check off. */
function npmConfig(settings: Record<string, string>): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries({...settings, 'update-notifier': 'false'}).map(([key, value]) => [`npm_config_${key}`, value]),
  )
}

/**
 * The tarball `npm pack` makes (what a registry would serve), built from a copy of the package so
 * that packing writes nothing into this checkout: oclif.manifest.json, then `npm pack`.
 */
function packPlugin(): string {
  const staging = mkdtempSync(join(tmpdir(), 'divio-pack-'))
  for (const name of ['package.json', 'README.md', 'LICENSE', 'bin', 'dist']) {
    execFileSync('cp', ['-R', join(repoRoot, name), join(staging, name)])
  }

  symlinkSync(join(repoRoot, 'node_modules'), join(staging, 'node_modules'))
  execFileSync(process.execPath, [join(repoRoot, 'node_modules', 'oclif', 'bin', 'run.js'), 'manifest'], {
    cwd: staging,
    stdio: 'ignore',
  })
  const output = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', staging], {
    cwd: staging,
    encoding: 'utf8',
    env: {...process.env, ...npmConfig({})},
  })
  const [{filename}] = JSON.parse(output) as {filename: string}[]
  return join(staging, filename)
}

const failures: Array<{args: string[]; status: number}> = [
  {args: ['info', '20200101T000000Z-aaaaaa'], status: 3},
  {args: ['create', '--nots', 'x'], status: 2},
  {args: ['verify', 'latest', '--all'], status: 2},
  {args: ['restore'], status: 2},
  {args: ['download', '20200101T000000Z-aaaaaa', '--json'], status: 3},
]

const distributions: Array<{
  failures: typeof failures
  /** The whole path of a user (the packed plugin), or what differs when it is loaded from src/. */
  full: boolean
  install: (host: Host, project: Project) => CliResult
  name: string
}> = [
  {
    // The output of errors is the same code whichever way the plugin is loaded: a linked plugin checks
    // one error of the service and one of parsing (each call compiles src/ through tsx, a second apiece).
    failures: failures.slice(0, 2),
    full: false,
    // How every plugin developer works: oclif loads a linked plugin from src/ through tsx.
    install: (host, project) => host.run(['plugins', 'link', repoRoot, '--no-install'], project),
    name: 'linked (`divio plugins link <checkout>`)',
  },
  {
    failures,
    full: true,
    install: (host, project) => host.run(['plugins', 'install', `file:${packPlugin()}`], project),
    name: 'packed and installed (`npm pack`, then `divio plugins install file:<tgz>`, offline)',
  },
]

for (const {failures, full, install, name} of distributions) {
  describe(`inside a host CLI \`divio\`: ${name}`, function () {
    let host: Host
    let project: Project

    before(function () {
      requireTool(this, 'age', 'age')
      host = makeHost()
      project = makeProject()
      const packageJson = readFileSync(join(repoRoot, 'package.json'), 'utf8')
      const installed = install(host, project)
      expect(installed.status, installed.stderr).to.equal(0)
      expect(readFileSync(join(repoRoot, 'package.json'), 'utf8'), 'installing must not edit the plugin').to.equal(
        packageJson,
      )
    })

    it('lists the plugin, and shows the topic with every command', () => {
      expect(host.run(['plugins'], project).stdout).to.include('@divio/plugin-app-backup')
      const help = host.run(['app', 'backup', '--help'], project)
      expect(help.status, help.stderr).to.equal(0)
      for (const command of ['create', 'list', 'info', 'download', 'verify', 'restore', 'delete']) {
        expect(help.stdout).to.match(new RegExp(`^  app backup ${command} `, 'm'))
      }
    })

    it(`${full ? 'create, list, verify, download, restore, drill and status run' : 'create and verify run'} on a sample app`, async () => {
      // More media than one batch of the cipher (256 KiB), so that the linked plugin's create starts the
      // encryption thread too: a smaller stream is sealed on the main thread.
      if (!full) writeRandomFile(join(project.root, 'media', 'uploads', 'large.bin'), 1024 * 1024)
      const created = host.run(['app', 'backup', 'create', '--json'], project)
      expect(created.status, created.stderr).to.equal(0)
      const {id} = created.json() as {id: string}
      if (!full) {
        // Loaded from src/, the reader and the encryption threads register tsx themselves (lib/worker.ts):
        // what a create and a verify show. The other commands run the same code as the packed plugin's.
        const verified = host.run(['app', 'backup', 'verify', id], project)
        expect(verified.status, verified.stderr).to.equal(0)
        return
      }

      const listed = host.run(['app', 'backup', 'list', '--json'], project)
      expect(listed.status, listed.stderr).to.equal(0)
      expect((listed.json() as {id: string}[]).map((backup) => backup.id)).to.deep.equal([id])

      const verified = host.run(['app', 'backup', 'verify', id], project)
      expect(verified.status, verified.stderr).to.equal(0)
      expect(verified.stdout).to.match(/ok +database\.sqlite3\.zst\.age: authenticated/)

      const out = join(project.root, 'downloaded')
      const downloaded = host.run(['app', 'backup', 'download', id, '-o', out], project)
      expect(downloaded.status, downloaded.stderr).to.equal(0)
      expect(readdirSync(out).sort()).to.deep.equal(['database.sqlite3', 'manifest.json', 'media.tar'])
      expect(execFileSync('tar', ['-tf', join(out, 'media.tar')], {encoding: 'utf8'})).to.include('MANIFEST.json')

      const readme = join(project.root, 'media', 'uploads', 'readme.txt')
      writeFileSync(readme, 'changed after the backup\n')
      const restored = host.run(['app', 'backup', 'restore', id, '--confirm', 'local', '--no-safety-backup'], project)
      expect(restored.status, restored.stderr).to.equal(0)
      expect(readFileSync(readme, 'utf8')).to.equal('hello media\n')
      // The proof commands: a drill restores into scratch and stores its receipt, which status shows.
      const drilled = host.run(['app', 'backup', 'drill', id, '--json'], project)
      expect(drilled.status, drilled.stderr).to.equal(0)
      expect((drilled.json() as {passed: boolean}).passed).to.equal(true)
      const status = host.run(['app', 'backup', 'status', '--json'], project)
      expect(status.status, status.stderr).to.equal(0)
      expect(JSON.stringify(status.json())).to.include(id)
      // The same store, read by the plugin on its own: the host wrote ordinary backups.
      expect((await cli(project, ['verify', id])).status).to.equal(0)
    })

    for (const {args, status} of failures) {
      it(`\`${args.join(' ')}\` prints exactly what bin/run.js prints, and exits ${status}`, async () => {
        const alone = await cli(project, args)
        const inHost = host.run(['app', 'backup', ...args], project)
        expect(alone.status).to.equal(status)
        expect(inHost.status).to.equal(status)
        expect(inHost.stderr).to.equal(alone.stderr)
        expect(inHost.stdout).to.equal(alone.stdout)
        expect(inHost.stderr).to.not.include('EEXIT')
      })
    }
  })
}

describe('inside a host that spells commands its own way (heroku, with `:`)', function () {
  it('suggests commands as that host runs them, and otherwise prints what bin/run.js prints', async function () {
    requireTool(this, 'age', 'age')
    const host = makeHost({bin: 'heroku', topicSeparator: ':'})
    const project = makeProject()
    const linked = host.run(['plugins:link', repoRoot, '--no-install'], project)
    expect(linked.status, linked.stderr).to.equal(0)
    const missing = host.run(['app:backup:info', '20200101T000000Z-aaaaaa'], project)
    expect(missing.status).to.equal(3)
    const alone = await cli(project, ['info', '20200101T000000Z-aaaaaa'])
    expect(missing.stderr).to.equal(alone.stderr.replaceAll('divio app backup ', 'heroku app:backup:'))
    expect(missing.stderr).to.include('heroku app:backup:list')
    const typo = host.run(['app:backup:create', '--nots', 'x'], project)
    expect(typo.status).to.equal(2)
    expect(typo.stderr).to.equal(
      'Error: Nonexistent flag: --nots.\nTry this: Did you mean --note? Run `heroku app:backup:create --help` for the usage.\n',
    )
  })
})

describe('the packed plugin', () => {
  it('bundles its dependencies, except the optional native SQLite module', () => {
    const packageJson = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
      bundleDependencies: string[]
      dependencies: Record<string, string>
      optionalDependencies: Record<string, string>
    }
    expect(packageJson.bundleDependencies).to.have.members(Object.keys(packageJson.dependencies))
    expect(packageJson.bundleDependencies).to.not.include('better-sqlite3')
    expect(Object.keys(packageJson.optionalDependencies)).to.deep.equal(['better-sqlite3'])
    expect(existsSync(join(repoRoot, 'LICENSE'))).to.equal(true)
  })

  it('is ASCII in every JavaScript file, which V8 keeps in one byte a character (scripts/build.js)', () => {
    const files = readdirSync(join(repoRoot, 'dist'), {recursive: true, withFileTypes: true}).filter(
      (entry) => entry.isFile() && entry.name.endsWith('.js'),
    )
    expect(files.length).to.be.greaterThan(20)
    for (const file of files) {
      const code = readFileSync(join(file.parentPath, file.name), 'latin1')
      // eslint-disable-next-line no-control-regex -- the range is what ASCII is
      expect(/[^\u0000-\u007F]/.exec(code)?.index, file.name).to.equal(undefined)
    }
  })

  it('ships the licenses of the code its bundle holds', () => {
    const notices = readFileSync(join(repoRoot, 'dist', 'THIRD-PARTY-NOTICES.txt'), 'utf8')
    for (const name of ['@aws-sdk/client-s3', '@inquirer/prompts', 'bech32', 'luxon', 'tar', 'zod']) {
      const {license, version} = JSON.parse(
        readFileSync(join(repoRoot, 'node_modules', name, 'package.json'), 'utf8'),
      ) as {license: string; version: string}
      expect(notices, name).to.include(`\n${name}@${version} (${license})\n`)
    }

    // Apache-2.0's text, for the AWS SDK; nothing of oclif, which is shipped as its own package.
    expect(notices).to.include('Apache License')
    expect(notices).to.not.include('@oclif/core@')
  })
})
