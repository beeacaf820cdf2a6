import {expect} from 'chai'
import {mkdirSync, readdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {SMALL_WORK_UNITS} from '../../src/lib/worker.js'
import {runInThisProcess} from '../helpers/in-process.js'
import {makeProject, Project, runJs} from '../helpers/project.js'

/** The threads of this process: the service thread, and the reader and writer threads it starts, among them. */
const threads = () => readdirSync('/proc/self/task').length

/**
 * Runs a command in this process, and counts this process's threads every 5 ms while it runs: the most
 * it had, and how many it has once the command is done.
 */
async function threadsOf(project: Project, args: string[]): Promise<{after: number; most: number}> {
  let most = threads()
  const counting = setInterval(() => {
    most = Math.max(most, threads())
  }, 5)
  try {
    const {status, stderr} = await runInThisProcess(runJs, project.root, project.env, ['app', 'backup', ...args])
    expect(status, `${args.join(' ')}:\n${stderr}`).to.equal(0)
  } finally {
    clearInterval(counting)
  }

  return {after: threads(), most: Math.max(most, threads())}
}

describe('the writer thread, once a command has written its media', () => {
  it('is ended by a drill before its read-back, and by a restore before its safety backup', async () => {
    // More files than a command writes on its own thread (SMALL_WORK_UNITS): their extraction uses the
    // writer thread, which the service thread starts (or finds still running, if a command before left it).
    const project = makeProject()
    const many = join(project.root, 'media', 'many')
    mkdirSync(many)
    for (let index = 0; index < 4 * SMALL_WORK_UNITS; index++)
      writeFileSync(join(many, `f${index}.txt`), `file ${index}\n`)
    await threadsOf(project, ['create', '--media-only'])

    // Ended, the process has a thread fewer than while the command ran; kept, as many.
    const drill = await threadsOf(project, ['drill', 'latest'])
    expect(drill.after, 'threads after the drill, against the most while it ran').to.be.below(drill.most)
    const restore = await threadsOf(project, ['restore', 'latest', '--media-only', '--confirm', 'local'])
    expect(restore.after, 'threads after the restore in place, against the most while it ran').to.be.below(restore.most)
  })
})
