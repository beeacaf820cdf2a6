import {expect} from 'chai'
import * as fc from 'fast-check'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'

import {checkMediaArchive} from '../../src/archive/archive-check.js'
import {extractMediaArchive} from '../../src/archive/extract.js'
import {PathKind, PathTable} from '../../src/archive/path-table.js'
import {craftTar, letters, listingFor} from '../helpers/crafted-tar.js'
import {lendingSource} from '../helpers/lending-source.js'

type MemberType = 'Directory' | 'File' | 'SymbolicLink'

interface Member {
  path: string
  type: MemberType
}

const BODY = 'same'

/** A tar of `members` (files hold BODY, links point at `c`), with the listing of its files last. */
function archive(members: Member[]): Buffer {
  const files = members.filter(({type}) => type === 'File')
  return craftTar([
    ...members.map(({path, type}) =>
      type === 'File'
        ? {body: BODY, path, type}
        : {linkpath: type === 'SymbolicLink' ? 'c' : undefined, path: type === 'Directory' ? `${path}/` : path, type},
    ),
    listingFor(files.map(({path}) => ({body: BODY, path: path.slice('media/'.length)}))),
  ])
}

async function verdict(run: () => Promise<unknown>): Promise<string> {
  return run().then(
    () => 'ok',
    (error: Error) => error.message,
  )
}

describe('media archive check (verify)', () => {
  it('agrees with extraction into a folder on every archive of up to three members over a small tree', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'archive-check-'))
    const alphabet: Member[] = []
    for (const path of ['media/a', 'media/a/b', 'media/c'])
      for (const type of ['File', 'Directory', 'SymbolicLink'] as const) alphabet.push({path, type})
    const sequences: Member[][] = [[]]
    for (let length = 1; length <= 3; length++)
      for (const sequence of sequences.filter((candidate) => candidate.length === length - 1))
        for (const member of alphabet) sequences.push([...sequence, member])

    let refused = 0
    try {
      for (const [index, members] of sequences.entries()) {
        const tar = archive(members)
        const checked = await verdict(() => checkMediaArchive(Readable.from([tar]), 'filesystem'))
        const extracted = await verdict(() => extractMediaArchive(Readable.from([tar]), join(parent, String(index))))
        const described = members.map(({path, type}) => `${type} ${path}`).join(', ')
        // What verifies restores, and what restore refuses, verify fails: the same verdict either way.
        expect(checked === 'ok', `[${described}]: verify ${checked}; extraction ${extracted}`).to.equal(
          extracted === 'ok',
        )
        if (checked !== 'ok') refused++
      }
    } finally {
      rmSync(parent, {force: true, recursive: true})
    }

    expect(sequences.length).to.equal(1 + 9 + 81 + 729)
    // Most of them clash somewhere: the matrix covers both verdicts.
    expect(refused).to.be.within(300, sequences.length - 100)
  })

  it("takes a bucket's keys as they are: a name both a key and a folder, but never one key twice", async () => {
    const both = archive([
      {path: 'media/photos', type: 'File'},
      {path: 'media/photos/1.jpg', type: 'File'},
      {path: 'media/photos', type: 'Directory'},
    ])
    expect(await verdict(() => checkMediaArchive(Readable.from([both]), 's3'))).to.equal('ok')
    expect(await verdict(() => checkMediaArchive(Readable.from([both]), 'filesystem'))).to.match(
      /would be written through a file \(photos\)/,
    )
    for (const twice of [
      [
        {path: 'media/a', type: 'File'},
        {path: 'media/a', type: 'File'},
      ],
      [
        {path: 'media/a/b', type: 'File'},
        {path: 'media/a', type: 'File'},
        {path: 'media/a', type: 'File'},
      ],
    ] as Member[][]) {
      expect(await verdict(() => checkMediaArchive(Readable.from([archive(twice)]), 's3'))).to.match(
        /already holds a file, folder or link of that name/,
      )
    }
  })
})

describe('media archive check, on chunks that go round', () => {
  const files = [
    {body: letters(1, 700_000), path: 'one.bin'},
    {body: 'small', path: 'small.txt'},
    {body: letters(2, 1_000_001), path: 'two.bin'},
  ]
  const members = (bodies: string[]) =>
    craftTar([
      {path: 'media/', type: 'Directory'},
      ...files.map(({path}, index) => ({body: bodies[index], path: `media/${path}`, type: 'File' as const})),
      listingFor(files),
    ])

  // What it hashes is given back once hashed: a source that refills given-back buffers must not change the verdict.
  for (const chunkBytes of [64 * 1024, 100_003]) {
    it(`passes an archive that matches its listing, fails one that does not, and gives chunks back (${chunkBytes} a chunk)`, async () => {
      const good = lendingSource(members(files.map(({body}) => body)), chunkBytes)
      expect(await checkMediaArchive(good.stream, 'filesystem')).to.deep.equal({bytes: 1_700_006, files: 3})
      expect(good.reused(), 'chunks given back').to.be.greaterThan(0)

      const changed = files.map(({body}) => body)
      changed[2] = `${changed[2].slice(0, 900_000)}X${changed[2].slice(900_001)}`
      const bad = lendingSource(members(changed), chunkBytes)
      expect(await verdict(() => checkMediaArchive(bad.stream, 'filesystem'))).to.match(/do not match/)
    })
  }
})

describe('path table', () => {
  it('gives back the kind last recorded for each path, and nothing for the others', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.string({maxLength: 12, unit: 'grapheme'}),
            fc.constantFrom(PathKind.File, PathKind.Folder, PathKind.Link),
          ),
          {maxLength: 300},
        ),
        fc.array(fc.string({maxLength: 12}), {maxLength: 50}),
        (records, others) => {
          const table = new PathTable()
          const expected = new Map<string, PathKind>()
          for (const [path, kind] of records) {
            table.set(path, kind)
            expected.set(path, kind)
          }

          for (const [path, kind] of expected) expect(table.get(path)).to.equal(kind)
          for (const path of others) expect(table.get(path)).to.equal(expected.get(path))
        },
      ),
    )
  })

  it('tells apart names that differ only in bytes that are not UTF-8', () => {
    const table = new PathTable()
    table.set('photo-\uDC80.jpg', PathKind.File)
    expect(table.get('photo-\uDC80.jpg')).to.equal(PathKind.File)
    for (const other of ['photo-\uDC81.jpg', 'photo-\uFFFD.jpg', 'photo-.jpg'])
      expect(table.get(other)).to.equal(undefined)
  })

  it('grows past its first size without losing a path', () => {
    const table = new PathTable()
    for (let index = 0; index < 50_000; index++) table.set(`media/${index % 97}/f${index}`, PathKind.File)
    for (let index = 0; index < 50_000; index++) {
      expect(table.get(`media/${index % 97}/f${index}`)).to.equal(PathKind.File)
      expect(table.get(`media/${index % 97}/g${index}`)).to.equal(undefined)
    }
  })
})
