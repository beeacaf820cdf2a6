import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {PassThrough} from 'node:stream'

import {terminalReporter} from '../../src/cli/terminal.js'
import {cli, makeProject, runJs} from '../helpers/project.js'
import {requireTool} from '../helpers/tools.js'

function fakeStderr(isTTY: boolean): {stream: NodeJS.WriteStream; written: () => string} {
  const stream = new PassThrough() as unknown as NodeJS.WriteStream
  stream.isTTY = isTTY
  let text = ''
  ;(stream as unknown as PassThrough).on('data', (chunk: Buffer) => {
    text += chunk.toString()
  })
  return {stream, written: () => text}
}

describe('terminal output', () => {
  it('draws progress only when stderr is a terminal', async () => {
    const tty = fakeStderr(true)
    const progress = terminalReporter(tty.stream).progress('media', 4 * 1024 * 1024)
    progress.advance(2 * 1024 * 1024)
    progress.done()
    const pipe = fakeStderr(false)
    const silent = terminalReporter(pipe.stream).progress('media', 4 * 1024 * 1024)
    silent.advance(2 * 1024 * 1024)
    silent.done()
    await new Promise((resolve) => {
      setImmediate(resolve)
    })
    expect(tty.written()).to.match(/media +\[#{12}\.{12}\] 2\.0 MiB/)
    expect(pipe.written()).to.equal('')
  })

  it('delete on a terminal asks for the environment name, and refuses a wrong one', function () {
    requireTool(this, 'script', 'bsdutils')
    const project = makeProject()
    const {id} = cli(project, ['create', '--json']).json() as {id: string}
    const command = `${process.execPath} ${runJs} app backup delete ${id}`
    // The screen as text: escape sequences dropped and line wraps joined.
    const typed = (answer: string) =>
      spawnSync('script', ['-qec', command, '/dev/null'], {
        cwd: project.root,
        encoding: 'utf8',
        env: project.env,
        input: `${answer}\r`,
        timeout: 30_000,
      })
        // eslint-disable-next-line no-control-regex -- terminal escape sequences are what is being removed
        .stdout.replaceAll(/\u001B\[[\d;?]*[A-Za-z]/g, '')
        .replaceAll(/\s+/g, ' ')

    const wrong = typed('live')
    expect(wrong).to.include('Type the environment name (local) to confirm')
    expect(wrong).to.include('"live" is not "local"; nothing was changed.')
    expect((cli(project, ['list', '--json']).json() as unknown[]).length).to.equal(1)

    const right = typed('local')
    expect(right).to.include(`Deleted backup ${id}`)
    expect(cli(project, ['list', '--json']).json()).to.deep.equal([])
  })
})
