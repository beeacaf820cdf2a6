import {execFileSync} from 'node:child_process'
import {createCipheriv, createHash} from 'node:crypto'
import {
  accessSync,
  constants,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {hashFile} from './tools.js'

/**
 * A media tree of ordinary size, made once per test run: 20,000+ files, mostly small, a few of several
 * MiB, nested six levels deep, with non-ASCII and non-UTF-8 names, empty files and folders, odd modes,
 * links inside (one of them to the media folder itself), and one link that leads outside.
 *
 * Paths are bytes: names that are not UTF-8 are built as Buffers, as an old upload handler writes them.
 */
export interface BigTree {
  /** The link that leads outside the media folder, which restore leaves out. */
  outsideLink: string
  /** The tree, never changed by a test: copy it with {@link copyTree}. */
  root: string
}

export const BIG_TREE_FILES = 20_000

/**
 * Where trees of this size are made: a memory file system when there is one. Creating and removing
 * tens of thousands of files costs seconds on a disk file system, and the tests copy the tree, extract
 * it and restore it several times; what they check does not depend on where it lives.
 */
export function bigTreeParent(): string {
  // The run's own folder when that is in memory: removed with it, after a run killed before its end too.
  const run = process.env.DIVIO_TEST_RUN_FOLDER
  if (run?.startsWith('/dev/shm/')) return run
  try {
    accessSync('/dev/shm', constants.W_OK)
    return '/dev/shm'
  } catch {
    return tmpdir()
  }
}

let made: BigTree | undefined

export function bigTree(): BigTree {
  if (made) return made
  const parent = mkdtempSync(join(bigTreeParent(), 'divio-big-tree-'))
  const root = join(parent, 'media')
  mkdirSync(root)
  const names = ['alpha', 'Bilder', 'café', '文件', 'z z', 'x']
  const latin1 = (text: string) => Buffer.from(text, 'latin1')
  const at = (...parts: Array<Buffer | string>) =>
    Buffer.concat(parts.flatMap((part, index) => [index ? Buffer.from('/') : Buffer.alloc(0), Buffer.from(part)]))
  // Six levels: level-1 folders × level-2 × … kept narrow below, so that most files sit deep.
  const folders: Buffer[] = []
  for (const [first, one] of names.entries()) {
    for (let second = 0; second < 4; second++) {
      const path = at(
        root,
        one,
        `y${second}`,
        'a',
        'b',
        'c',
        first % 2 ? latin1(`d\u00E9p\u00F4t-${second}`) : `d${second}`,
      )
      mkdirSync(path, {recursive: true})
      folders.push(path)
    }
  }

  let seed = 1
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648
    return seed / 2_147_483_648
  }

  const mtime = new Date('2024-05-06T07:08:09Z')
  let files = 0
  for (let index = 0; files < BIG_TREE_FILES; index++, files++) {
    const folder = folders[index % folders.length]
    const kind = index % 50
    const name =
      kind === 1
        ? latin1(`r\u00E9sum\u00E9-${index}.txt`) // Latin-1: not UTF-8
        : kind === 2
          ? Buffer.from(`photo-${index}-ünïcødé 文件.jpg`)
          : kind === 3
            ? Buffer.concat([
                Buffer.from(`odd-${index}-`),
                Buffer.from([0xff, 0xfe, 0x80, 0x0a, 0x5c]),
                Buffer.from('.bin'),
              ])
            : Buffer.from(`file-${index}.dat`)
    const size = kind === 4 ? 0 : Math.floor(random() * 8192)
    const content = Buffer.alloc(size, index % 251)
    content.write(`${index}`, 0)
    const path = at(folder, name)
    writeFileSync(path, size === 0 ? Buffer.alloc(0) : content, {mode: kind === 5 ? 0o600 : 0o644})
    utimesSync(path, mtime, new Date(mtime.getTime() + index * 1000))
  }

  // A few large files, over one 1 MiB blob and several archive batches: two that compress, and two
  // like videos, which do not (a deterministic keystream), so that packs of both kinds are made. The
  // last has a name that is not UTF-8: large files stream to a path given as bytes.
  for (let index = 0; index < 4; index++) {
    const name = index === 3 ? latin1(`large-${index}-\u00E9.bin`) : `large-${index}.bin`
    const path = at(root, 'alpha', name)
    const block = createHash('sha256').update(String(index)).digest()
    const size = (3 + index) * 1024 * 1024 + 17
    const keystream = () =>
      createCipheriv('aes-128-ctr', block.subarray(0, 16), Buffer.alloc(16)).update(Buffer.alloc(size))
    writeFileSync(path, index % 2 === 0 ? Buffer.alloc(size, block) : keystream())
  }

  // A name of 250 bytes, not UTF-8, over the 100 bytes of a ustar name field.
  writeFileSync(at(root, Buffer.alloc(250, 0xe9)), 'long Latin-1 name')
  mkdirSync(join(root, 'empty folder'))
  mkdirSync(at(root, latin1('vide-\u00E9')))
  mkdirSync(join(root, 'read-only'), {mode: 0o755})
  writeFileSync(join(root, 'read-only', 'inside.txt'), 'in a read-only folder')
  execFileSync('chmod', ['0555', join(root, 'read-only')])
  symlinkSync('café/y0/a/b/c/d0', join(root, 'link-to-folder'))
  symlinkSync('../alpha/large-0.bin', join(root, 'Bilder', 'link-to-file'))
  symlinkSync('..', join(root, 'Bilder', 'top'))
  symlinkSync('dangling-target', join(root, 'dangling'))
  symlinkSync(at(latin1('r\u00E9sum\u00E9')), at(root, latin1('lien-\u00E9')))
  symlinkSync('/usr/share', join(root, 'shared'))
  made = {outsideLink: 'shared', root}
  return made
}

/** Copies a tree with everything it has (modes, times, links), as cp -a does. */
export function copyTree(from: string, to: string): void {
  execFileSync('cp', ['-a', '--', from, to])
}

/**
 * Every entry of a tree, by its name's bytes (hex, as the key): type, mode, mtime to the second, and
 * the SHA-256 of a file's content or a link's target. Two trees are equal when these maps are.
 */
export function describeTree(root: string): Map<string, string> {
  const tree = new Map<string, string>()
  const visit = (relative: Buffer) => {
    const folder = relative.length === 0 ? Buffer.from(root) : Buffer.concat([Buffer.from(`${root}/`), relative])
    for (const name of readdirSync(folder, {encoding: 'buffer'})) {
      const path = relative.length === 0 ? name : Buffer.concat([relative, Buffer.from('/'), name])
      const absolute = Buffer.concat([Buffer.from(`${root}/`), path])
      const info = lstatSync(absolute)
      const common = `mode ${(info.mode & 0o7777).toString(8)} mtime ${Math.floor(info.mtimeMs / 1000)}`
      const key = path.toString('hex')
      if (info.isSymbolicLink()) {
        tree.set(
          key,
          `link ${readlinkSync(absolute, {encoding: 'buffer'}).toString('hex')} mtime ${Math.floor(info.mtimeMs / 1000)}`,
        )
      } else if (info.isDirectory()) {
        tree.set(key, `folder ${common}`)
        visit(path)
      } else {
        tree.set(key, `file ${hashFile(absolute).sha256} ${common}`)
      }
    }
  }

  visit(Buffer.alloc(0))
  return tree
}

/** The differences between two described trees, in words (with names as their bytes), for assertions. */
export function treeDifferences(expected: Map<string, string>, actual: Map<string, string>): string[] {
  const differences: string[] = []
  const show = (key: string) => JSON.stringify(Buffer.from(key, 'hex').toString('latin1'))
  for (const [key, value] of expected) {
    if (!actual.has(key)) differences.push(`missing ${show(key)}`)
    else if (actual.get(key) !== value) differences.push(`${show(key)}: ${actual.get(key)} instead of ${value}`)
  }

  for (const key of actual.keys()) if (!expected.has(key)) differences.push(`extra ${show(key)}`)
  return differences.slice(0, 20)
}

/** Removes the tree made by {@link bigTree}, if any (it lives in memory when /dev/shm is there). */
export function removeBigTree(): void {
  if (made) rmSync(dirname(made.root), {force: true, recursive: true})
  made = undefined
}
