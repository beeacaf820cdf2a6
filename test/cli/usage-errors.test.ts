import {expect} from 'chai'
import {existsSync} from 'node:fs'
import {join} from 'node:path'

import {cli, makeProject, Project} from '../helpers/project.js'

/**
 * Mistakes on the command line get the same contract as every other error: two lines (`Error:` and
 * `Try this:`) and exit 2, or exactly one `{"error": {code, message, suggestion, exitCode}}` with --json;
 * never oclif's internals or a page of help.
 */
describe('usage errors: exit 2, two lines, one JSON error', function () {
  let project: Project

  before(() => {
    project = makeProject()
  })

  const mistakes: Array<{args: string[]; message: RegExp; suggestion: RegExp}> = [
    {args: ['create', '--nots', 'x'], message: /^Nonexistent flag: --nots\.$/, suggestion: /^Did you mean --note\? /},
    {args: ['list', '--trigger', 'bogus'], message: /to be one of: on-demand, scheduled/, suggestion: /list --help/},
    {args: ['restore'], message: /^Missing 1 required arg: id/, suggestion: /restore --help/},
    {args: ['create', '--db-only', '--media-only'], message: /cannot also be provided/, suggestion: /create --help/},
    {args: ['verify', 'one', 'two'], message: /^Unexpected argument: two\.$/, suggestion: /verify --help/},
    {args: ['create', '--note'], message: /^Flag --note expects a value\.$/, suggestion: /create --help/},
    {
      args: ['prune', '--dry-rum'],
      message: /^Nonexistent flag: --dry-rum\.$/,
      suggestion: /^Did you mean --dry-run\? /,
    },
  ]
  for (const {args, message, suggestion} of mistakes) {
    it(`${args.join(' ')}`, async () => {
      const plain = await cli(project, args)
      expect(plain.status).to.equal(2)
      expect(plain.stdout).to.equal('')
      const lines = plain.stderr.split('\n')
      expect(lines, plain.stderr).to.have.length(3)
      expect(lines[0].replace(/^Error: /, '')).to.match(message)
      expect(lines[0]).to.match(/^Error: /)
      expect(lines[1].replace(/^Try this: /, '')).to.match(suggestion)
      expect(lines[1]).to.match(/^Try this: .*`divio app backup \S+.* --help` for the usage\.$/)
      expect(lines[2]).to.equal('')

      const json = await cli(project, [...args, '--json'])
      expect(json.status).to.equal(2)
      const parsed = json.json() as {error: Record<string, unknown>}
      expect(Object.keys(parsed)).to.deep.equal(['error'])
      expect(Object.keys(parsed.error).sort()).to.deep.equal(['code', 'exitCode', 'message', 'suggestion'])
      expect(parsed.error).to.include({code: 'USAGE', exitCode: 2})
      expect(String(parsed.error.message)).to.match(message)
      expect(json.stdout.length, 'one small object, not a dump of the parser').to.be.below(1000)
    })
  }

  // A cron line written with the flags first must fail loudly: oclif would show the topic's help and exit 0.
  const misplaced: Array<{args: string[]; meant: null | string}> = [
    {args: ['-e', 'local', 'schedule', 'run'], meant: 'divio app backup schedule run -e local'},
    {args: ['--verbose', 'create', '--note', 'x'], meant: 'divio app backup create --verbose --note x'},
    {args: ['schedule', '-e', 'local', 'run'], meant: 'divio app backup schedule run -e local'},
    {args: ['-e', 'local'], meant: null},
  ]
  for (const {args, meant} of misplaced) {
    it(`flags before the command (${args.join(' ')}): exit 2, naming the command meant, and nothing ran`, async () => {
      const plain = await cli(project, args)
      expect(plain.status, plain.stdout).to.equal(2)
      expect(plain.stdout).to.equal('')
      const [error, suggestion, end] = plain.stderr.split('\n')
      expect(error).to.match(/^Error: /)
      expect(suggestion).to.equal(
        meant
          ? `Try this: Run \`${meant}\`.`
          : 'Try this: Run `divio app backup --help` for the commands; flags go after the command.',
      )
      expect(end).to.equal('')
      const json = await cli(project, [...args, '--json'])
      expect(json.status).to.equal(2)
      expect((json.json() as {error: {code: string}}).error.code).to.equal('USAGE')
      expect((await cli(project, ['list', '--json'])).json()).to.deep.equal([])
    })
  }

  const typos: Array<{args: string[]; nearest: null | string}> = [
    {args: ['craete'], nearest: 'divio app backup create'},
    {args: ['schedule', 'rn'], nearest: 'divio app backup schedule run'},
    {args: ['lst', '--json'], nearest: 'divio app backup list'},
    {args: ['frobnicate'], nearest: null},
  ]
  for (const {args, nearest} of typos) {
    it(`an unknown command (${args.join(' ')}): exit 2, the nearest command in the host's spelling`, async () => {
      const result = await cli(project, args)
      expect(result.status, result.stdout + result.stderr).to.equal(2)
      const typed = args.filter((argument) => !argument.startsWith('-')).join(' ')
      const message = `Unknown command: \`divio app backup ${typed}\`.`
      const topic = args[0] === 'schedule' ? 'divio app backup schedule' : 'divio app backup'
      const help = `Run \`${topic} --help\` for the commands.`
      const suggestion = nearest ? `Did you mean \`${nearest}\`? ${help}` : help
      if (args.includes('--json')) {
        expect(result.json()).to.deep.equal({error: {code: 'USAGE', exitCode: 2, message, suggestion}})
      } else {
        expect(result.stderr).to.equal(`Error: ${message}\nTry this: ${suggestion}\n`)
      }
    })
  }

  it('the topic alone, or with --help, still shows the help and exits 0', async () => {
    for (const args of [[], ['--help'], ['schedule']]) {
      const result = await cli(project, args)
      expect(result.status, args.join(' ')).to.equal(0)
      expect(result.stdout).to.match(/^USAGE$/m)
    }
  })

  it('verify with both an id and --all says to pick one, and its usage line shows no empty alternative', async () => {
    const both = await cli(project, ['verify', 'latest', '--all'])
    expect(both.status).to.equal(2)
    expect(both.stderr).to.equal(
      'Error: Give a backup ID or --all, not both.\n' +
        'Try this: Run `divio app backup verify latest` for one backup, or `divio app backup verify --all` for every one.\n',
    )
    const help = await cli(project, ['verify', '--help'])
    expect(help.stdout).to.include('[--all]')
    expect(help.stdout).not.to.match(/\|\s*\]/)
  })

  it('url on a local store refuses clearly: a folder has no links to give out', async () => {
    const refused = await cli(project, ['url'])
    expect(refused.status).to.equal(2)
    expect(refused.stderr).to.match(/^Error: The store \S+ is a local folder: it has no URLs to give out\.\n/)
    expect(refused.stderr).to.match(
      /\nTry this: Read the files there directly, or run `divio app backup download latest` to decrypt and check them\.\n$/,
    )
  })

  it('-o - is no folder: download and export refuse it, and write nothing where nobody looks', async () => {
    expect((await cli(project, ['create'])).status).to.equal(0)
    for (const command of ['download', 'export']) {
      const refused = await cli(project, [command, '-o', '-'])
      expect(refused.status, refused.stderr).to.equal(2)
      expect(refused.stderr).to.match(
        /^Error: -o\/--output names a folder to write files into, and "-" is not standard/,
      )
      expect(refused.stderr).to.include('-o ./- for a folder of that name')
      expect(existsSync(join(project.root, '-')), `${command} wrote a folder "-"`).to.equal(false)
    }
  })

  it('restore takes the id after a --trust-writer value, instead of swallowing it', async () => {
    const result = await cli(project, [
      'restore',
      '--trust-writer',
      'divio-writer1x',
      '20261128T020000Z-k3m9qa',
      '--confirm',
      'local',
    ])
    expect(result.status, result.stderr).to.equal(3)
    expect(result.stderr).to.include('No backup "20261128T020000Z-k3m9qa"')
  })
})

describe('an empty backup id', () => {
  // An empty id is a prefix of every id: with one backup in the environment, it matched that one, and
  // `delete "$ID" --confirm live` with ID unset deleted it.
  it('is refused by every command that takes one (exit 2), before anything is read or changed', async () => {
    const project = makeProject()
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    const commands = [
      ['delete', '--confirm', 'local'],
      ['restore', '--confirm', 'local'],
      ['info'],
      ['verify'],
      ['download', '-o', `${project.root}/out`],
      ['pin'],
      ['unpin'],
      ['drill'],
    ]
    for (const command of commands) {
      for (const empty of ['', ' ']) {
        const [name, ...flags] = command
        const result = await cli(project, [name, empty, ...flags])
        expect(result.status, `${name} "${empty}": ${result.stderr}`).to.equal(2)
        expect(result.stderr).to.equal(
          'Error: The backup id is empty.\n' +
            'Try this: Give a backup id, a unique prefix of one, or `latest`; `divio app backup list` shows them.\n',
        )
      }
    }

    const listed = (await cli(project, ['list', '--json'])).json() as Array<{id: string; pinned: boolean}>
    expect(listed.map((backup) => [backup.id, backup.pinned])).to.deep.equal([[id, false]])
  })
})
