import {expect} from 'chai'
import * as fc from 'fast-check'
import {createHash} from 'node:crypto'
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'

import {extractMediaArchive} from '../../src/archive/extract.js'
import {BackupError} from '../../src/errors.js'
import {craftTar, letters, listingFor, CraftedMember as Member} from '../helpers/crafted-tar.js'
import {lendingSource} from '../helpers/lending-source.js'
import {snapshotTree} from '../helpers/project.js'

describe('media extraction', () => {
  let parent: string
  let target: string

  beforeEach(() => {
    parent = mkdtempSync(join(tmpdir(), 'extract-'))
    mkdirSync(join(parent, 'outside'))
    writeFileSync(join(parent, 'outside', 'keep.txt'), 'untouched')
    target = join(parent, 'restored')
  })

  it('extracts files, folders and inside symlinks, and checks them against MANIFEST.json', async () => {
    const tar = craftTar([
      {path: 'media/', type: 'Directory'},
      {path: 'media/a/', type: 'Directory'},
      {body: 'hello', path: 'media/a/one.txt', type: 'File'},
      {linkpath: 'a/one.txt', path: 'media/latest', type: 'SymbolicLink'},
      listingFor([{body: 'hello', path: 'a/one.txt'}]),
    ])
    expect(await extractMediaArchive(Readable.from([tar]), target)).to.deep.equal({bytes: 5, files: 1, skipped: []})
    expect(readFileSync(join(target, 'a', 'one.txt'), 'utf8')).to.equal('hello')
    expect(readlinkSync(join(target, 'latest'))).to.equal('a/one.txt')
  })

  it('tells `written` of every file with the SHA-256 of what it wrote, small and large, in archive order', async () => {
    const files = [
      {body: 'small', path: 'a/small.txt'},
      {body: letters(1, 700_000), path: 'a/large.bin'},
      {body: '', path: 'empty.txt'},
    ]
    const tar = craftTar([
      {path: 'media/', type: 'Directory'},
      {path: 'media/a/', type: 'Directory'},
      ...files.map(({body, path}) => ({body, path: `media/${path}`, type: 'File' as const})),
      listingFor(files),
    ])
    const told: string[] = []
    await extractMediaArchive(Readable.from([tar]), target, {
      written(path, sha256) {
        told.push(`${path} ${sha256}`)
      },
    })
    expect(told).to.deep.equal(
      files.map(({body, path}) => `${path} ${createHash('sha256').update(body).digest('hex')}`),
    )
  })

  for (const how of ['throws', 'rejects'] as const) {
    it(`fails with the error of a \`written\` that ${how}, without hanging, and leaves nothing`, async () => {
      const files = Array.from({length: 50}, (_, index) => ({body: `file ${index}`, path: `f${index}.txt`}))
      const tar = craftTar([
        {path: 'media/', type: 'Directory'},
        ...files.map(({body, path}) => ({body, path: `media/${path}`, type: 'File' as const})),
        listingFor(files),
      ])
      const failure = new Error('the record is full')
      let told = 0
      const extracting = extractMediaArchive(Readable.from([tar]), target, {
        written() {
          if (++told < 10) return
          if (how === 'throws') throw failure
          return Promise.reject(failure)
        },
      })
      // A throw on the writer's reply, with nobody to hear it, would leave the extraction waiting for ever.
      const outcome = await Promise.race([
        extracting.then(
          () => 'extracted',
          (error: unknown) => error,
        ),
        sleep(30_000, 'still waiting after 30 s', {ref: false}),
      ])
      expect(outcome).to.equal(failure)
      expect(existsSync(target)).to.equal(false)
    })
  }

  it('writes large files right from lent chunks, and gives the chunks back', async () => {
    // Above and below the size at which files stream instead of going to the writer thread.
    const files = [
      {body: letters(1, 700_000), path: 'big/one.bin'},
      {body: 'small', path: 'small.txt'},
      {body: letters(2, 300_000), path: 'big/two.bin'},
      {body: letters(3, 1_000_001), path: 'three.bin'},
    ]
    const tar = craftTar([
      {path: 'media/', type: 'Directory'},
      {path: 'media/big/', type: 'Directory'},
      ...files.map(({body, path}) => ({body, path: `media/${path}`, type: 'File' as const})),
      listingFor(files),
    ])
    // A chunk the size of age's, and one that straddles every member boundary.
    for (const chunkBytes of [64 * 1024, 100_003]) {
      rmSync(target, {force: true, recursive: true})
      const source = lendingSource(tar, chunkBytes)
      await extractMediaArchive(source.stream, target)
      for (const {body, path} of files) expect(readFileSync(join(target, path), 'latin1'), path).to.equal(body)
      expect(source.reused(), 'chunks given back').to.be.greaterThan(0)
    }
  })

  // Every kind of mode a file can have: the ones the umask leaves whole, and the ones it does not.
  const FILE_MODES = [0o644, 0o600, 0o640, 0o666, 0o200, 0o444, 0o400, 0o000, 0o755, 0o700, 0o4755, 0o2644, 0o1666]
  for (const umask of [0o022, 0o077, 0o000]) {
    it(`gives every file exactly its mode, whatever the umask (${umask.toString(8).padStart(3, '0')})`, async () => {
      const files = FILE_MODES.map((mode) => ({body: `mode ${mode.toString(8)}`, mode, path: `m${mode.toString(8)}`}))
      const tar = craftTar([
        ...files.map(({body, mode, path}) => ({body, mode, path: `media/${path}`, type: 'File' as const})),
        listingFor(files),
      ])
      const before = process.umask(umask)
      try {
        await extractMediaArchive(Readable.from([tar]), target)
      } finally {
        process.umask(before)
      }

      for (const {body, mode, path} of files) {
        expect(lstatSync(join(target, path)).mode & 0o7777, path).to.equal(mode)
        if (mode & 0o400) expect(readFileSync(join(target, path), 'utf8')).to.equal(body)
      }
    })
  }

  it('a source stopped by a signal (an AbortError) is not reported as a damaged archive, and leaves nothing', async () => {
    const tar = craftTar([{body: 'x'.repeat(4000), path: 'media/a.txt', type: 'File'}])
    let reads = 0
    // Half the archive, then the error a stream stopped by an AbortSignal fails with.
    const source = new Readable({
      read() {
        if (reads++ === 0) this.push(tar.subarray(0, 1024))
        else this.destroy(Object.assign(new Error('The operation was aborted'), {name: 'AbortError'}))
      },
    })
    const error = await extractMediaArchive(source, target).then(
      () => expect.fail('an aborted source extracted'),
      (error_: Error) => error_,
    )
    expect(error.name).to.equal('AbortError')
    expect(existsSync(target)).to.equal(false)
  })

  it('refuses a file whose contents differ from the listing', async () => {
    const tar = craftTar([
      {body: 'HELLO', path: 'media/one.txt', type: 'File'},
      listingFor([{body: 'hello', path: 'one.txt'}]),
    ])
    const error = await extractMediaArchive(Readable.from([tar]), target).catch((error_: unknown) => error_)
    expect(error).to.be.instanceOf(BackupError).and.to.have.property('code', 'INTEGRITY')
  })

  const attacks: Array<[string, Member[], RegExp]> = [
    ['an absolute path', [{body: 'x', path: '/tmp/escaped.txt', type: 'File'}], /outside media\//],
    ['a ".." path', [{body: 'x', path: 'media/../../outside/escaped.txt', type: 'File'}], /"\.\." segment/],
    [
      'an inside symlink to a folder, then a file through it',
      [
        {path: 'media/dir/', type: 'Directory'},
        {linkpath: 'dir', path: 'media/link', type: 'SymbolicLink'},
        {body: 'x', path: 'media/link/through.txt', type: 'File'},
        listingFor([{body: 'x', path: 'link/through.txt'}]),
      ],
      // The file comes first and makes "link" a real folder, so the symlink meets a taken name.
      /already extracted/,
    ],
    // Files are written on a thread of their own, a batch at a time: whichever of the two names is
    // written second meets the first, and the archive is refused either way.
    [
      'the same file twice',
      [
        {body: 'x', path: 'media/twice.txt', type: 'File'},
        {body: 'y', path: 'media/twice.txt', type: 'File'},
      ],
      /already extracted/,
    ],
    [
      'a file, then a folder of the same name',
      [
        {body: 'x', path: 'media/name', type: 'File'},
        {path: 'media/name/', type: 'Directory'},
      ],
      /already extracted/,
    ],
    [
      'a file, then a file inside it',
      [
        {body: 'x', path: 'media/name', type: 'File'},
        {body: 'y', path: 'media/name/inner', type: 'File'},
      ],
      /already extracted|written through a file/,
    ],
    ['a hard link out', [{linkpath: '/etc/passwd', path: 'media/hard', type: 'Link'}], /hard link/],
    ['a device node', [{path: 'media/null', type: 'CharacterDevice'}], /character device/],
    ['a FIFO', [{path: 'media/pipe', type: 'FIFO'}], /FIFO/],
  ]
  // Links that lead outside are left out, with the reason, and everything else is restored: a media
  // folder can hold such links, and its backup must restore. Nothing is ever written through them.
  const leavingLinks: Array<[string, Member[], string, RegExp]> = [
    [
      'a symlink out, then a file through it',
      [
        {linkpath: '../outside', path: 'media/link', type: 'SymbolicLink'},
        {body: 'x', path: 'media/link/escaped.txt', type: 'File'},
        listingFor([{body: 'x', path: 'link/escaped.txt'}]),
      ],
      'link',
      /symlink to "\.\.\/outside", which leads outside the media folder/,
    ],
    [
      'an absolute symlink, then a file through it',
      [
        {linkpath: '/tmp', path: 'media/link', type: 'SymbolicLink'},
        {body: 'x', path: 'media/link/escaped.txt', type: 'File'},
        listingFor([{body: 'x', path: 'link/escaped.txt'}]),
      ],
      'link',
      /symlink to "\/tmp"/,
    ],
    [
      'a chain of links whose ".." the kernel applies after following a link (as text it stays inside)',
      [
        {path: 'media/sub/sub2/', type: 'Directory'},
        {linkpath: '..', path: 'media/sub/sub2/l3', type: 'SymbolicLink'},
        // As text, sub/sub2/l3/../../.. is the media folder; the kernel follows l3 to sub first, and lands two levels above it.
        {linkpath: 'sub/sub2/l3/../../../etc/passwd', path: 'media/pw', type: 'SymbolicLink'},
        listingFor([]),
      ],
      'pw',
      /leads outside the media folder, through other links/,
    ],
    [
      'a link whose target names a link created after it',
      [
        {linkpath: 'later/../../outside/keep.txt', path: 'media/early', type: 'SymbolicLink'},
        {path: 'media/deep/er/', type: 'Directory'},
        {linkpath: 'deep/er', path: 'media/later', type: 'SymbolicLink'},
        listingFor([]),
      ],
      'early',
      /"later\/\.\.\/\.\.\/outside\/keep\.txt", which leads outside the media folder/,
    ],
  ]
  for (const [name, members, skippedPath, reason] of leavingLinks) {
    it(`leaves out ${name}, names it, restores the rest, and writes nothing outside the target`, async () => {
      const before = snapshotTree(parent)
      const summary = await extractMediaArchive(Readable.from([craftTar(members)]), target)
      expect(summary.skipped.map(({path}) => path)).to.deep.equal([skippedPath])
      expect(summary.skipped[0].why).to.match(reason)
      expect(existsSync(join(target, skippedPath)) && lstatSync(join(target, skippedPath)).isSymbolicLink()).to.equal(
        false,
      )
      const outside = (tree: Map<string, string>) =>
        [...tree].filter(([path]) => path !== 'restored' && !path.startsWith('restored/'))
      expect(outside(snapshotTree(parent))).to.deep.equal(outside(before))
      expect(existsSync('/tmp/escaped.txt')).to.equal(false)
    })
  }

  it('creates a link to the media folder itself (it stays inside)', async () => {
    const summary = await extractMediaArchive(
      Readable.from([
        craftTar([
          {path: 'media/a/', type: 'Directory'},
          {linkpath: '..', path: 'media/a/top', type: 'SymbolicLink'},
          listingFor([]),
        ]),
      ]),
      target,
    )
    expect(summary.skipped).to.deep.equal([])
    expect(readlinkSync(join(target, 'a', 'top'))).to.equal('..')
  })

  it('refuses a member after MANIFEST.json', async () => {
    const error = await extractMediaArchive(
      Readable.from([craftTar([listingFor([]), {body: 'late', path: 'media/late.txt', type: 'File'}])]),
      target,
    ).catch((error_: unknown) => error_)
    expect(error).to.be.instanceOf(BackupError).and.to.have.property('code', 'INTEGRITY')
    expect((error as BackupError).message).to.match(/follows MANIFEST\.json/)
    expect(existsSync(target)).to.equal(false)
  })

  for (const [name, members, reason] of attacks) {
    it(`refuses ${name}, and writes nothing outside the target`, async () => {
      const before = snapshotTree(parent)
      const error = await extractMediaArchive(Readable.from([craftTar(members)]), target).catch(
        (error_: unknown) => error_,
      )
      expect(error).to.be.instanceOf(BackupError)
      expect((error as BackupError).code).to.equal('INTEGRITY')
      expect((error as BackupError).message).to.match(reason)
      const after = snapshotTree(parent)
      const outside = (tree: Map<string, string>) =>
        [...tree].filter(([path]) => path !== 'restored' && !path.startsWith('restored/'))
      expect(outside(after)).to.deep.equal(outside(before))
      expect(existsSync('/tmp/escaped.txt')).to.equal(false)
    })
  }
})

/**
 * The class of the symlink-chain escape: random trees of folders, files and symlinks, whose targets are
 * random relative paths (through "..", ".", and names that are themselves links, created before or after)
 * or absolute paths. Whatever the archive holds, after extraction, successful or refused:
 * - the real path of every entry left in the target is inside the target;
 * - writing through every link left there, as an app would, changes nothing outside;
 * - nothing outside the target changed.
 * The oracle is the kernel itself (realpath, open), not the extractor's own reasoning.
 */
describe('media extraction: symlinks resolve inside the target, whatever the tree (property)', () => {
  const name = fc.constantFrom('a', 'b', 'l')
  const relativePath = fc.array(name, {maxLength: 3, minLength: 1}).map((parts) => parts.join('/'))
  // ".." is drawn often: escapes need a link that climbs, followed by more climbing through it.
  const segment = fc.oneof(
    {arbitrary: fc.constant('..'), weight: 4},
    {arbitrary: fc.constantFrom('.', 'a', 'b', 'l', 'l', 'outside', 'keep.txt'), weight: 5},
  )
  const linkTarget = fc.oneof(
    {arbitrary: fc.array(segment, {maxLength: 8, minLength: 1}).map((parts) => parts.join('/')), weight: 9},
    {arbitrary: fc.constantFrom('/etc/passwd', '/tmp', '/'), weight: 1},
  )
  const member = fc.oneof(
    {arbitrary: fc.record({kind: fc.constant('dir' as const), path: relativePath}), weight: 2},
    {
      arbitrary: fc.record({body: fc.string({maxLength: 8}), kind: fc.constant('file' as const), path: relativePath}),
      weight: 1,
    },
    {arbitrary: fc.record({kind: fc.constant('link' as const), path: relativePath, target: linkTarget}), weight: 4},
  )

  // A climbing chain, the shape of the reported escape: folder D, a link in D to one of D's ancestors,
  // and a link elsewhere whose target goes through that link and climbs on. Many are escapes that
  // text alone does not show; some stay inside. Random members around it add noise.
  const chain = fc
    .record({
      climb: fc.integer({max: 4, min: 0}),
      folder: fc.array(name, {maxLength: 3, minLength: 1}),
      from: relativePath,
      tail: fc.array(fc.constantFrom('a', 'b', 'l'), {maxLength: 2}),
      up: fc.integer({max: 3, min: 1}),
    })
    .map(({climb, folder, from, tail, up}) => [
      {kind: 'dir' as const, path: folder.join('/')},
      {kind: 'link' as const, path: `${folder.join('/')}/l`, target: Array.from({length: up}, () => '..').join('/')},
      {
        kind: 'link' as const,
        path: from,
        target: [...folder, 'l', ...Array.from({length: climb}, () => '..'), ...tail].join('/'),
      },
    ])
  const tree = fc
    .tuple(fc.array(chain, {maxLength: 2}), fc.array(member, {maxLength: 8}))
    .map(([chains, members]) => [...chains.flat(), ...members])
    .chain((entries) => fc.shuffledSubarray(entries, {maxLength: entries.length, minLength: entries.length}))
    .filter((entries) => entries.length > 0)

  it('no entry resolves outside, and nothing outside changes', async () => {
    await fc.assert(
      fc.asyncProperty(tree, async (entries) => {
        const parent = mkdtempSync(join(tmpdir(), 'extract-property-'))
        try {
          mkdirSync(join(parent, 'outside'))
          writeFileSync(join(parent, 'outside', 'keep.txt'), 'untouched')
          // Two levels of folders above the target: a link that climbs out lands on something that exists.
          // Named like the tree's own entries, so that an escape lands on something real that realpath resolves.
          for (const name of ['a', 'b', 'l']) mkdirSync(join(parent, 'up', 'a', name), {recursive: true})
          for (const name of ['b', 'l']) mkdirSync(join(parent, 'up', name))
          const target = join(parent, 'up', 'a', 'restored')
          const files = entries.flatMap((entry) =>
            entry.kind === 'file' ? [{body: entry.body, path: entry.path}] : [],
          )
          const tar = craftTar([
            ...entries.map((entry): Member =>
              entry.kind === 'dir'
                ? {path: `media/${entry.path}/`, type: 'Directory'}
                : entry.kind === 'file'
                  ? {body: entry.body, path: `media/${entry.path}`, type: 'File'}
                  : {linkpath: entry.target, path: `media/${entry.path}`, type: 'SymbolicLink'},
            ),
            listingFor(files),
          ])
          const outsideOf = (tree: Map<string, string>) =>
            [...tree].filter(([path]) => path !== 'up/a/restored' && !path.startsWith('up/a/restored/'))
          const before = outsideOf(snapshotTree(parent))
          const error = await extractMediaArchive(Readable.from([tar]), target).then(
            () => {},
            (error_: unknown) => error_,
          )
          if (error !== undefined) {
            expect(error, String(error)).to.be.instanceOf(BackupError)
            expect(existsSync(target), 'a refused extraction removes its target').to.equal(false)
          }

          const root = existsSync(target) ? realpathSync.native(target) : target
          for (const path of walk(target)) {
            let real: string | undefined
            try {
              // The C library's realpath, which fails with ELOOP on a cycle of links: Node's own, written
              // in JS, was seen spinning for minutes on a cycle this property drew.
              real = realpathSync.native(path)
            } catch {
              // Dangling (or a loop): nothing to resolve now; the writes below check where it would lead.
            }

            if (real !== undefined)
              expect(real === root || real.startsWith(`${root}/`), `${path} → ${real}`).to.equal(true)
            if (lstatSync(path).isSymbolicLink()) writeThrough(path)
          }

          expect(outsideOf(snapshotTree(parent))).to.deep.equal(before)
        } finally {
          rmSync(parent, {force: true, recursive: true})
        }
      }),
      {numRuns: 1000},
    )
  })
})

function walk(root: string): string[] {
  if (!existsSync(root)) return []
  const found: string[] = []
  const visit = (folder: string) => {
    for (const entry of readdirSync(folder, {withFileTypes: true})) {
      const path = join(folder, entry.name)
      found.push(path)
      if (entry.isDirectory()) visit(path)
    }
  }

  visit(root)
  return found
}

/** Writes through a link the way an app would, into it and below it; where the kernel refuses, nothing is written. */
function writeThrough(link: string): void {
  for (const probe of [link, join(link, 'probe.txt')]) {
    try {
      writeFileSync(probe, 'written through a link', {flag: 'a'})
    } catch {
      // A folder, a loop or a missing parent: not writable that way.
    }
  }
}
