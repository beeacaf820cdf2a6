import {expect} from 'chai'
import * as fc from 'fast-check'
import {execFileSync} from 'node:child_process'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Header, Pax} from 'tar'

import {encodeTarHeader, fitsUstar, loadTarEncoder, TarHeaderFields} from '../../src/archive/tar-header.js'
import {requireTool} from '../helpers/tools.js'

/** node-tar's own encoding of the same fields, which the fast path must reproduce byte for byte. */
function nodeTarHeader(fields: TarHeaderFields): Buffer {
  const header = new Header(fields)
  if (!header.encode()) return header.block!
  const pax = new Pax({linkpath: fields.linkpath, mtime: fields.mtime, path: fields.path, size: fields.size})
  return Buffer.concat([pax.encode(), header.block!])
}

const printable = fc.string({maxLength: 99, minLength: 1, unit: fc.constantFrom(...'abcXYZ019 ._-/~!')})
const anyFields = fc.record({
  linkpath: fc.option(printable, {nil: undefined}),
  mode: fc.integer({max: 0o7777, min: 0}),
  mtime: fc.integer({max: 4_102_444_800_000, min: 0}).map((ms) => new Date(ms)),
  path: printable,
  size: fc.oneof(fc.integer({max: 1 << 20, min: 0}), fc.integer({max: 0o777_7777_7777, min: 0})),
  type: fc.constantFrom('Directory', 'File', 'SymbolicLink'),
})

// Names of uploads in other languages: UTF-8 that fits the ustar fields, with ASCII, control characters,
// characters of two to four bytes, and the odd lone surrogate (which both write as U+FFFD).
// Some near the field's 100 bytes, where the pax header's own name is cut.
const unicodeName = fc.oneof(
  fc.string({
    maxLength: 40,
    minLength: 1,
    unit: fc.oneof(
      fc.constantFrom(...'ab/. -é文😀\t\u00FF\uD800'),
      fc.string({maxLength: 1, minLength: 1, unit: 'binary'}),
    ),
  }),
  fc.tuple(fc.integer({max: 93, min: 80}), fc.nat(), fc.constantFrom('é', '文', '😀')).map(([length, at, wide]) => {
    const name = 'a'.repeat(length - 1)
    return name.slice(0, at % length) + wide + name.slice(at % length)
  }),
)
const unicodeFields = fc.record({
  linkpath: fc.option(unicodeName, {nil: undefined}),
  mode: fc.integer({max: 0o7777, min: 0}),
  mtime: fc.integer({max: 4_102_444_800_000, min: 0}).map((ms) => new Date(ms)),
  path: unicodeName.map((name) => `media/${name}`),
  size: fc.oneof(fc.integer({max: 1 << 20, min: 0}), fc.integer({max: 0o777_7777_7777, min: 0})),
  type: fc.constantFrom('Directory', 'File', 'SymbolicLink'),
})

describe('tar headers', () => {
  // node-tar's encoder, which long names need, is loaded apart (see loadTarEncoder).
  before(() => loadTarEncoder())

  it('are node-tar’s bytes for names of any UTF-8, long, short, in folders and not', () => {
    fc.assert(
      fc.property(unicodeFields, fc.boolean(), (fields, deep) => {
        // Some past 100 bytes, which take node-tar's own path (its prefix field).
        const path = deep ? `${fields.path}/${'x'.repeat(60)}/${fields.path}` : fields.path
        const member = {...fields, path}
        expect(encodeTarHeader(member).equals(nodeTarHeader(member))).to.equal(true)
      }),
      {numRuns: 3000},
    )
  })

  it('are node-tar’s bytes for every field combination that fits ustar', () => {
    fc.assert(
      fc.property(anyFields, (fields) => {
        expect(fitsUstar(fields)).to.equal(true)
        expect(encodeTarHeader(fields).equals(nodeTarHeader(fields))).to.equal(true)
      }),
      {numRuns: 2000},
    )
  })

  it('fall back to a pax header for long or non-ASCII names, control characters and 8 GiB files', () => {
    const base = {mode: 0o644, mtime: new Date('2026-05-06T07:08:09.500Z'), size: 10, type: 'File'} as const
    const cases: TarHeaderFields[] = [
      {...base, path: `media/${'long-folder-name/'.repeat(8)}file.txt`},
      {...base, path: 'media/café/ünïcode.txt'},
      {...base, path: 'media/tab\there'},
      {...base, path: 'media/huge.bin', size: 8 * 1024 ** 3},
      {...base, linkpath: `../${'x'.repeat(120)}`, path: 'media/link', type: 'SymbolicLink'},
      {...base, mtime: new Date(-1000), path: 'media/before-1970'},
    ]
    for (const fields of cases) {
      const encoded = encodeTarHeader(fields)
      expect(fitsUstar(fields), fields.path).to.equal(false)
      expect(encoded.equals(nodeTarHeader(fields)), fields.path).to.equal(true)
    }

    // A non-ASCII name needs a pax record ahead of the ustar block.
    expect(encodeTarHeader(cases[1]).length).to.equal(3 * 512)
  })

  it('are read back by system tar with the same names, sizes, modes and times', function () {
    requireTool(this, 'tar', 'tar')
    const folder = mkdtempSync(join(tmpdir(), 'tar-header-'))
    const mtime = new Date('2026-05-06T07:08:09Z')
    const members: Buffer[] = [
      encodeTarHeader({mode: 0o755, mtime, path: 'media/docs/', size: 0, type: 'Directory'}),
      encodeTarHeader({mode: 0o640, mtime, path: 'media/docs/a.txt', size: 5, type: 'File'}),
      Buffer.concat([Buffer.from('hello'), Buffer.alloc(507)]),
      encodeTarHeader({linkpath: 'docs/a.txt', mode: 0o777, mtime, path: 'media/link', size: 0, type: 'SymbolicLink'}),
      encodeTarHeader({mode: 0o600, mtime, path: 'media/docs/Zürich 文件.txt', size: 2, type: 'File'}),
      Buffer.concat([Buffer.from('zh'), Buffer.alloc(510)]),
      encodeTarHeader({
        linkpath: 'Zürich 文件.txt',
        mode: 0o777,
        mtime,
        path: 'media/docs/Übersicht',
        size: 0,
        type: 'SymbolicLink',
      }),
      Buffer.alloc(1024),
    ]
    const archive = join(folder, 'a.tar')
    writeFileSync(archive, Buffer.concat(members))
    const listing = execFileSync('tar', ['--utc', '-tvf', archive]).toString().trim().split('\n')
    expect(listing[0]).to.match(/^drwxr-xr-x .* 0 2026-05-06 07:08 media\/docs\/$/)
    expect(listing[1]).to.match(/^-rw-r----- .* 5 2026-05-06 07:08 media\/docs\/a\.txt$/)
    expect(listing[2]).to.match(/^lrwxrwxrwx .* media\/link -> docs\/a\.txt$/)
    expect(listing[3]).to.match(/^-rw------- .* 2 2026-05-06 07:08 media\/docs\/Zürich 文件\.txt$/)
    expect(listing[4]).to.match(/^lrwxrwxrwx .* media\/docs\/Übersicht -> Zürich 文件\.txt$/)
    expect(execFileSync('tar', ['-xOf', archive, 'media/docs/a.txt']).toString()).to.equal('hello')
    expect(execFileSync('tar', ['-xOf', archive, 'media/docs/Zürich 文件.txt']).toString()).to.equal('zh')
  })
})
