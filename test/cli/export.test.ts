import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {ENCODED_KEYS_SH} from '../../src/providers/media/s3-key-paths.js'
import {watch} from '../helpers/processes.js'
import {cli, cliAsync, makeProject, Project, snapshotTree} from '../helpers/project.js'

interface Exported {
  files: Array<{backup: string; path: string; sha256: string; status: string}>
  outputDir: string
}

function rowsOf(database: string): string {
  return execFileSync('sqlite3', [database, 'SELECT id, username, email FROM auth_user ORDER BY id;']).toString()
}

/** What a person without this tool gets back: the rows (via sqlite3) and the media tree (via tar). */
function recoverByHand(project: Project, database: string, mediaTar: string): {media: unknown; rows: string} {
  const check = execFileSync('sqlite3', [database, 'PRAGMA integrity_check;']).toString().trim()
  expect(check).to.equal('ok')
  const rows = rowsOf(database)
  const extracted = join(project.root, `by-hand-${Date.now()}-${Math.random()}`)
  mkdirSync(extracted)
  execFileSync('tar', ['-xf', mediaTar, '-C', extracted])
  return {media: [...snapshotTree(join(extracted, 'media'))], rows}
}

describe('export', function () {
  it('writes decrypted standard files that sqlite3 and tar open, with index.json, SHA256SUMS and README.txt', async () => {
    const project = makeProject()
    expect((await cli(project, ['create'])).status).to.equal(0)
    expect((await cli(project, ['create', '--note', 'second'])).status).to.equal(0)
    const out = join(project.root, '..', 'export')
    const result = await cli(project, ['export', '-o', out, '--json'])
    expect(result.status, result.stderr).to.equal(0)
    const {files} = result.json() as Exported
    expect(files).to.have.length(6)
    expect(new Set(files.map((file) => file.status))).to.deep.equal(new Set(['exported']))

    const [first] = readdirSync(join(out, 'local')).sort()
    const folder = join(out, 'local', first)
    expect(readdirSync(folder).sort()).to.deep.equal(['database.sqlite3', 'manifest.json', 'media.tar'])
    const recovered = recoverByHand(project, join(folder, 'database.sqlite3'), join(folder, 'media.tar'))
    expect(recovered.rows).to.equal(rowsOf(join(project.root, 'db.sqlite3')))
    expect(recovered.media).to.deep.equal([...snapshotTree(join(project.root, 'media'))])

    execFileSync('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], {cwd: out})
    const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as {
      backups: Array<{files: unknown[]; note: null | string}>
    }
    expect(index.backups.map((backup) => backup.note)).to.deep.equal([null, 'second'])
    expect(index.backups[0].files).to.have.length(3)
    const readme = readFileSync(join(out, 'README.txt'), 'utf8')
    for (const tool of ['pg_restore', 'mysql', 'sqlite3', 'tar -xf']) expect(readme).to.include(tool)
    // The by-hand lines for a bucket's encoded keys, as the S3 media test runs them.
    expect(readme).to.include(ENCODED_KEYS_SH.replaceAll('\n', '\n    '))
  })

  it('--raw exports the age objects as stored, which age -d, sqlite3 and tar turn back into the data', async () => {
    const project = makeProject()
    expect((await cli(project, ['create'])).status).to.equal(0)
    const out = join(project.root, '..', 'raw-export')
    // No secret key is needed for a raw export.
    const result = await cli(project, ['export', '--raw', '--latest', '-o', out], {
      DIVIO_BACKUP_IDENTITY_FILE: '/nonexistent',
    })
    expect(result.status, result.stderr).to.equal(0)
    const [id] = readdirSync(join(out, 'local'))
    const folder = join(out, 'local', id)
    expect(readdirSync(folder).sort()).to.deep.equal([
      'database.sqlite3.zst.age',
      'manifest.json',
      'media.manifest.json.age',
      'media.tar.age',
    ])
    execFileSync('age', [
      '-d',
      '-i',
      project.identityFile,
      '-o',
      join(folder, 'media.tar'),
      join(folder, 'media.tar.age'),
    ])
    // As the export's README says: age -d | zstd -d.
    execFileSync(
      'sh',
      ['-c', 'age -d -i "$1" database.sqlite3.zst.age | zstd -dq -o database.sqlite3', 'sh', project.identityFile],
      {cwd: folder},
    )

    const recovered = recoverByHand(project, join(folder, 'database.sqlite3'), join(folder, 'media.tar'))
    expect(recovered.rows).to.equal(rowsOf(join(project.root, 'db.sqlite3')))
    expect(recovered.media).to.deep.equal([...snapshotTree(join(project.root, 'media'))])
    expect(readFileSync(join(out, 'README.txt'), 'utf8')).to.include('age -d -i backup-identity.txt')
  })

  it('an interrupted export, run again, keeps the files already verified and completes the rest', async () => {
    const project = makeProject()
    for (let index = 0; index < 4; index++)
      writeFileSync(join(project.root, 'media', `big-${index}.bin`), Buffer.alloc(40 * 1024 * 1024, index))
    expect((await cli(project, ['create'])).status).to.equal(0)
    expect((await cli(project, ['create'])).status).to.equal(0)
    const out = join(project.root, '..', 'resumed')
    const run = watch(cliAsync(project, ['export', '-o', out]))
    // Kill it once the first backup's media archive is complete, while the second one is in progress.
    const firstMedia = () => {
      const backups = existsSync(join(out, 'local')) ? readdirSync(join(out, 'local')).sort() : []
      return backups.length > 0 && existsSync(join(out, 'local', backups[0], 'media.tar'))
    }

    for (let waited = 0; !firstMedia() && waited < 60_000; waited += 10) await sleep(10)
    expect(firstMedia(), 'the first backup was never exported').to.equal(true)
    process.kill(run.pid!, 'SIGKILL')
    await run.exited
    const [first] = readdirSync(join(out, 'local')).sort()
    const mtime = statSync(join(out, 'local', first, 'media.tar')).mtimeMs

    const resumed = await cli(project, ['export', '-o', out, '--json'])
    expect(resumed.status, resumed.stderr).to.equal(0)
    const {files} = resumed.json() as Exported
    const statusOf = (backup: string, name: string) =>
      files.find((file) => file.backup === backup && file.path.endsWith(`/${name}`))?.status
    expect(statusOf(first, 'media.tar')).to.equal('present')
    expect(statusOf(first, 'database.sqlite3')).to.equal('present')
    expect(files.filter((file) => file.backup !== first).map((file) => file.status)).to.include('exported')
    expect(statMtime(join(out, 'local', first, 'media.tar'))).to.equal(mtime)
    execFileSync('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], {cwd: out})
    const leftovers = readdirSync(out, {recursive: true})
      .map(String)
      .filter((path) => path.endsWith('.partial'))
    expect(leftovers).to.deep.equal([])
    rmSync(join(project.root, '..'), {force: true, recursive: true})
  })
})

function statMtime(path: string): number {
  return statSync(path).mtimeMs
}
