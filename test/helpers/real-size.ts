/* eslint-disable mocha/no-exports -- a shared suite, run by each format's own test file */
import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, rmSync} from 'node:fs'
import {join} from 'node:path'

import {VerifyResult} from '../../src/services/verify.js'
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

/**
 * The part of the big tree that the raw export's recipe rebuilds: alpha/ (3,300+ files with names of
 * every kind, empty files, files of mode 600, and the large files of several blobs, which make packs of
 * both kinds), and everything at the top but the other big folders: the links, a 250-byte name that is
 * not UTF-8, empty and read-only folders.
 */
function copyRecipePart(root: string, to: string): void {
  copyTree(root, to)
  for (const folder of ['Bilder', 'café', '文件', 'z z', 'x']) rmSync(join(to, folder), {recursive: true})
}

interface Created {
  id: string
}

interface Restored {
  media: {files: number; skipped: Array<{path: string; why: string}>}
  safetyBackup: null | string
}

/**
 * Every path a user takes, on a media folder of ordinary size (see big-tree.ts): create → download,
 * for one media format, on a local store and on S3; on the local store also restore into another env
 * and in place (with its safety backup), drill, export, and prune → verify --all. After each restore
 * the target must equal the source byte for byte: names (non-UTF-8 included), contents, modes, mtimes
 * (to the second) and links. The one link that leads outside the media folder is kept by the backup
 * and left out by restore, which names it. Each format has a test file of its own, so that they run
 * side by side.
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
        // The first environment is the default: live. `part` is a part of the tree, for the raw export's
        // recipe (below).
        /* eslint-disable perfectionist/sort-objects -- the order picks the default environment */
        writeEnvironments(project, {
          live: environment,
          copy: {...environment, media: 'copy-of-media'},
          part: {...environment, media: 'part-of-media'},
        })
        /* eslint-enable perfectionist/sort-objects */
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

        // download: media.tar, which stock tar extracts byte for byte, the outside link included. It
        // also stands for verify here, which would read the same objects the same way: download
        // authenticates each and checks it against the manifest before it writes. On the local store,
        // `verify --all` checks this backup at the end, once everything else has read it and prune
        // has run.
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
          // The other env's media folder is a mount point, as a container's volume is: its restore swaps
          // the entries at its top, not the folder (where mounting is not allowed, it is a plain folder).
          const copyMedia = join(project.root, 'copy-of-media')
          mkdirSync(copyMedia)
          const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1g', 'tmpfs', copyMedia]).status === 0
          try {
            const toCopy = await run(['restore', id, '--to-env', 'copy', '--confirm', 'copy', '--media-only', '--json'])
            const copied = toCopy.json() as Restored
            expect(copied.media.skipped.map(({path}) => path)).to.deep.equal([tree.outsideLink])
            expect(toCopy.stderr).to.match(/warning: media "shared" not restored: it is a symlink to "\/usr\/share"/)
            expect(treeDifferences(restorable, describeTree(copyMedia))).to.deep.equal([])
            expect(readdirSync(copyMedia).filter((name) => name.startsWith('.divio-'))).to.deep.equal([])
          } finally {
            if (mounted) spawnSync('umount', [copyMedia])
          }

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
            // The raw export of the whole tree holds what its SHA256SUMS says (the recipe's first step).
            const raw = join(project.root, 'raw')
            await run(['export', '--raw', '--latest', '-o', raw])
            execFileSync('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], {cwd: raw})

            // Leaving without this tool: the raw export's recipe rebuilds the media (contents, file modes,
            // links; the script sets no times) with age, zstd, tar and sh. It runs on a part of the tree
            // that holds every kind of entry the whole does (copyRecipePart): sh starts a `cat` for each
            // file, the same way for every file, which on the whole tree cost about 50 CPU-s and showed
            // nothing more.
            const part = join(project.root, 'part-of-media')
            copyRecipePart(tree.root, part)
            const partBackup = (await run(['create', '--media-only', '-e', 'part', '--json'])).json() as Created
            const partRaw = join(project.root, 'raw-part')
            await run(['export', '--raw', '--latest', '-e', 'part', '-o', partRaw])
            const packs = followRawRecipe(partRaw, {
              environment: 'part',
              id: partBackup.id,
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
            const partTree = describeTree(part)
            expect(partTree.size).to.be.greaterThan(BIG_TREE_FILES / 10)
            expect(
              treeDifferences(withoutTimes(partTree), withoutTimes(describeTree(join(partRaw, 'rebuilt')))),
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

        const verified = (await run(['verify', '--all', '--json'])).json() as VerifyResult[]
        expect(verified.map((backup) => backup.ok)).to.deep.equal(verified.map(() => true))
        expect(verified.map((backup) => backup.id)).to.include.members([id, ...(safetyBackup ? [safetyBackup] : [])])
        if (format === 'packs') {
          // The safety backup holds the same tree, and was checked first: the older backup's files were
          // read and checked for it, and not read again.
          const older = verified.find((backup) => backup.id === id)!
          const packs = older.objects.find(({name}) => name.startsWith('packs'))!.detail
          expect(Number(/\((\d+) of them checked already/.exec(packs)?.[1]), packs).to.be.greaterThan(BIG_TREE_FILES)
        }

        rmSync(join(project.root, '..'), {force: true, recursive: true})
      })
    }
  })
}
