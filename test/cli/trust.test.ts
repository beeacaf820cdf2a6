import {expect} from 'chai'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {cli, makeProject, Project, writerKeyFile} from '../helpers/project.js'

interface Listed {
  id: string
  retention: {keep: boolean; reason: string}
  status: string
  writer: {detail: string; id: null | string; status: string}
}

async function list(project: Project, extra: NodeJS.ProcessEnv = {}): Promise<Listed[]> {
  const result = await cli(project, ['list', '--all', '--json'], extra)
  expect(result.status, result.stderr).to.equal(0)
  return result.json() as Listed[]
}

function manifestPath(project: Project, id: string): string {
  return join(project.store, 'shop', 'local', id, 'manifest.json')
}

describe('trust: damaged and forged manifests', function () {
  it('a damaged manifest breaks nothing: the next create commits, the damaged one is shown, kept and deletable', async () => {
    const project = makeProject()
    const first = await cli(project, ['create', '--json'])
    expect(first.status, first.stderr).to.equal(0)
    const damaged = (first.json() as {id: string}).id
    // The reviewer's reproduction: drop the manifest's last line.
    const path = manifestPath(project, damaged)
    writeFileSync(path, readFileSync(path, 'utf8').trimEnd().split('\n').slice(0, -1).join('\n'))

    const second = await cli(project, ['create', '--json'])
    expect(second.status, second.stderr).to.equal(0)
    const good = (second.json() as {id: string}).id
    expect(existsSync(join(project.store, 'shop', 'local', good, 'database.sqlite3.zst.age'))).to.equal(true)

    const listed = await list(project)
    expect(listed.map(({id, status}) => ({id, status}))).to.have.deep.members([
      {id: damaged, status: 'damaged'},
      {id: good, status: 'complete'},
    ])
    expect(listed.find(({id}) => id === damaged)!.writer.detail).to.match(/manifest unreadable/)
    expect((await cli(project, ['info', 'latest', '--json'])).json()).to.include({id: good})
    expect((await cli(project, ['verify', good])).status).to.equal(0)
    const verifyDamaged = await cli(project, ['verify', damaged])
    expect(verifyDamaged.status).to.equal(4)
    expect(verifyDamaged.stdout).to.match(/BAD +manifest\.json: damaged: manifest unreadable/)
    expect((await cli(project, ['verify', '--all'])).status).to.equal(4)

    const prune = await cli(project, ['prune', '--dry-run', '--json'])
    expect(prune.status, prune.stderr).to.equal(0)
    const plan = prune.json() as {keep: {id: string; reason: string}[]; remove: unknown[]}
    expect(plan.remove).to.deep.equal([])
    expect(plan.keep.find(({id}) => id === damaged)!.reason).to.match(/never removes what it cannot authenticate/)

    const restore = await cli(project, ['restore', damaged, '--confirm', 'local'])
    expect(restore.status).to.equal(4)
    expect(restore.stderr).to.include(`Backup ${damaged} is damaged`)

    const deleted = await cli(project, ['delete', damaged, '--confirm', 'local'])
    expect(deleted.status, deleted.stderr).to.equal(0)
    expect((await list(project)).map(({id}) => id)).to.deep.equal([good])
  })

  it('"latest" on a machine that has not seen the newer backups names those it passed over as damaged', async () => {
    const project = makeProject()
    const ids: string[] = []
    for (let run = 0; run < 3; run++) {
      const created = await cli(project, ['create', '--json'])
      expect(created.status, created.stderr).to.equal(0)
      ids.push((created.json() as {id: string}).id)
      // Ids tell time to the second: the newer backups must be of a later one to be known as newer.
      if (run === 0) await sleep(1100)
    }

    const [good, ...damaged] = ids
    for (const id of damaged) {
      const path = manifestPath(project, id)
      writeFileSync(path, readFileSync(path, 'utf8').replace('"on-demand"', '"scheduled"'))
    }

    // A new machine, restoring after a loss: no memory of the backups it has seen to warn of a roll-back.
    const newMachine = {DIVIO_BACKUP_STATE_FILE: join(project.root, 'new-machine-state.json')}
    const notice = `"latest" is ${good}, taken `
    const passedOver = `2 newer backups could not be authenticated and were passed over (${damaged.sort().reverse().join(', ')})`
    for (const args of [
      ['info', 'latest'],
      ['download', 'latest', '--db-only', '-o', join(project.root, 'out')],
      ['restore', 'latest', '--db-only', '--confirm', 'local', '--no-safety-backup'],
    ]) {
      const ran = await cli(project, args, newMachine)
      expect(ran.status, ran.stderr).to.equal(0)
      expect(ran.stderr, args[0]).to.contain(notice).and.to.contain(passedOver)
    }

    const named = await cli(project, ['info', good], newMachine)
    expect(named.stderr, 'a backup named by its id needs no notice').to.not.contain('passed over')
  })

  it('an edited field (createdAt, trigger, note) breaks the signature: damaged, and prune does not act on it', async () => {
    const project = makeProject()
    const ids: string[] = []
    for (const note of ['first', 'second'])
      ids.push(((await cli(project, ['create', '--note', note, '--json'])).json() as {id: string}).id)
    const path = manifestPath(project, ids[0])
    const manifest = JSON.parse(readFileSync(path, 'utf8')) as {createdAt: string; note: string}
    // Made to look old enough for the on-demand policy to remove it.
    manifest.createdAt = '2020-01-01T00:00:00.000Z'
    manifest.note = 'edited'
    writeFileSync(path, JSON.stringify(manifest, null, 2))
    const listed = await list(project)
    const edited = listed.find(({id}) => id === ids[0])!
    expect(edited.status).to.equal('damaged')
    expect(edited.writer.status).to.equal('bad-signature')
    const prune = await cli(project, ['prune', '--confirm', 'local', '--json'])
    expect(prune.status, prune.stderr).to.equal(0)
    expect((prune.json() as {remove: unknown[]}).remove).to.deep.equal([])
    expect(existsSync(path)).to.equal(true)
  })

  it('a backup forged by someone who can write to the store and knows the recipient is not authentic', async () => {
    const victim = makeProject()
    const made = await cli(victim, ['create', '--json'])
    expect(made.status, made.stderr).to.equal(0)
    const recipient = readFileSync(victim.identityFile, 'utf8').match(/# public key: (\S+)/)![1]
    // The forger: another machine with its own writer key, writing into the victim's store, encrypting to
    // the victim's public key, and trusting itself so that its create goes through.
    const forger = makeProject()
    const forgerFirst = await cli(forger, ['create', '--db-only', '--json'])
    expect(forgerFirst.status, forgerFirst.stderr).to.equal(0)
    const forgerId = readFileSync(writerKeyFile(forger), 'utf8').match(/# writer id: (\S+)/)![1]
    const forged = await cli(victim, ['create', '--db-only', '--json'], {
      DIVIO_BACKUP_RECIPIENTS: recipient,
      DIVIO_BACKUP_WRITER_KEY_FILE: writerKeyFile(forger),
      DIVIO_BACKUP_WRITERS: forgerId,
    })
    expect(forged.status, forged.stderr).to.equal(0)
    const forgedId = (forged.json() as {id: string}).id

    const listed = (await list(victim)).find(({id}) => id === forgedId)!
    expect(listed.status).to.equal('damaged')
    expect(listed.writer).to.include({id: forgerId, status: 'untrusted-writer'})
    expect((await cli(victim, ['info', 'latest', '--json'])).json()).to.include({id: (made.json() as {id: string}).id})

    const verify = await cli(victim, ['verify', forgedId])
    expect(verify.status).to.equal(4)
    expect(verify.stdout).to.include(forgerId)

    const before = readFileSync(join(victim.root, 'db.sqlite3'))
    const restore = await cli(victim, ['restore', forgedId, '--confirm', 'local'])
    expect(restore.status).to.equal(4)
    expect(restore.stderr).to.include(`--trust-writer ${forgerId}`)
    expect(readFileSync(join(victim.root, 'db.sqlite3')).equals(before)).to.equal(true)
    expect((await list(victim)).filter(({status}) => status === 'complete')).to.have.length(1)

    // The user's explicit word accepts it.
    const trusted = await cli(victim, ['restore', forgedId, '--confirm', 'local', '--trust-writer', forgerId, '--json'])
    expect(trusted.status, trusted.stderr).to.equal(0)
  })

  it('the writer key can come inline from DIVIO_BACKUP_WRITER_KEY (containers, cron), and is never echoed', async () => {
    const source = makeProject()
    expect((await cli(source, ['create', '--db-only'])).status).to.equal(0)
    const keyText = readFileSync(writerKeyFile(source), 'utf8')
    const writerId = keyText.match(/# writer id: (\S+)/)![1]
    const secret = keyText.split('\n').find((line) => line.startsWith('DIVIO-WRITER-KEY-1'))!

    const container = makeProject()
    const created = await cli(container, ['create', '--db-only', '--json'], {DIVIO_BACKUP_WRITER_KEY: secret})
    expect(created.status, created.stderr).to.equal(0)
    expect(existsSync(writerKeyFile(container)), 'no key file is written').to.equal(false)
    expect((created.json() as Listed).writer).to.include({id: writerId, status: 'authentic'})

    const wrong = await cli(container, ['create', '--db-only'], {DIVIO_BACKUP_WRITER_KEY: `${secret.slice(0, -4)}QQQQ`})
    expect(wrong.status).to.equal(5)
    expect(wrong.stderr).to.include('DIVIO_BACKUP_WRITER_KEY does not hold a writer key')
    expect(wrong.stderr).to.not.include(secret.slice(20, 40))
  })

  it('a create machine whose writer is not among the configured trusted writers refuses before writing', async () => {
    const project = makeProject()
    const other = makeProject()
    expect((await cli(other, ['create', '--db-only'])).status).to.equal(0)
    const otherId = readFileSync(writerKeyFile(other), 'utf8').match(/# writer id: (\S+)/)![1]
    const refused = await cli(project, ['create'], {DIVIO_BACKUP_WRITERS: otherId})
    expect(refused.status).to.equal(5)
    expect(refused.stderr).to.match(/writer key \(divio-writer1\S+\) is not a trusted writer/)
    expect(existsSync(join(project.store, 'shop'))).to.equal(false)
  })
})
