import {expect} from 'chai'
import {mkdtempSync, readdirSync, readFileSync, realpathSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {straceCli} from '../helpers/kill.js'
import {cli, makeProject, snapshotTree} from '../helpers/project.js'
import {requireTool} from '../helpers/tools.js'

/** The system calls of one command and of the programs it starts, in order, with paths for descriptors. */
function traceOf(project: {env: NodeJS.ProcessEnv; root: string}, args: string[]): string[] {
  const log = join(project.root, '..', 'strace.log')
  const traced = straceCli(project, args, [
    '-y',
    '-s',
    '4096',
    '-o',
    log,
    '-e',
    'trace=execve,rename,renameat,renameat2,fsync,unlink,unlinkat,rmdir',
  ])
  expect(traced.status, traced.stderr).to.equal(0)
  return readFileSync(log, 'utf8').split('\n')
}

describe('restore of a media folder is on disk before the previous media goes', () => {
  it('flushes the extracted tree before the swap, and the swap before the old tree is removed', async function () {
    requireTool(this, 'strace', 'strace')
    const project = makeProject()
    writeFileSync(join(project.root, 'media', 'kept.txt'), 'the backed-up version\n')
    const created = await cli(project, ['create', '--media-only'])
    expect(created.status, created.stderr).to.equal(0)
    writeFileSync(join(project.root, 'media', 'kept.txt'), 'changed since\n')

    const calls = traceOf(project, ['restore', 'latest', '--media-only', '--confirm', 'local', '--no-safety-backup'])
    expect(readFileSync(join(project.root, 'media', 'kept.txt'), 'utf8')).to.equal('the backed-up version\n')

    const parent = realpathSync(project.root)
    const at = (what: string, matches: (line: string, index: number) => boolean) => {
      const index = calls.findIndex((line, index) => matches(line, index))
      expect(index, `${what} in:\n${calls.join('\n')}`).to.be.above(-1)
      return index
    }

    // strace splits a call that another thread or process interrupts into "<unfinished ...>" and
    // "<... execve resumed>" (or fsync, and so on): the call starts at the first, and its result is on
    // the second. It pads the pid to the width of the widest it has printed ("4092  <... fsync
    // resumed>" beside 5-digit pids).
    const resumedAfter = (index: number) => {
      const pid = calls[index].split(' ')[0]
      return calls[index].endsWith('<unfinished ...>')
        ? calls.findIndex((line, later) => later > index && new RegExp(`^${pid} +<\\.\\.\\. \\w+ resumed>`).test(line))
        : index
    }

    // sync is looked for along PATH: the attempts where it is not are calls of their own, which fail.
    const flushed = at(
      'syncfs of the extracted tree',
      (line, index) =>
        new RegExp(String.raw`execve\("[^"]*sync", \["sync", "-f", "${parent}/\.media\.restore-`).test(line) &&
        (calls[resumedAfter(index)] ?? '').endsWith(' = 0'),
    )
    const swapped = at('the rename of the extracted tree', (line) =>
      new RegExp(String.raw`rename(at2?)?\(.*"${parent}/\.media\.restore-[^"]*", .*"${parent}/media"`).test(line),
    )
    // The flush starts at its call, and is done where its result is.
    const renamesSynced = at(
      'the fsync of the folder that holds both',
      (line) => line.includes(`fsync(`) && line.includes(`<${parent}>`),
    )
    const renamesSyncedDone = resumedAfter(renamesSynced)
    const oldRemoved = at('the removal of the previous media', (line) =>
      /(unlink|unlinkat|rmdir)\(.*\.media\.before-restore-/.test(line),
    )
    expect(flushed).to.be.below(swapped)
    expect(swapped).to.be.below(renamesSynced)
    expect(renamesSyncedDone).to.be.above(-1)
    expect(renamesSyncedDone).to.be.below(oldRemoved)
  })
})

describe('restore of a media folder that cannot be flushed to disk', () => {
  it('fails, saying so and what to check, and leaves the media as it was', async () => {
    const project = makeProject()
    const created = await cli(project, ['create', '--media-only'])
    expect(created.status, created.stderr).to.equal(0)
    writeFileSync(join(project.root, 'media', 'kept.txt'), 'changed since\n')
    const before = [...snapshotTree(join(project.root, 'media'))]

    // A PATH without `sync`: the flush cannot run.
    const noPrograms = mkdtempSync(join(tmpdir(), 'divio-no-programs-'))
    const result = await cli(
      project,
      ['restore', 'latest', '--media-only', '--confirm', 'local', '--no-safety-backup'],
      {PATH: noPrograms},
    )
    expect(result.status, result.stderr).to.not.equal(0)
    expect(result.stderr).to.include(
      'could not be flushed to disk: sync could not be started: sync is not installed or not on PATH',
    )
    expect(result.stderr).to.include('was not changed')
    expect(result.stderr).to.include('`sync` is on PATH')
    expect([...snapshotTree(join(project.root, 'media'))]).to.deep.equal(before)
    expect(readdirSync(project.root).filter((name) => name.startsWith('.media.'))).to.deep.equal([])
  })
})
