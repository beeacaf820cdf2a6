import {expect} from 'chai'

import {cli, makeProject, writeEnvironments} from '../helpers/project.js'

interface Created {
  id: string
}

/** Commands say what they did, and what they did not: nothing reads as done that was not. */
describe('commands say what they did', function () {
  // A pin says "keep this whatever happens": commands say what they did with it, and respect it.
  it('pinning twice says "already pinned", unpinning an unpinned backup says so, and a pinned backup needs --force to delete with --confirm', async () => {
    const project = makeProject()
    const {id} = (await cli(project, ['create', '--json'])).json() as Created

    expect((await cli(project, ['pin', id])).stdout).to.equal(`Pinned backup ${id}: it is kept until you unpin it.\n`)
    const twice = await cli(project, ['pin', id])
    expect(twice.status).to.equal(0)
    expect(twice.stdout).to.equal(`Backup ${id} is already pinned: it is kept until you unpin it.\n`)
    expect(((await cli(project, ['pin', id, '--json'])).json() as {changed: boolean}).changed).to.equal(false)

    const refused = await cli(project, ['delete', id, '--confirm', 'local'])
    expect(refused.status).to.equal(6)
    expect(refused.stderr).to.match(/^Error: Backup \S+ is pinned; nothing was deleted\.\nTry this: Unpin it first/)
    expect(((await cli(project, ['list', '--json'])).json() as unknown[]).length).to.equal(1)

    const forced = await cli(project, ['delete', id, '--confirm', 'local', '--force'])
    expect(forced.status, forced.stderr).to.equal(0)
    expect(forced.stderr).to.include(`warning: backup ${id} is pinned.`)
    expect(((await cli(project, ['list', '--json'])).json() as unknown[]).length).to.equal(0)

    const {id: other} = (await cli(project, ['create', '--json'])).json() as Created
    const unpinned = await cli(project, ['unpin', other])
    expect(unpinned.status).to.equal(0)
    expect(unpinned.stdout).to.match(new RegExp(`^Backup ${other} was not pinned: kept \\(`))
  })

  it('verify --sample on a tar-format backup says that it read the archive whole', async () => {
    const project = makeProject()
    expect((await cli(project, ['create'])).status).to.equal(0)
    const sampled = await cli(project, ['verify', '--sample', '10'])
    expect(sampled.status, sampled.stderr).to.equal(0)
    expect(sampled.stdout).to.match(
      /^ {2}ok {3}media\.tar\.age: read whole: --sample applies to incremental media, and this is one archive$/m,
    )
    expect((await cli(project, ['verify'])).stdout).to.not.include('--sample')
  })

  it('the retention picture is plain ASCII in a pipe and with --no-color, and coloured with --color', async () => {
    const project = makeProject()
    writeEnvironments(project, {live: {media: 'media', schedule: {at: '02:00'}, store: './.divio/backups'}})
    const piped = await cli(project, ['retention', '--simulate', '60'])
    expect(piped.stdout).to.match(/^Weeks of \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d:$/m)
    // eslint-disable-next-line no-control-regex -- an escape sequence is what must not be there
    expect(piped.stdout).to.not.match(/\u001B\[/)
    expect((await cli(project, ['retention', '--simulate', '60', '--no-color'])).stdout).to.equal(piped.stdout)
    const coloured = (await cli(project, ['retention', '--simulate', '60', '--color'])).stdout
    expect(coloured).to.include('\u001B[32md\u001B[0m')
    // eslint-disable-next-line no-control-regex -- the colour codes are what is being removed
    expect(coloured.replaceAll(/\u001B\[\d+m/g, '')).to.equal(piped.stdout)
  })
})
