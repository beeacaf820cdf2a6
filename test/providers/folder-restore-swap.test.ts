import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {BackupError} from '../../src/errors.js'
import {FilesystemMediaProvider} from '../../src/providers/media/filesystem.js'
import {describeTree, treeDifferences} from '../helpers/big-tree.js'
import {mountTmpfs} from '../helpers/mounts.js'
import {repoRoot} from '../helpers/project.js'
import {requireTool} from '../helpers/tools.js'

/** The work folders' suffix in the driver, which fixes what is random in a restore to know their names. */
const SUFFIX = 'abababababab'

/** Writes a tree of `entries` (name bytes → contents; a folder is an object, a link `{link}`) under `root`. */
function writeTree(root: Buffer, entries: Array<[Buffer | string, Entry]>): void {
  for (const [name, entry] of entries) {
    const path = Buffer.concat([root, Buffer.from('/'), Buffer.from(name)])
    if (typeof entry === 'string') writeFileSync(path, entry)
    else if ('link' in entry) symlinkSync(entry.link, path)
    else {
      mkdirSync(path)
      writeTree(path, Object.entries(entry.folder))
    }
  }
}

type Entry = string | {folder: Record<string, Entry>} | {link: string}

/** Names that shell globs and moves get wrong: dots, a leading dash, a newline, bytes that are not UTF-8. */
const OLD: Array<[Buffer | string, Entry]> = [
  ['a.txt', 'old a'],
  ['old-only.txt', 'only before the restore'],
  ['.hidden', 'old hidden'],
  ['..dots', 'old dots'],
  ['-dash', 'old dash'],
  ['new\nline', 'old newline'],
  [Buffer.from([0x6f, 0xff, 0xfe]), 'old, not UTF-8'],
  ['link', {link: 'a.txt'}],
  ['dangling', {link: 'nowhere'}],
  ['uploads', {folder: {deeper: {folder: {'two.jpg': 'old two'}}, 'one.jpg': 'old one'}}],
  ['empty', {folder: {}}],
]
const NEW: Array<[Buffer | string, Entry]> = [
  ['a.txt', 'new a'],
  ['new-only.txt', 'only after the restore'],
  ['.hidden', 'new hidden'],
  ['-dash', {folder: {'x.txt': 'a folder now'}}],
  [Buffer.from([0x6e, 0xff]), 'new, not UTF-8'],
  ['link', {link: 'new-only.txt'}],
  ['uploads', {folder: {'three.jpg': 'new three'}}],
  ['zzz-last.txt', 'new last'],
]

interface Outcome {
  error?: {code: string; message: string}
  /** How strace ended: as its process did, SIGKILL where that was the fault. */
  signal: NodeJS.Signals | null
  stderr: string
}

/**
 * Runs prepareFolderRestore + commit in a process of its own under strace, with `fault` injected
 * into the calls of `syscalls` on `paths`: the restore of NEW over OLD in `target`, killed or
 * failed at exactly one step of its swap. strace returns once every process it follows, the restore's
 * guard included, has ended.
 */
function restoreUnderFault(
  target: string,
  fault: {inject: string; paths: string[]; syscalls: string},
  scratch: string,
): Outcome {
  const fresh = join(scratch, 'new-tree')
  rmSync(fresh, {force: true, recursive: true})
  mkdirSync(fresh)
  writeTree(Buffer.from(fresh), NEW)
  const driver = join(scratch, 'driver.mts')
  writeFileSync(
    driver,
    [
      `import crypto from 'node:crypto'`,
      `import {execFileSync} from 'node:child_process'`,
      `import {mkdirSync} from 'node:fs'`,
      `import {syncBuiltinESMExports} from 'node:module'`,
      // The restore's one random choice, fixed: the test must name its work folders to strace.
      `crypto.randomBytes = ((size: number) => Buffer.from(${JSON.stringify(SUFFIX)}, 'hex').subarray(0, size)) as typeof crypto.randomBytes`,
      `syncBuiltinESMExports()`,
      `const {prepareFolderRestore} = await import(${JSON.stringify(join(repoRoot, 'src', 'providers', 'media', 'folder-restore.ts'))})`,
      `const [target, source] = process.argv.slice(2)`,
      `const prepared = await prepareFolderRestore(target, async (folder: string) => {`,
      `  mkdirSync(folder, {mode: 0o700})`,
      `  execFileSync('cp', ['-a', source + '/.', folder])`,
      `  return {bytes: 0, files: 0, skipped: []}`,
      `})`,
      `try {`,
      `  await prepared.commit()`,
      `  process.stdout.write(JSON.stringify({}))`,
      `} catch (error) {`,
      `  process.stdout.write(JSON.stringify({error: {code: (error as {code?: string}).code, message: (error as Error).message}}))`,
      `}`,
    ].join('\n'),
  )
  const result = spawnSync(
    'strace',
    [
      '-f',
      '-qq',
      '-o',
      process.env.SWAP_TRACE ?? '/dev/null',
      ...fault.paths.flatMap((path) => ['-P', path]),
      '-e',
      `trace=${fault.syscalls}`,
      '-e',
      // Every matching call: the count is per thread, and the pool's threads share the calls out.
      `inject=${fault.syscalls}:${fault.inject}:when=1+`,
      process.execPath,
      '--import',
      'tsx',
      driver,
      target,
      fresh,
    ],
    {cwd: repoRoot, encoding: 'utf8'},
  )
  const output = result.stdout.trim()
  return {
    ...(output === '' ? {} : (JSON.parse(output) as {error?: Outcome['error']})),
    signal: result.signal,
    stderr: result.stderr,
  }
}

const RENAMES = 'rename,renameat,renameat2'

describe('a media swap stopped at any step leaves the folder old or new, whole', function () {
  let scratch: string
  let oldTree: Map<string, string>
  let newTree: Map<string, string>

  before(function () {
    requireTool(this, 'strace', 'strace')
  })

  beforeEach(() => {
    scratch = mkdtempSync(join(tmpdir(), 'swap-'))
  })

  afterEach(() => {
    spawnSync('umount', [join(scratch, 'media')])
    rmSync(scratch, {force: true, recursive: true})
  })

  function makeMedia(context: Mocha.Context, mounted: boolean): string {
    const media = join(scratch, 'media')
    if (mounted) mountTmpfs(context, media, 'size=4m')
    else mkdirSync(media)
    writeTree(Buffer.from(media), OLD)
    oldTree = describeTree(media)
    const reference = join(scratch, 'reference')
    mkdirSync(reference)
    writeTree(Buffer.from(reference), NEW)
    newTree = describeTree(reference)
    rmSync(reference, {recursive: true})
    return media
  }

  const workFolders = (folder: string) =>
    readdirSync(folder).filter((name) => name.includes(SUFFIX) || name.startsWith('.media.'))
  // mtimes of folders change with the moves: what is compared is names, kinds, contents and links.
  const shape = (tree: Map<string, string>) =>
    new Map([...tree].map(([key, value]) => [key, value.replace(/ mode \d+ mtime \d+$| mtime \d+$/, '')]))
  const expectTree = (media: string, expected: Map<string, string>) =>
    expect(treeDifferences(shape(expected), shape(describeTree(media)))).to.deep.equal([])

  /** Killed while it removes the media it replaced: the swap had ended, so the guard finishes the removal. */
  function killedWhileRemoving(context: Mocha.Context, mounted: boolean, previous: string): void {
    const media = makeMedia(context, mounted)
    const outcome = restoreUnderFault(
      media,
      {inject: 'signal=KILL', paths: [join(previous, 'old-only.txt')], syscalls: 'unlink,unlinkat'},
      scratch,
    )
    expect(outcome.signal, outcome.stderr).to.equal('SIGKILL')
    expectTree(media, newTree)
    expect(workFolders(mounted ? media : scratch)).to.deep.equal([])
  }

  describe('in a media folder that is a mount point', () => {
    const media = () => join(scratch, 'media')
    const fresh = () => join(media(), `.divio-restore-${SUFFIX}`)
    const placing = () => join(media(), `.divio-placing-${SUFFIX}`)
    const previous = () => join(media(), `.divio-before-restore-${SUFFIX}`)

    // Every step of the swap, each with both faults: killed there, the guard puts the old media back;
    // failed there, the command itself does, and says so.
    const steps: Array<[string, () => {paths: string[]; syscalls: string}]> = [
      ['moving an old entry aside', () => ({paths: [join(media(), 'old-only.txt')], syscalls: RENAMES})],
      ['renaming the extraction to mark that every old entry is aside', () => ({paths: [fresh()], syscalls: RENAMES})],
      ['moving a new entry into place', () => ({paths: [join(placing(), 'new-only.txt')], syscalls: RENAMES})],
      ['removing the emptied extraction, the last step of the swap', () => ({paths: [placing()], syscalls: 'rmdir'})],
    ]
    for (const [step, fault] of steps) {
      for (const inject of ['signal=KILL', 'error=EIO']) {
        it(`${inject === 'signal=KILL' ? 'SIGKILL' : 'EIO'} while ${step}: the old media is back, whole`, function () {
          makeMedia(this, true)
          const outcome = restoreUnderFault(media(), {inject, ...fault()}, scratch)
          if (inject === 'signal=KILL') {
            expect(outcome.signal, outcome.stderr).to.equal('SIGKILL')
          } else {
            expect(outcome.error?.code, outcome.stderr).to.equal('OUTPUT_UNAVAILABLE')
            expect(outcome.error?.message).to.include('EIO')
            expect(outcome.error?.message).to.include('The media folder was left as it was.')
          }

          expectTree(media(), oldTree)
          expect(workFolders(media())).to.deep.equal([])
        })
      }
    }

    it('SIGKILL while removing the previous media after the swap: the guard finishes the removal', function () {
      killedWhileRemoving(this, true, previous())
    })

    it('EIO placing a new entry, then EIO moving an old one back: the old entries stay in the named folder, which nothing removes', function () {
      makeMedia(this, true)
      const outcome = restoreUnderFault(
        media(),
        {
          inject: 'error=EIO',
          paths: [join(placing(), 'new-only.txt'), join(previous(), 'old-only.txt')],
          syscalls: RENAMES,
        },
        scratch,
      )
      expect(outcome.error?.code, outcome.stderr).to.equal('OUTPUT_UNAVAILABLE')
      expect(outcome.error?.message).to.include(
        `some of its previous entries could not be moved back: they are in ${previous()}.`,
      )
      // Everything of the old media is still there, at the top or in the folder named.
      const left = describeTree(media())
      const inPrevious = Buffer.from(`.divio-before-restore-${SUFFIX}/`).toString('hex')
      const old = new Map(
        [...left]
          .filter(([key]) => key.startsWith(inPrevious))
          .map(([key, value]) => [key.slice(inPrevious.length), value]),
      )
      expect(old.get(Buffer.from('old-only.txt').toString('hex'))).to.match(/^file /)
      for (const [key] of oldTree)
        expect(left.has(key) || old.has(key), Buffer.from(key, 'hex').toString()).to.equal(true)
      expect(workFolders(media())).to.deep.equal([`.divio-before-restore-${SUFFIX}`])
    })
  })

  describe('in an ordinary media folder', () => {
    const media = () => join(scratch, 'media')
    const fresh = () => join(scratch, `.media.restore-${SUFFIX}`)
    const previous = () => join(scratch, `.media.before-restore-${SUFFIX}`)

    it('SIGKILL between its two renames: the guard puts the old folder back', function () {
      makeMedia(this, false)
      const outcome = restoreUnderFault(media(), {inject: 'signal=KILL', paths: [fresh()], syscalls: RENAMES}, scratch)
      expect(outcome.signal, outcome.stderr).to.equal('SIGKILL')
      expectTree(media(), oldTree)
      expect(workFolders(scratch)).to.deep.equal([])
    })

    it('SIGKILL while removing the previous media after the swap: the guard finishes the removal', function () {
      killedWhileRemoving(this, false, previous())
    })

    it('EIO on the second rename: the old folder goes back, and the error says so', function () {
      makeMedia(this, false)
      const outcome = restoreUnderFault(media(), {inject: 'error=EIO', paths: [fresh()], syscalls: RENAMES}, scratch)
      expect(outcome.error?.message, outcome.stderr).to.include('The media folder was left as it was.')
      expectTree(media(), oldTree)
      expect(workFolders(scratch)).to.deep.equal([])
    })

    it('EIO on the second rename and on the way back: the old folder is where the error says, and stays', function () {
      makeMedia(this, false)
      const outcome = restoreUnderFault(
        media(),
        {inject: 'error=EIO', paths: [fresh(), previous()], syscalls: RENAMES},
        scratch,
      )
      expect(outcome.error?.code, outcome.stderr).to.equal('OUTPUT_UNAVAILABLE')
      expect(outcome.error?.message).to.include(`the previous media could not be moved back (EIO`)
      expect(outcome.error?.message).to.include(`it is in ${previous()}.`)
      expectTree(previous(), oldTree)
      expect(workFolders(scratch)).to.deep.equal([`.media.before-restore-${SUFFIX}`])
    })
  })
})

describe('a media folder that a restore moved aside when the machine went down', () => {
  it('is named, with the rename that puts it back, by the next backup', async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'aside-'))
    try {
      const aside = join(scratch, `.media.before-restore-${SUFFIX}`)
      mkdirSync(aside)
      writeFileSync(join(aside, 'a.txt'), 'the media')
      const provider = new FilesystemMediaProvider(join(scratch, 'media'))
      const entries = provider.entries({signal: new AbortController().signal})
      const failure = await entries[Symbol.asyncIterator]()
        .next()
        .then(
          () => {},
          (error: unknown) => error as BackupError,
        )
      expect(failure?.code).to.equal('SOURCE_UNAVAILABLE')
      expect(failure?.message).to.equal(
        `The media folder ${join(scratch, 'media')} does not exist: a restore moved it aside to ${aside} and stopped before the new one took its place (the machine went down).`,
      )
      expect(failure?.suggestion).to.equal(
        `Rename ${aside} back to ${join(scratch, 'media')}, then run the restore again if you still want it.`,
      )

      // Anything else beside it is no such sign.
      rmSync(aside, {recursive: true})
      mkdirSync(join(scratch, '.media.before-restore-notours'))
      const plain = await new FilesystemMediaProvider(join(scratch, 'media'))
        .entries({signal: new AbortController().signal})
        [Symbol.asyncIterator]()
        .next()
        .then(
          () => {},
          (error: unknown) => error as BackupError,
        )
      expect(plain?.message).to.equal(`The media folder ${join(scratch, 'media')} does not exist.`)
    } finally {
      rmSync(scratch, {force: true, recursive: true})
    }
  })
})
