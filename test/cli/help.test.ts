import {Config} from '@oclif/core'
import {expect} from 'chai'
import {existsSync} from 'node:fs'

import {cli, makeProject, repoRoot} from '../helpers/project.js'

/** Help is where a new user starts: every command shows what it is for with worked, explained examples. */
describe('help', () => {
  it('every command has at least two examples, each with a description, and a usage line without empty alternatives', async () => {
    const config = await Config.load(repoRoot)
    const commands = config.commands.filter((command) => command.id.startsWith('app:backup:'))
    expect(commands.map((command) => command.id)).to.include.members(['app:backup:create', 'app:backup:verify'])
    for (const command of commands) {
      const examples = (command.examples ?? []) as Array<string | {command: string; description: string}>
      expect(examples.length, `${command.id} examples`).to.be.at.least(2)
      for (const example of examples) {
        expect(example, command.id).to.be.an('object')
        const {command: line, description} = example as {command: string; description: string}
        expect(line, command.id).to.match(/^<%= config\.bin %> <%= command\.id %>/)
        expect(description.length, `${command.id}: ${line}`).to.be.above(10)
      }

      const loaded = await config.findCommand(command.id)!.load()
      for (const [name, flag] of Object.entries(loaded.flags ?? {})) {
        for (const other of (flag as {exclusive?: string[]}).exclusive ?? []) {
          expect(
            loaded.flags,
            `${command.id} --${name} is exclusive with "${other}", which is no flag`,
          ).to.have.property(other)
        }
      }
    }
  })

  it('-h works as --help on every command: the usage, exit 0, nothing run', async () => {
    const config = await Config.load(repoRoot)
    const project = makeProject()
    for (const {id} of config.commands.filter((command) => command.id.startsWith('app:backup:'))) {
      const words = id.split(':').slice(2)
      const result = await cli(project, [...words, '-h'])
      expect(result.status, `${words.join(' ')} -h: ${result.stderr}`).to.equal(0)
      expect(result.stdout, words.join(' ')).to.match(/^USAGE$/m)
      expect(result.stdout, words.join(' ')).to.include(`app backup ${words.join(' ')}`)
    }

    expect(existsSync(project.store), 'a command ran').to.equal(false)
  })
})
