import {expect} from 'chai'

import {commandWithin} from '../../src/hooks/init/command-line.js'

const COMMANDS = new Set([
  'app:backup:create',
  'app:backup:list',
  'app:backup:schedule:run',
  'app:backup:schedule:show',
])
const isCommand = (id: string) => COMMANDS.has(id)
const topic = ['app', 'backup']

describe('commandWithin: the command that flags placed first hide', () => {
  it('finds the longest run of consecutive words that names a command, and keeps the rest in order', () => {
    expect(commandWithin(['-e', 'live', 'schedule', 'run'], topic, isCommand)).to.deep.equal({
      command: ['app', 'backup', 'schedule', 'run'],
      rest: ['-e', 'live'],
    })
    expect(commandWithin(['schedule', '-e', 'live', 'run'], topic, isCommand)).to.equal(undefined)
    expect(commandWithin(['-e', 'list', 'create'], topic, isCommand)).to.deep.equal({
      command: ['app', 'backup', 'list'],
      rest: ['-e', 'create'],
    })
  })

  it('under a nested topic, the words complete it', () => {
    expect(commandWithin(['-e', 'live', 'run'], ['app', 'backup', 'schedule'], isCommand)).to.deep.equal({
      command: ['app', 'backup', 'schedule', 'run'],
      rest: ['-e', 'live'],
    })
  })

  it('names nothing when no word is a command', () => {
    expect(commandWithin(['-e', 'live'], topic, isCommand)).to.equal(undefined)
    expect(commandWithin(['--json'], topic, isCommand)).to.equal(undefined)
    expect(commandWithin([], topic, isCommand)).to.equal(undefined)
  })

  it('over every order of a command, a flag and its value: whatever it finds is a command and keeps every argument', () => {
    const pieces = ['schedule', 'run', '-e', 'live', '--verbose']
    const orders = permutations(pieces)
    expect(orders).to.have.length(120)
    for (const argv of orders) {
      const found = commandWithin(argv, topic, isCommand)
      if (found === undefined) continue
      expect(isCommand(found.command.join(':'))).to.equal(true)
      const words = found.command.slice(topic.length)
      expect([...words, ...found.rest].sort()).to.deep.equal([...argv].sort())
    }
  })
})

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]]
  return items.flatMap((item, index) =>
    permutations([...items.slice(0, index), ...items.slice(index + 1)]).map((rest) => [item, ...rest]),
  )
}
