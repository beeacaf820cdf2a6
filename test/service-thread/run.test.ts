import {expect} from 'chai'

import {BackupError} from '../../src/errors.js'
import {onServiceThread, ServiceCaller} from '../../src/service-thread/run.js'
import {silentReporter} from '../../src/services/context.js'
import {cli, makeProject, Project} from '../helpers/project.js'

/**
 * A host may run commands side by side in one process. The thread a command's service ran on is kept
 * for the next one, and runs one service at a time: a command that starts while another runs must get
 * a thread of its own, not the busy one.
 */
describe('the service thread', () => {
  let project: Project
  let backupId: string

  before(async () => {
    project = makeProject()
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    backupId = (created.json() as {id: string}).id
  })

  it('runs services that start side by side each on a thread of its own, and keeps a thread for the next', async () => {
    await inProject(project, async () => {
      const caller = (): ServiceCaller => ({
        context: {toolVersion: 'test'},
        reporter: silentReporter,
        signal: new AbortController().signal,
        verbose: false,
      })
      // Both start before either answers: the second finds the first's thread busy.
      const sideBySide = await Promise.allSettled([
        onServiceThread('verify', {reference: backupId}, caller()),
        onServiceThread('verify', {reference: backupId}, caller()),
        onServiceThread('verify all', {}, caller()),
      ])
      for (const outcome of sideBySide) {
        expect(outcome.status, outcome.status === 'rejected' ? String(outcome.reason) : '').to.equal('fulfilled')
      }

      const [first, second, all] = sideBySide.map((outcome) => (outcome as PromiseFulfilledResult<unknown>).value)
      expect(first).to.deep.include({id: backupId, ok: true})
      expect(second).to.deep.equal(first)
      expect(all).to.deep.equal([first])

      // And afterwards, one after the other, on the thread that was kept.
      for (let run = 0; run < 3; run++) {
        expect(await onServiceThread('verify', {reference: backupId}, caller())).to.deep.equal(first)
      }
    })
  })

  it('answers an aborted run with the abort, and runs the next one', async () => {
    await inProject(project, async () => {
      const aborted = new AbortController()
      aborted.abort(new BackupError('INTERRUPTED', 'Interrupted by SIGINT.'))
      const outcome = await onServiceThread(
        'verify',
        {reference: backupId},
        {
          context: {toolVersion: 'test'},
          reporter: silentReporter,
          signal: aborted.signal,
          verbose: false,
        },
      ).then(
        () => 'resolved',
        () => 'rejected',
      )
      // The command reports its own signal's reason (base-command.ts); the run only has to stop.
      expect(outcome).to.equal('rejected')
      const next = await onServiceThread(
        'verify',
        {reference: backupId},
        {
          context: {toolVersion: 'test'},
          reporter: silentReporter,
          signal: new AbortController().signal,
          verbose: false,
        },
      )
      expect(next).to.deep.include({id: backupId, ok: true})
    })
  })
})

/** Runs `work` with the project's folder and environment as the process's, which the service thread takes. */
async function inProject<T>(project: Project, work: () => Promise<T>): Promise<T> {
  const cwd = process.cwd()
  const saved = {...process.env}
  process.chdir(project.root)
  Object.assign(process.env, project.env)
  try {
    return await work()
  } finally {
    process.chdir(cwd)
    for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name]
    Object.assign(process.env, saved)
  }
}
