/* eslint-disable mocha/no-exports -- a shared suite, run by each format's own test file */
import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {join} from 'node:path'

import {
  BIG_TREE_FILES,
  bigTree,
  bigTreeParent,
  copyTree,
  describeTree,
  removeBigTree,
  treeDifferences,
} from './big-tree.js'
import {cliInBackground, makeProject, writeEnvironments} from './project.js'
import {followRawRecipe} from './raw-recipe.js'
import {TestS3} from './s3.js'
import {requireTool} from './tools.js'

interface Created {
  id: string
}

interface Restored {
  media: {files: number; skipped: Array<{path: string; why: string}>}
  safetyBackup: null | string
}

/**
 * Every path a user takes, on a media folder of ordinary size (see big-tree.ts): create → verify →
 * download, for one media format, on a local store and on S3; on the local store also restore into
 * another env and in place (with its safety backup), drill, export, and prune → verify --all. After each restore the
 * target must equal the source byte for byte: names (non-UTF-8 included), contents, modes, mtimes (to
 * the second) and links. The one link that leads outside the media folder is kept by the backup and
 * left out by restore, which names it. Each format has a test file of its own, so that they run side
 * by side.
 */
export function realSizeSuite(format: 'packs' | 'tar'): void {
  describe(`real-size media: 20,000 files through every command, ${format} format, both stores`, function () {
    let s3: TestS3
    let buckets = 0
    // The tree as it is, and as restore gives it back (without the link that leads outside): described
    // once, for both stores.
    let source: Map<string, string>
    let restorable: Map<string, string>

    before(async function () {
      requireTool(this, 'tar', 'tar')
      const tree = bigTree()
      source = describeTree(tree.root)
      restorable = new Map(source)
      restorable.delete(Buffer.from(tree.outsideLink).toString('hex'))
      s3 = await TestS3.start()
    })

    after(async () => {
      await s3?.stop()
      removeBigTree()
    })

    for (const storeKind of ['local', 's3'] as const) {
      it(`${format} format, ${storeKind} store`, async () => {
        const tree = bigTree()
        const project = makeProject({under: bigTreeParent()})
        rmSync(join(project.root, 'media'), {force: true, recursive: true})
        copyTree(tree.root, join(project.root, 'media'))
        let store = './.divio/backups'
        if (storeKind === 's3') {
          const bucket = `real-size-${++buckets}`
          await s3.createBucket(bucket)
          store = s3.dsn(bucket, 'divio')
        }

        const environment = {media: 'media', mediaFormat: format, store}
        // The first environment is the default: live.
        // eslint-disable-next-line perfectionist/sort-objects -- the order picks the default environment
        writeEnvironments(project, {live: environment, copy: {...environment, media: 'copy-of-media'}})
        const run = async (args: string[]) => {
          const result = await cliInBackground(project, args)
          expect(result.status, `${args.join(' ')}:\n${result.stderr}`).to.equal(0)
          return result
        }

        expect(source.size).to.be.greaterThan(BIG_TREE_FILES)
        expect(restorable.size).to.equal(source.size - 1)

        let safetyBackup: string | undefined
        const created = await run(['create', '--media-only', '--json'])
        const {id} = created.json() as Created
        expect(created.stderr).to.match(
          /warning: media "shared" is a symlink to "\/usr\/share", outside the media folder/,
        )
        expect(created.stderr).to.not.match(/skipped/)

        await run(['verify', id])

        // download: media.tar, which stock tar extracts byte for byte, the outside link included.
        const out = join(project.root, 'downloaded')
        await run(['download', id, '-o', out])
        const extracted = join(project.root, 'extracted')
        mkdirSync(extracted)
        execFileSync('tar', ['-xf', join(out, 'media.tar'), '-C', extracted], {env: {...process.env, LC_ALL: 'C'}})
        expect(treeDifferences(source, describeTree(join(extracted, 'media')))).to.deep.equal([])

        // Restore, into another env and in place with a safety backup, and the exports: what they add
        // to the path above (which read the whole backup from the store) does not depend on the store,
        // so they run once, on the local one.
        if (storeKind === 'local') {
          const toCopy = await run(['restore', id, '--to-env', 'copy', '--confirm', 'copy', '--media-only', '--json'])
          const copied = toCopy.json() as Restored
          expect(copied.media.skipped.map(({path}) => path)).to.deep.equal([tree.outsideLink])
          expect(toCopy.stderr).to.match(/warning: media "shared" not restored: it is a symlink to "\/usr\/share"/)
          expect(treeDifferences(restorable, describeTree(join(project.root, 'copy-of-media')))).to.deep.equal([])

          const inPlace = await run(['restore', id, '--confirm', 'live', '--media-only', '--json'])
          const restored = inPlace.json() as Restored
          expect(restored.safetyBackup).to.be.a('string')
          safetyBackup = restored.safetyBackup!
          expect(restored.media.files).to.be.greaterThan(BIG_TREE_FILES)
          expect(treeDifferences(restorable, describeTree(join(project.root, 'media')))).to.deep.equal([])
          // Nothing is left beside the targets: no staging folder, no plaintext copy.
          expect(readdirSync(project.root).filter((name) => name.includes('restore'))).to.deep.equal([])

          // A drill restores the same tree into scratch and reads every file back: names of any bytes
          // included, the outside link left out as restore leaves it.
          const drilled = await run(['drill', id, '--json'])
          const drill = drilled.json() as {media: {checkedFiles: number; files: number}; passed: boolean}
          expect(drill.passed).to.equal(true)
          expect(drill.media.checkedFiles).to.be.greaterThan(BIG_TREE_FILES)
          expect(drill.media.files).to.equal(drill.media.checkedFiles)

          // The safety backup (of the restored tree) verifies too: `verify --all` below checks it. The
          // export of one backup says so.
          const exported = await run(['export', '--latest', '-o', join(project.root, 'export')])
          expect(exported.stdout).to.match(/^Exported 1 backup into /)
          expect(existsSync(join(project.root, 'export', 'index.json'))).to.equal(true)

          if (format === 'packs') {
            // Leaving without this tool: the raw export's recipe rebuilds the tree (contents, file modes,
            // links; the script sets no times) with age, tar and sh.
            const raw = join(project.root, 'raw')
            await run(['export', '--raw', '--latest', '-o', raw])
            const latest = (JSON.parse(readFileSync(join(raw, 'index.json'), 'utf8')) as {backups: {id: string}[]})
              .backups[0].id
            const packs = followRawRecipe(raw, {
              environment: 'live',
              id: latest,
              identityFile: project.identityFile,
              target: 'rebuilt',
            })
            // The recipe met both kinds of pack: zstd-compressed, and stored as they are.
            expect(packs.compressed).to.be.greaterThan(0)
            expect(packs.plain).to.be.greaterThan(0)
            const withoutTimes = (tree: Map<string, string>) =>
              new Map(
                [...tree].map(([key, value]) => [
                  key,
                  value.replace(/ mtime \d+$/, '').replace(/^folder mode \d+$/, 'folder'),
                ]),
              )
            expect(
              treeDifferences(withoutTimes(source), withoutTimes(describeTree(join(raw, 'rebuilt')))),
            ).to.deep.equal([])
          }
        }

        // What prune and verify --all add does not depend on the store either (the store holds a few
        // objects whatever the tree's size), so they run on the local one: prune over the whole store,
        // now and a grace period on, keeps the backups, and they verify (the safety backup too).
        if (storeKind === 's3') {
          rmSync(join(project.root, '..'), {force: true, recursive: true})
          return
        }

        for (const hours of [0, 25]) {
          const clock = new Date(Date.now() + hours * 3_600_000).toISOString()
          const pruned = await cliInBackground(project, ['prune', '--confirm', 'live', '--json'], {
            DIVIO_BACKUP_NOW: clock,
          })
          expect(pruned.status, pruned.stderr).to.equal(0)
          expect((pruned.json() as {remove: unknown[]}).remove).to.deep.equal([])
        }

        const verified = (await run(['verify', '--all', '--json'])).json() as Array<{id: string; ok: boolean}>
        expect(verified.map((backup) => backup.ok)).to.deep.equal(verified.map(() => true))
        expect(verified.map((backup) => backup.id)).to.include.members([id, ...(safetyBackup ? [safetyBackup] : [])])
        rmSync(join(project.root, '..'), {force: true, recursive: true})
      })
    }
  })
}
