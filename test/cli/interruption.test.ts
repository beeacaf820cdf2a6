import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {isAlive, untilGone, watch} from '../helpers/processes.js'
import {cli, cliAsync, listFiles, makeProject} from '../helpers/project.js'

describe('interrupted create', () => {
  it('a create killed with SIGKILL part-way is listed only with --all, as incomplete; a later create works', async () => {
    const project = makeProject()
    // A large sparse file keeps the create busy long enough to be killed in the middle of the media upload.
    const big = join(project.root, 'media', 'big.bin')
    writeFileSync(big, '')
    truncateSync(big, 4 * 1024 * 1024 * 1024)

    const child = cliAsync(project, ['create'])
    const exited = new Promise<null | string>((resolve) => {
      child.on('exit', (_code, signal) => resolve(signal))
    })
    const deadline = Date.now() + 30_000
    let partial: string | undefined
    while (partial === undefined && Date.now() < deadline) {
      partial = listFiles(project.store).find(
        (path) => path.includes('media.tar.age.partial-') && statSync(join(project.store, path)).size > 1024 * 1024,
      )
      if (partial === undefined) await sleep(20)
    }

    expect(partial, 'the media upload never started').to.be.a('string')
    child.kill('SIGKILL')
    expect(await exited).to.equal('SIGKILL')

    expect((await cli(project, ['list', '--json'])).json()).to.deep.equal([])
    const all = (await cli(project, ['list', '--all', '--json'])).json() as {
      components: object
      id: string
      status: string
      trigger: null
    }[]
    expect(all).to.have.length(1)
    expect(all[0]).to.include({status: 'incomplete', trigger: null})
    expect(all[0].components).to.deep.equal({})
    const table = await cli(project, ['list', '--all'])
    expect(table.stdout).to.match(/incomplete/)

    // The id of the dead backup never becomes usable.
    const info = await cli(project, ['info', all[0].id])
    expect(info.status).to.equal(3)
    expect(info.stderr).to.include('is incomplete')

    truncateSync(big, 1024)
    const next = await cli(project, ['create', '--json'])
    expect(next.status, next.stderr).to.equal(0)
    const listed = (await cli(project, ['list', '--json'])).json() as {id: string}[]
    expect(listed.map((backup) => backup.id)).to.deep.equal([(next.json() as {id: string}).id])
    expect((await cli(project, ['verify'])).status).to.equal(0)
    expect(readdirSync(join(project.store, 'shop', 'local'))).to.have.length(2)
  })

  it('SIGINT stops a create cleanly: exit 130, no manifest, and the message says nothing was committed', async () => {
    const project = makeProject()
    const big = join(project.root, 'media', 'big.bin')
    writeFileSync(big, '')
    truncateSync(big, 4 * 1024 * 1024 * 1024)
    const child = cliAsync(project, ['create'])
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const exited = new Promise<null | number>((resolve) => {
      child.on('exit', (code) => resolve(code))
    })
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline && !listFiles(project.store).some((path) => path.includes('media.tar.age.partial-')))
      await sleep(20)
    child.kill('SIGINT')
    expect(await exited).to.equal(130)
    expect(stderr).to.match(/Interrupted: backup \S+ was not committed/)
    expect(listFiles(project.store).filter((path) => path.endsWith('manifest.json'))).to.deep.equal([])
    expect((await cli(project, ['list', '--all', '--json'])).json()).to.deep.equal([])
  })

  it('SIGINT stops a packed create whose zstd has stopped reading: exit 130, nothing committed, no zstd left', async () => {
    const project = makeProject()
    // Photos only: no pack needs zstd, so the one zstd that runs is the rebuild script's, and it stops.
    const photos = join(project.root, 'media', 'photos')
    mkdirSync(photos)
    for (let index = 0; index < 3000; index++) writeFileSync(join(photos, `photo-${index}.jpg`), randomBytes(64))
    const bin = join(project.root, 'stuck-bin')
    mkdirSync(bin)
    const started = join(project.root, 'zstd-started')
    writeFileSync(join(bin, 'zstd'), `#!/bin/sh\necho $$ > '${started}'\nexec sleep 600\n`, {mode: 0o755})
    const child = cliAsync(
      {...project, env: {...project.env, DIVIO_BACKUP_MEDIA_FORMAT: 'packs', PATH: `${bin}:${project.env.PATH}`}},
      ['create', '--media-only'],
    )
    const {exited, output} = watch(child)
    // Polled without a deadline of its own: the suite's timeout is the bound.
    while (!existsSync(started) || readFileSync(started, 'utf8').trim() === '') await sleep(20)
    const pid = Number.parseInt(readFileSync(started, 'utf8'), 10)
    // Long enough for the walk to fill the pipe to the stopped zstd and wait on it.
    await sleep(1000)
    child.kill('SIGINT')
    expect(await exited, output().stderr).to.equal(130)
    expect(output().stderr).to.match(/Interrupted: backup \S+ was not committed/)
    expect(listFiles(project.store).filter((path) => path.endsWith('manifest.json'))).to.deep.equal([])
    await untilGone(pid)
    expect(isAlive(pid)).to.equal(false)
  })
})
