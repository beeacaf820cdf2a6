import {createHash, Hash} from 'node:crypto'

import {encodeName, isUtf8Name} from '../../lib/byte-names.js'
import {shellQuote} from '../../lib/shell.js'
import {IndexEntry} from './media-index.js'

/**
 * The rebuild script of a packed backup (media.rebuild.sh.age): what its index says, as sh commands
 * that put the media tree back together from the blobs of its packs, with nothing but a POSIX shell
 * (`export --raw`'s README):
 *
 *     mkdir blobs/<pack>; age -d -i KEY packs/<pack> | zstd -dcf | tar -x -C blobs/<pack>     (each pack)
 *     age -d -i KEY media.rebuild.sh.age | zstd -dcf > rebuild.sh && sh rebuild.sh blobs media
 *
 * It is code that the machine that holds the identity runs, written by a create machine, which holds
 * no more than a writer key. So it is never trusted: it is a function of the index, and `verify`
 * derives it again and compares (`RebuildScriptCheck`). Lines are bytes: file names need not be UTF-8.
 */

const COMMON_HEAD = ['#!/bin/sh']
const COMMON_TAIL = ['set -eu', 'B=$1', 'T=$2', 'mkdir -p "$T"', 'd() { mkdir -p -- "$T/$1"; }']

/**
 * Each pack extracted into a folder of its own under BLOBS; a blob is found in whichever holds it.
 *
 * A file its owner may write, with no execute or special bit (nearly every media file), gets its mode
 * as it is created, from the umask (shell builtins only: `case`, parameter and arithmetic expansion);
 * the umask the script started with is put back at once, so folders are made as before. Only the other
 * files cost a `chmod` process: for tens of thousands of files that halves the run, since `cat` is the
 * only other program a file costs. A file that is already there keeps its mode, so it takes `chmod` too.
 */
const UMASK_FUNCTIONS = [
  'U=$(umask)',
  'blob() { for x in "$B"/*/"$1"; do cat -- "$x"; return; done; }',
  'w() { : > "$T/$p"; for b in "$@"; do blob "$b" >> "$T/$p"; done; }',
  'f() {',
  '  p=$1; m=$2; shift 2',
  '  case $m in',
  '    [26][0246][0246]) if [ ! -e "$T/$p" ] && [ ! -L "$T/$p" ]; then',
  // eslint-disable-next-line no-template-curly-in-string -- sh parameter expansion, not a template
  '      o=${m%??}; g=${m#?}; g=${g%?}; a=${m#??}',
  '      umask $((7 - o))$((7 - g))$((7 - a)); w "$@"; umask "$U"; return',
  '    fi ;;',
  '  esac',
  '  w "$@"; chmod "$m" "$T/$p"',
  '}',
  'l() { ln -s -- "$2" "$T/$1"; }',
  '',
]

/**
 * The script's head: its usage, what BLOBS holds, and the functions its lines call. Fixed text: verify
 * compares a backup's script byte for byte with the one it derives (RebuildScriptCheck).
 */
const HEADER = headerSaying(
  '# BLOBS: a folder with one folder a pack, where the pack was extracted (age -d -i KEY PACK | zstd -dcf | tar -x -C BLOBS/PACK).',
)

/**
 * What backups written before the comment named `zstd -dcf` carry (packs are compressed, or in zstd's
 * stored framing, since before then): the same script.
 */
const HEADER_V3 = headerSaying(
  '# BLOBS: a folder with one folder a pack, where the pack was extracted (age -d -i KEY PACK | tar -x -C BLOBS/PACK).',
)

function headerSaying(blobsComment: string): string {
  return [
    ...COMMON_HEAD,
    '# Rebuilds the media of one backup from the blobs of its packs. Usage: sh rebuild.sh BLOBS TARGET',
    blobsComment,
    ...COMMON_TAIL,
    ...UMASK_FUNCTIONS,
  ].join('\n')
}

/** What backups written before files got their mode from the umask carry: a `chmod` for every file. */
const HEADER_V2 = [
  ...COMMON_HEAD,
  '# Rebuilds the media of one backup from the blobs of its packs. Usage: sh rebuild.sh BLOBS TARGET',
  '# BLOBS: a folder with one folder a pack, where the pack was extracted (age -d -i KEY PACK | tar -x -C BLOBS/PACK).',
  ...COMMON_TAIL,
  'blob() { for x in "$B"/*/"$1"; do cat -- "$x"; return; done; }',
  'f() { p=$1; m=$2; shift 2; : > "$T/$p"; for b in "$@"; do blob "$b" >> "$T/$p"; done; chmod "$m" "$T/$p"; }',
  'l() { ln -s -- "$2" "$T/$1"; }',
  '',
].join('\n')

/** What backups written before packs were extracted apart carry: every pack into one folder. */
const HEADER_V1 = [
  ...COMMON_HEAD,
  '# Rebuilds the media of one backup from the blobs of its packs. Usage: sh rebuild.sh BLOBS TARGET',
  '# BLOBS: a folder where every pack was extracted (age -d -i KEY PACK | tar -x -C BLOBS).',
  ...COMMON_TAIL,
  'f() { p=$1; m=$2; shift 2; : > "$T/$p"; for b in "$@"; do cat -- "$B/$b" >> "$T/$p"; done; chmod "$m" "$T/$p"; }',
  'l() { ln -s -- "$2" "$T/$1"; }',
  '',
].join('\n')

export function rebuildScriptHeader(): string {
  return HEADER
}

/**
 * One entry's line: as text when its names are UTF-8, which is then also its bytes, and as bytes
 * otherwise. (A buffer a line, made for every file of every backup, cost more than writing the text.)
 */
export function rebuildScriptLine(entry: IndexEntry): Buffer | string {
  const mode = (entry.mode % 0o1_0000).toString(8)
  const path = shellQuote(entry.path)
  let line: string
  if (entry.type === 'directory') line = `d ${path} ${mode}\n`
  else if (entry.type === 'symlink') line = `l ${path} ${shellQuote(entry.linkTarget ?? '')}\n`
  else {
    line = `f ${path} ${mode}`
    for (const [blob] of entry.blobs!) line += ` ${blob}`
    line += '\n'
  }

  return isUtf8Name(line) ? line : encodeName(line)
}

function sha256Of(text: string): Hash {
  return createHash('sha256').update(text)
}

/**
 * The script derived again from an index, entry by entry, as SHA-256 of each header this tool has
 * written: a stored script matches one of them, or it is not the index's.
 */
export class RebuildScriptCheck {
  private readonly hashes = [sha256Of(HEADER), sha256Of(HEADER_V3), sha256Of(HEADER_V2), sha256Of(HEADER_V1)]

  add(entry: IndexEntry): void {
    const line = rebuildScriptLine(entry)
    for (const hash of this.hashes) hash.update(line)
  }

  /** Whether `sha256` (of the stored script's plaintext) is the script of the entries added. Call once. */
  matches(sha256: string): boolean {
    return this.hashes.some((hash) => hash.digest('hex') === sha256)
  }
}
