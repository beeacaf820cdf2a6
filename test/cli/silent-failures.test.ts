import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {cli, makeProject, Project} from '../helpers/project.js'
import {requireTool} from '../helpers/tools.js'

interface Created {
  id: string
}

interface Verified {
  error?: {code: string; exitCode: number}
  id: string
  ok: boolean
}

/** Every file below `folder`, by path, so that a test can say "nothing changed here". */
function filesBelow(folder: string): string[] {
  return existsSync(folder) ? readdirSync(folder, {encoding: 'utf8', recursive: true}).sort() : []
}

/**
 * What a new user met in the first week: mistakes that cost backups without anyone noticing. Each is
 * now an error that names the cause, or a line that says what happened, and none changes anything.
 */
describe('nothing silently goes wrong: the store, the key, verify --all', function () {
  describe('the store', () => {
    it('a store folder outside the app that does not exist (a disk not mounted) is an error, and is not made', async () => {
      const project = makeProject()
      const store = join(project.root, '..', 'backupdisk')
      for (const args of [['create'], ['list'], ['info', 'latest'], ['verify', '--all'], ['create', '--json']]) {
        const result = await cli(project, args, {DIVIO_BACKUP_STORE: store})
        expect(result.status, `${args.join(' ')}: ${result.stderr}`).to.equal(7)
        const message = args.includes('--json')
          ? (result.json() as {error: {code: string; message: string}}).error.message
          : result.stderr
        expect(message).to.include(`The store folder ${store} does not exist.`)
        expect(existsSync(store), 'the missing folder was made').to.equal(false)
      }

      expect((await cli(project, ['create'], {DIVIO_BACKUP_STORE: store})).stderr).to.include(`mkdir -p '${store}'`)
    })

    it('a store path that is a file, or runs through one, is an error for every command, not "no backups"', async () => {
      const project = makeProject()
      const file = join(project.root, '..', 'a-file')
      writeFileSync(file, 'not a store')
      for (const [store, why] of [
        [file, 'it is a file, not a folder'],
        [join(file, 'store'), 'a part of its path is a file, not a folder'],
      ]) {
        for (const args of [['list'], ['create']]) {
          const result = await cli(project, args, {DIVIO_BACKUP_STORE: store})
          expect(result.status, result.stderr).to.equal(7)
          expect(result.stderr).to.include(`The store ${store} cannot be used: ${why}.`)
          expect(result.stdout).to.not.match(/No backups/)
        }
      }

      expect(readFileSync(file, 'utf8')).to.equal('not a store')
    })

    it('a store inside the media folder is refused before anything is written or read', async () => {
      const project = makeProject()
      const media = join(project.root, 'media')
      const before = filesBelow(media)
      // Also through a link: ./backups leads into the media folder.
      execFileSync('ln', ['-s', 'media/uploads', join(project.root, 'backups')])
      for (const store of ['./media/bk', join(media, 'bk'), media, './backups/store']) {
        const result = await cli(project, ['create'], {DIVIO_BACKUP_STORE: store})
        expect(result.status, `${store}: ${result.stderr}`).to.equal(2)
        expect(result.stderr).to.match(
          /^Error: The store \S+ is inside the media folder \S+\.\nTry this: Move the store/,
        )
      }

      expect(filesBelow(media)).to.deep.equal(before)
    })

    it('the first backup says that it created the store, and once that one inside the app folder is not off-site', async () => {
      const project = makeProject()
      const first = await cli(project, ['create'])
      expect(first.status, first.stderr).to.equal(0)
      expect(first.stderr).to.include(`Created a new store at ${project.store}.`)
      expect(first.stderr).to.include('not off-site')
      const second = await cli(project, ['create'])
      expect(second.status, second.stderr).to.equal(0)
      expect(second.stderr).to.not.match(/Created a new store|off-site/)

      // An empty folder elsewhere (a mounted disk) becomes a store with the first backup, which says so.
      const disk = join(project.root, '..', 'disk')
      mkdirSync(disk)
      const onDisk = await cli(project, ['create'], {DIVIO_BACKUP_STORE: disk})
      expect(onDisk.status, onDisk.stderr).to.equal(0)
      expect(onDisk.stderr).to.include(`Created a new store at ${disk}.`)
      expect(onDisk.stderr).to.not.include('off-site')
    })
  })

  describe('a lost secret key', () => {
    let project: Project
    let recipient: string
    const ids: string[] = []

    before(async () => {
      project = makeProject()
      for (let index = 0; index < 2; index++) {
        const created = await cli(project, ['create', '--json'])
        expect(created.status, created.stderr).to.equal(0)
        ids.push((created.json() as Created).id)
      }

      recipient = /# public key: (age1\w+)/.exec(readFileSync(project.identityFile, 'utf8'))![1]
    })

    it('is not replaced by create while the store holds backups: exit 5, naming the key the backups use', async () => {
      const moved = `${project.identityFile}.away`
      renameSync(project.identityFile, moved)
      try {
        for (const json of [false, true]) {
          const result = await cli(project, ['create', ...(json ? ['--json'] : [])])
          expect(result.status, result.stderr).to.equal(5)
          const error = json
            ? (result.json() as {error: {code: string; message: string; suggestion: string}}).error
            : {code: 'IDENTITY_MISSING', message: result.stderr, suggestion: result.stderr}
          expect(error.code).to.equal('IDENTITY_MISSING')
          expect(error.message).to.include(`No secret key at ${project.identityFile}`)
          expect(error.message).to.include(`holds 2 backups of shop/local, encrypted to ${recipient}`)
          expect(error.suggestion).to.include(`Restore the key file to ${project.identityFile}`)
          expect(existsSync(project.identityFile), 'a new key was generated').to.equal(false)
        }

        expect(((await cli(project, ['list', '--json'])).json() as unknown[]).length).to.equal(2)
      } finally {
        renameSync(moved, project.identityFile)
      }
    })

    it('verify --all checks every backup, whichever cannot be opened here, and ends with a summary', async function () {
      requireTool(this, 'age-keygen', 'age')
      // A third backup encrypted to another key, which this machine does not have.
      const other = join(project.root, '..', 'other-key.txt')
      execFileSync('age-keygen', ['-o', other], {stdio: 'ignore'})
      const third = await cli(project, ['create', '--json'], {DIVIO_BACKUP_IDENTITY_FILE: other})
      expect(third.status, third.stderr).to.equal(0)
      const thirdId = (third.json() as Created).id

      const plain = await cli(project, ['verify', '--all'])
      expect(plain.status, plain.stderr).to.equal(5)
      for (const id of ids) expect(plain.stdout).to.match(new RegExp(`^OK {3}${id}$`, 'm'))
      expect(plain.stdout).to.match(new RegExp(`^FAIL ${thirdId}$`, 'm'))
      expect(plain.stdout).to.match(/^Verified 3 backups: 2 passed, 0 failed, 1 could not be checked here/m)
      expect(plain.stderr).to.include(`1 backup could not be checked with the keys of this machine: ${thirdId}.`)

      const json = await cli(project, ['verify', '--all', '--json'])
      expect(json.status).to.equal(5)
      const results = json.json() as Verified[]
      expect(results.map(({id, ok}) => ({id, ok}))).to.have.deep.members([
        {id: thirdId, ok: false},
        {id: ids[1], ok: true},
        {id: ids[0], ok: true},
      ])
      expect(results.find(({id}) => id === thirdId)?.error?.code).to.equal('IDENTITY_WRONG')

      // Damage outranks a missing key: exit 4, and every backup is still reported.
      const object = readdirSync(join(project.store, 'shop', 'local', ids[0])).find((name) => name.endsWith('.age'))!
      const path = join(project.store, 'shop', 'local', ids[0], object)
      const bytes = readFileSync(path)
      bytes[bytes.length - 100] ^= 1
      writeFileSync(path, bytes)
      const damaged = await cli(project, ['verify', '--all'])
      expect(damaged.status).to.equal(4)
      expect(damaged.stdout).to.match(/^Verified 3 backups: 1 passed, 1 failed, 1 could not be checked here/m)
    })
  })
})
