import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {PassThrough} from 'node:stream'

import {formatDuration, terminalReporter} from '../../src/cli/terminal.js'
import {cli, makeProject, Project, runJs} from '../helpers/project.js'
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
    expect(tty.written()).to.match(/media +\[#{12}\.{12}\] 2\.0 MiB \/ 4\.0 MiB +\d.* \d+:\d\d left/)
    expect(pipe.written()).to.equal('')
  })

  it('marks an estimated total with ~, and drops the bar and the time left once the bytes pass it', async () => {
    const tty = fakeStderr(true)
    const progress = terminalReporter(tty.stream).progress('media')
    progress.expect(1024 * 1024, {estimated: true})
    progress.advance(512 * 1024)
    await new Promise((resolve) => {
      setTimeout(resolve, 120)
    })
    progress.advance(1024 * 1024)
    progress.done()
    const [first, second] = tty.written().split('\r\u001B[2K').filter(Boolean)
    expect(first).to.match(/^media +\[#{12}\.{12}\] 512 KiB \/ ~1\.0 MiB +\S+ \S+\/s +\d+:\d\d left$/)
    expect(second).to.match(/^media +1\.5 MiB +\S+ \S+\/s$/)
  })

  it('formats the time left as m:ss, and h:mm:ss from an hour', () => {
    expect([0, 0.2, 59.5, 61, 3599, 3600, 3661 + 3600 * 10].map((seconds) => formatDuration(seconds))).to.deep.equal([
      '0:00',
      '0:01',
      '1:00',
      '1:01',
      '59:59',
      '1:00:00',
      '11:01:01',
    ])
  })

  it('on a pseudo-terminal, create, download and verify show a total and the time left; piped, nothing', async function () {
    requireTool(this, 'script', 'bsdutils')
    const project = makeProject()
    expect((await cli(project, ['create'])).status).to.equal(0)
    // Keys exist now: a piped create writes not one byte to stderr.
    const piped = await cli(project, ['create', '--json'])
    expect(piped.status).to.equal(0)
    expect(piped.stderr).to.equal('')
    const {id} = piped.json() as {id: string}

    const onTerminal = (args: string) => onPseudoTerminal(project, args).split(REDRAW)

    const total = (label: string) =>
      new RegExp(`^${label} +\\[[#.]{24}\\] [\\d.]+ \\S+ / ~?[\\d.]+ \\S+ +\\S+ \\S+/s +\\d+:\\d\\d left$`)
    expect(onTerminal('create --db-only')).to.satisfy((lines: string[]) =>
      lines.some((line) => total('database').test(line)),
    )
    expect(onTerminal(`download ${id} -o out`)).to.satisfy((lines: string[]) =>
      lines.some((line) => total(String.raw`media\.tar\.age`).test(line)),
    )
    expect(onTerminal(`verify ${id}`)).to.satisfy((lines: string[]) =>
      lines.some((line) => total(String.raw`database\.sqlite3\.zst\.age`).test(line)),
    )
  })

  it('on a pseudo-terminal, bars line up whatever the label, and verify --all and the safety backup say whose bars follow', async function () {
    requireTool(this, 'script', 'bsdutils')
    const project = makeProject()
    const ids: string[] = []
    for (let count = 0; count < 2; count++)
      ids.push(((await cli(project, ['create', '--json'])).json() as {id: string}).id)
    const screen = (args: string) => onPseudoTerminal(project, args).split(REDRAW_OR_LINE)

    const verified = screen('verify --all')
    for (const id of ids) expect(verified).to.include(`Backup ${id}:`)
    const bars = verified.filter((line) => /\[[#.]+\]/.test(line))
    expect(new Set(bars.map((line) => line.split(' ')[0])).size, 'bars of several objects').to.be.at.least(2)
    expect([...new Set(bars.map((line) => line.indexOf('[')))]).to.deep.equal([25])

    const restored = screen('restore latest --confirm local --media-only')
    expect(restored).to.include('Safety backup of shop/local:')
  })

  it('delete on a terminal asks for the environment name, and refuses a wrong one', async function () {
    requireTool(this, 'script', 'bsdutils')
    const project = makeProject()
    const {id} = (await cli(project, ['create', '--json'])).json() as {id: string}
    const typed = (answer: string) => answeredOnPseudoTerminal(project, `delete ${id}`, answer)

    const wrong = typed('live')
    expect(wrong).to.include('Type the environment name (local) to confirm')
    expect(wrong).to.include('"live" is not "local"; nothing was changed.')
    expect(wrong, 'a tick before the refusal').to.not.include('✔')
    expect(((await cli(project, ['list', '--json'])).json() as unknown[]).length).to.equal(1)

    const right = typed('local')
    expect(right).to.include(`Deleted backup ${id}`)
    expect((await cli(project, ['list', '--json'])).json()).to.deep.equal([])
  })

  // The restore runs on the service thread, and the terminal is the main thread's: the question
  // crosses, once the backup is staged, and so does the answer.
  it('restore on a terminal asks for the environment name once the backup is staged, and refuses a wrong one', async function () {
    requireTool(this, 'script', 'bsdutils')
    const project = makeProject()
    const {id} = (await cli(project, ['create', '--json'])).json() as {id: string}
    const media = join(project.root, 'media')
    const before = readdirSync(media).sort()
    writeFileSync(join(media, 'added-after-the-backup.txt'), 'new')

    const wrong = answeredOnPseudoTerminal(project, `restore ${id} --media-only --no-safety-backup`, 'live')
    expect(wrong).to.include('Type the environment name (local) to confirm')
    expect(wrong).to.include('"live" is not "local"; nothing was changed.')
    expect(readdirSync(media)).to.include('added-after-the-backup.txt')

    const right = answeredOnPseudoTerminal(project, `restore ${id} --media-only --no-safety-backup`, 'local')
    expect(right).to.include(`Restored backup ${id} of local into local.`)
    expect(readdirSync(media).sort()).to.deep.equal(before)
  })
})

/** The screen of `app backup ARGS` on a pseudo-terminal where `answer` is typed, as text: escape sequences dropped and line wraps joined. */
function answeredOnPseudoTerminal(project: Project, args: string, answer: string): string {
  return (
    spawnSync('script', ['-qec', `${process.execPath} ${runJs} app backup ${args}`, '/dev/null'], {
      cwd: project.root,
      encoding: 'utf8',
      env: project.env,
      input: `${answer}\r`,
      timeout: 600_000,
    })
      // eslint-disable-next-line no-control-regex -- terminal escape sequences are what is being removed
      .stdout.replaceAll(/\u001B\[[\d;?]*[A-Za-z]/g, '')
      .replaceAll(/\s+/g, ' ')
  )
}

/**
 * What `app backup ARGS` writes on a pseudo-terminal (util-linux `script`), stdout and stderr as one
 * screen, each redraw of a progress line starting with a carriage return and an erase.
 */
/** A progress line's redraw: a carriage return, then an erase of the line. */
// eslint-disable-next-line no-control-regex -- the escape sequence is what is being matched
const REDRAW = /\r\u001B\[2K/
// eslint-disable-next-line no-control-regex -- the same, or a new line
const REDRAW_OR_LINE = /\r\u001B\[2K|\r?\n/

function onPseudoTerminal(project: Project, args: string): string {
  const result = spawnSync('script', ['-qec', `${process.execPath} ${runJs} app backup ${args}`, '/dev/null'], {
    cwd: project.root,
    encoding: 'utf8',
    env: project.env,
    timeout: 600_000,
  })
  expect(result.status, result.stdout).to.equal(0)
  return result.stdout
}
