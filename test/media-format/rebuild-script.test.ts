import {expect} from 'chai'
import * as fc from 'fast-check'
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {decodeName, encodeName, isUtf8Name} from '../../src/lib/byte-names.js'
import {shellQuote} from '../../src/lib/shell.js'
import {IndexEntry} from '../../src/media-format/packs/media-index.js'
import {
  RebuildScriptCheck,
  rebuildScriptHeader,
  rebuildScriptLine,
} from '../../src/media-format/packs/rebuild-script.js'

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex')
const PACK = `${'0'.repeat(32)}.age`

/** Every kind of mode a file can have: the ones the umask can give, and the ones that need chmod. */
const FILE_MODES = [0o644, 0o600, 0o640, 0o666, 0o200, 0o444, 0o400, 0o000, 0o755, 0o700, 0o4755, 0o2644, 0o1666]

/** The script of the entries, run with sh under `umask`; the blobs in one pack folder. */
function rebuild(
  entries: IndexEntry[],
  umask: string,
  blobs: Map<string, Buffer>,
  existing?: (target: string) => void,
) {
  const root = mkdtempSync(join(tmpdir(), 'rebuild-script-'))
  const blobFolder = join(root, 'blobs', PACK)
  mkdirSync(blobFolder, {recursive: true})
  for (const [name, data] of blobs) writeFileSync(join(blobFolder, name), data)
  const script = Buffer.concat([
    Buffer.from(rebuildScriptHeader()),
    ...entries.map((entry) => Buffer.from(rebuildScriptLine(entry))),
  ])
  writeFileSync(join(root, 'rebuild.sh'), script)
  const target = join(root, 'media')
  existing?.(target)
  execFileSync('sh', ['-c', `umask ${umask} && sh rebuild.sh blobs media`], {cwd: root, stdio: 'pipe'})
  return {root, script, target}
}

describe('the rebuild script of a packed backup', () => {
  const content = Buffer.from('media bytes\n')
  const blobs = new Map([[sha256(content), content]])
  const file = (path: string, mode: number): IndexEntry => ({
    blobs: [[sha256(content), PACK]],
    mode: 0o10_0000 | mode,
    mtimeMs: 0,
    path,
    sha256: sha256(content),
    size: content.length,
    type: 'file',
  })
  const folder = (path: string): IndexEntry => ({mode: 0o4_0755, mtimeMs: 0, path, size: 0, type: 'directory'})

  for (const umask of ['022', '077', '000']) {
    it(`gives every file exactly its mode, whatever the umask (${umask}), and makes later folders as before`, () => {
      const entries = [
        folder('a'),
        ...FILE_MODES.map((mode) => file(`a/mode-${mode.toString(8)}`, mode)),
        // After the files: made with the umask the script started with, so it can be entered.
        folder('a/after'),
        file('a/after/last', 0o644),
      ]
      const {root, target} = rebuild(entries, umask, blobs)
      try {
        for (const mode of FILE_MODES) {
          const path = join(target, 'a', `mode-${mode.toString(8)}`)
          expect(lstatSync(path).mode & 0o7777, path).to.equal(mode)
          expect(readFileSync(path)).to.deep.equal(content)
        }

        const startedWith = Number.parseInt(umask, 8)
        expect(lstatSync(join(target, 'a', 'after')).mode & 0o777).to.equal(0o777 & ~startedWith)
        expect(readFileSync(join(target, 'a', 'after', 'last'))).to.deep.equal(content)
      } finally {
        rmSync(root, {force: true, recursive: true})
      }
    })
  }

  it('a file that is already there still gets its mode', () => {
    const {root, target} = rebuild([file('there', 0o640)], '022', blobs, (target) => {
      mkdirSync(target)
      writeFileSync(join(target, 'there'), 'old', {mode: 0o666})
    })
    try {
      expect(lstatSync(join(target, 'there')).mode & 0o7777).to.equal(0o640)
      expect(readFileSync(join(target, 'there'))).to.deep.equal(content)
    } finally {
      rmSync(root, {force: true, recursive: true})
    }
  })

  it("verify's check accepts the script a backup holds, and the scripts of earlier versions", () => {
    const entries = [folder('a'), file('a/x', 0o644), file('a/y', 0o755)]
    const lines = Buffer.concat(entries.map((entry) => Buffer.from(rebuildScriptLine(entry))))
    const current = Buffer.concat([Buffer.from(rebuildScriptHeader()), lines])
    const versionTwo = Buffer.concat([
      Buffer.from(
        [
          '#!/bin/sh',
          '# Rebuilds the media of one backup from the blobs of its packs. Usage: sh rebuild.sh BLOBS TARGET',
          '# BLOBS: a folder with one folder a pack, where the pack was extracted (age -d -i KEY PACK | tar -x -C BLOBS/PACK).',
          'set -eu',
          'B=$1',
          'T=$2',
          'mkdir -p "$T"',
          'd() { mkdir -p -- "$T/$1"; }',
          'blob() { for x in "$B"/*/"$1"; do cat -- "$x"; return; done; }',
          'f() { p=$1; m=$2; shift 2; : > "$T/$p"; for b in "$@"; do blob "$b" >> "$T/$p"; done; chmod "$m" "$T/$p"; }',
          'l() { ln -s -- "$2" "$T/$1"; }',
          '',
        ].join('\n'),
      ),
      lines,
    ])
    // The comment before it named `zstd -dcf`; the script is otherwise the current one.
    const versionThree = Buffer.concat([
      Buffer.from(rebuildScriptHeader().replace('PACK | zstd -dcf | tar -x', 'PACK | tar -x')),
      lines,
    ])
    expect(versionThree.equals(current)).to.equal(false)
    for (const script of [current, versionThree, versionTwo]) {
      const check = new RebuildScriptCheck()
      for (const entry of entries) check.add(entry)
      expect(check.matches(sha256(script))).to.equal(true)
    }

    // A command more is not the index's script.
    const check = new RebuildScriptCheck()
    for (const entry of entries) check.add(entry)
    expect(check.matches(sha256(Buffer.concat([current, Buffer.from('rm -rf "$T"\n')])))).to.equal(false)
  })
})

describe('a rebuild script line', () => {
  it('is the bytes of its names, as text when they are UTF-8 and as bytes when they are not (property)', () => {
    const name = fc
      .uint8Array({maxLength: 12, minLength: 1})
      .map((bytes) => decodeName(Buffer.from(bytes.map((byte) => (byte === 0 || byte === 0x2f ? 0x61 : byte)))))
    const hex = fc.uint8Array({maxLength: 32, minLength: 32}).map((bytes) => Buffer.from(bytes).toString('hex'))
    fc.assert(
      fc.property(
        name,
        name,
        fc.constantFrom('directory', 'file', 'symlink'),
        fc.array(hex, {maxLength: 3}),
        (path, target, type, blobIds) => {
          const entry: IndexEntry =
            type === 'file'
              ? {blobs: blobIds.map((id) => [id, PACK]), mode: 0o10_0644, mtimeMs: 0, path, size: 1, type}
              : type === 'symlink'
                ? {linkTarget: target, mode: 0o12_0777, mtimeMs: 0, path, size: 0, type}
                : {mode: 0o4_0755, mtimeMs: 0, path, size: 0, type}
          const expected =
            type === 'file'
              ? `f ${shellQuote(path)} 644${blobIds.map((id) => ` ${id}`).join('')}\n`
              : type === 'symlink'
                ? `l ${shellQuote(path)} ${shellQuote(target)}\n`
                : `d ${shellQuote(path)} 755\n`
          const line = rebuildScriptLine(entry)
          expect(typeof line === 'string').to.equal(isUtf8Name(path) && (type !== 'symlink' || isUtf8Name(target)))
          expect(Buffer.from(line)).to.deep.equal(encodeName(expected))
        },
      ),
      {numRuns: 500},
    )
  })
})
