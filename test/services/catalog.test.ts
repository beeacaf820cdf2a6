import {expect} from 'chai'
import {readdirSync, readFileSync, statSync, utimesSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {catalogOf} from '../../src/services/catalog.js'
import {takeBackup} from '../../src/services/create.js'
import {LocalStore} from '../../src/store/local.js'
import {contextFor} from '../helpers/context.js'
import {countingGets} from '../helpers/counting-store.js'
import {cli, makeProject, Project, writerKeyFile} from '../helpers/project.js'

describe("a command's reads of its environment's catalog", () => {
  let project: Project
  let variables: NodeJS.ProcessEnv

  before(async () => {
    project = makeProject()
    // The first makes the owner's identity and this machine's writer key; three backups to read.
    for (let run = 0; run < 3; run++) {
      expect((await cli(project, ['create'], {DIVIO_BACKUP_MEDIA_FORMAT: 'packs'})).status).to.equal(0)
    }

    variables = {
      ...project.env,
      DIVIO_BACKUP_IDENTITY_FILE: project.identityFile,
      DIVIO_BACKUP_MEDIA_FORMAT: 'packs',
      DIVIO_BACKUP_WRITER_KEY_FILE: writerKeyFile(project),
    }
  })

  it('a create reads each manifest once, though it reads the catalog for the previous backup, its listing and retention', async () => {
    const {gets, store} = countingGets(new LocalStore(project.store))
    const taken = await takeBackup(await contextFor(project, variables, store), {
      database: true,
      media: true,
      trigger: 'on-demand',
    })
    const manifestReads = [...gets].filter(([key]) => key.endsWith('/manifest.json'))
    // The three before it, and its own (read back for its listing).
    expect(manifestReads).to.have.length(4)
    expect(manifestReads.filter(([key]) => key.includes(taken.id))).to.have.length(1)
    for (const [key, reads] of manifestReads) expect(reads, key).to.equal(1)
  })

  it('reads a manifest again once the store shows it changed, and a forged one is damaged, not the copy it read before', async () => {
    const {gets, store} = countingGets(new LocalStore(project.store))
    const context = await contextFor(project, variables, store)
    const before = await catalogOf(context)
    const [newest] = before.complete
    const key = `${newest.manifest.app}/${newest.manifest.environment}/${newest.manifest.id}/manifest.json`
    expect(gets.get(key)).to.equal(1)

    // Rewritten as it was: a new time in the store, so it is read again, and is still authentic.
    const path = join(project.store, key)
    const text = readFileSync(path, 'utf8')
    // Each write is given a time of its own, a second after the last: two writes within one tick of
    // the kernel's clock (a few ms) would otherwise show the same time, however quick the machine.
    let time = statSync(path).mtimeMs / 1000
    const rewrite = (contents: string) => {
      writeFileSync(path, contents)
      time += 1
      utimesSync(path, time, time)
    }

    rewrite(text)
    const again = await catalogOf(context)
    expect(gets.get(key)).to.equal(2)
    expect(again.complete.map(({manifest}) => manifest.id)).to.deep.equal(
      before.complete.map(({manifest}) => manifest.id),
    )

    // Edited to the same size without the key: damaged, whatever was read before.
    rewrite(text.replace(/"note": null/, '"note": "xx"'))
    expect(readFileSync(path).length).to.equal(Buffer.byteLength(text))
    const forged = await catalogOf(context)
    expect(gets.get(key)).to.equal(3)
    expect(forged.complete.map(({manifest}) => manifest.id)).to.not.include(newest.manifest.id)
    expect(forged.damaged.map(({id}) => id)).to.include(newest.manifest.id)
    rewrite(text)

    // Unchanged ones are not read again.
    const others = readdirSync(join(project.store, newest.manifest.app, newest.manifest.environment)).filter(
      (id) => id !== newest.manifest.id && /^\d{8}T/.test(id),
    )
    for (const id of others) {
      expect(gets.get(`${newest.manifest.app}/${newest.manifest.environment}/${id}/manifest.json`), id).to.equal(1)
    }
  })
})
