import {expect} from 'chai'
import {readdirSync, readFileSync} from 'node:fs'
import {join, relative} from 'node:path'

import {SERVICE_THREAD_COMMANDS} from '../../src/service-thread/commands.js'

/** Every command file under src/commands, by its oclif id (`app:backup:schedule:run`). */
function commandFiles(folder = 'src/commands'): Array<{id: string; source: string}> {
  return readdirSync(folder, {withFileTypes: true}).flatMap((entry) => {
    const path = join(folder, entry.name)
    if (entry.isDirectory()) return commandFiles(path)
    if (!entry.name.endsWith('.ts')) return []
    const id = relative('src/commands', path)
      .replace(/\.ts$/, '')
      .split('/')
      .join(':')
      .replace(/:index$/, '')
    return [{id, source: readFileSync(path, 'utf8')}]
  })
}

describe('the commands that start the service thread ahead', () => {
  it('are exactly those whose service runs on it', () => {
    const onThread = commandFiles()
      .filter(({source}) => source.includes('this.onServiceThread('))
      .map(({id}) => id)
      .sort()
    // A command missing here waits for its thread to load; one listed here that never uses it wastes one.
    expect(onThread).to.have.length.greaterThan(5)
    expect([...SERVICE_THREAD_COMMANDS].sort()).to.deep.equal(onThread)
  })
})
