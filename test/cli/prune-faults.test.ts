import {expect} from 'chai'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {cli, makeProject, Project} from '../helpers/project.js'

const PACKS = {DIVIO_BACKUP_MEDIA_FORMAT: 'packs'}

interface Pruned {
  packs?: {
    fault?: {code: string; exitCode: number; suggestion: string}
    repacked?: {fault?: {code: string; exitCode: number}; skipped?: string}
    skipped?: string
  }
  remove: {id: string}[]
}

async function createPacked(project: Project): Promise<string> {
  const result = await cli(project, ['create', '--media-only', '--json'], PACKS)
  expect(result.status, result.stderr).to.equal(0)
  return (result.json() as {id: string}).id
}

/**
 * Prune's pack work that a fault stops (a damaged backup, an index that cannot be read) is a failure,
 * not a note: a store would otherwise grow unseen, prune after prune exiting 0. The rest of the prune
 * is done, its report printed, and the exit code says what stopped the packs.
 */
describe('prune, when a fault stops its pack work', () => {
  let project: Project
  let kept: string
  let damaged: string

  beforeEach(async () => {
    project = makeProject()
    kept = await createPacked(project)
    damaged = await createPacked(project)
  })

  it('a damaged backup whose manifest cannot be read: nothing is collected, and prune exits 4 naming it', async () => {
    writeFileSync(join(project.store, 'shop', 'local', damaged, 'manifest.json'), '{"not": "a manifest"')
    for (const args of [
      ['prune', '--confirm', 'local'],
      ['prune', '--dry-run'],
    ]) {
      const result = await cli(project, args, PACKS)
      expect(result.status, result.stderr).to.equal(4)
      expect(result.stdout).to.match(/Packs: none collected: backup \S+ is damaged and its manifest unreadable/)
      expect(result.stderr).to.include(`backup ${damaged} is damaged`)
      expect(result.stderr).to.include(`divio app backup verify ${damaged}`)
      expect(result.stderr).to.include(`divio app backup delete ${damaged}`)
    }

    const json = await cli(project, ['prune', '--confirm', 'local', '--json'], PACKS)
    expect(json.status).to.equal(4)
    const pruned = json.json() as Pruned
    expect(pruned.packs?.skipped).to.match(/is damaged/)
    expect(pruned.packs?.fault).to.include({code: 'INTEGRITY', exitCode: 4})

    // Mended as the suggestion says, prune succeeds again.
    expect((await cli(project, ['delete', damaged, '--confirm', 'local'])).status).to.equal(0)
    const mended = await cli(project, ['prune', '--confirm', 'local'], PACKS)
    expect(mended.status, mended.stderr).to.equal(0)
    expect((await cli(project, ['verify', kept], PACKS)).status).to.equal(0)
  })

  it('an index that cannot be read: nothing is repacked, and prune exits 4 after collecting', async () => {
    writeFileSync(join(project.store, 'shop', 'local', damaged, 'media.index.gz.age'), 'not an index')
    const result = await cli(project, ['prune', '--confirm', 'local', '--json'], PACKS)
    expect(result.status, result.stderr).to.equal(4)
    const pruned = result.json() as Pruned
    expect(pruned.packs?.repacked?.skipped).to.match(/an index could not be read/)
    expect(pruned.packs?.repacked?.fault).to.include({code: 'INTEGRITY', exitCode: 4})
    expect(pruned.packs?.fault).to.equal(undefined)

    const plain = await cli(project, ['prune', '--confirm', 'local'], PACKS)
    expect(plain.status).to.equal(4)
    expect(plain.stdout).to.include('Not repacked: an index could not be read')
    expect(plain.stderr).to.match(/Retention was applied, but no packs were repacked: an index could not be read/)
    expect(plain.stderr).to.include('verify --all')
  })

  it('without the identity, nothing is repacked, which is a setting: prune exits 0 and says so', async () => {
    const noIdentity = {...PACKS, DIVIO_BACKUP_IDENTITY_FILE: join(project.root, 'no-such-identity.txt')}
    const result = await cli(project, ['prune', '--confirm', 'local', '--json'], noIdentity)
    expect(result.status, result.stderr).to.equal(0)
    expect((result.json() as Pruned).packs?.repacked?.skipped).to.match(/no identity/)
  })
})
