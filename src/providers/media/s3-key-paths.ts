/**
 * S3 keys as paths in the media archive, and back.
 *
 * A bucket is a flat map from keys to bytes; a tar extracts into a tree. Most keys are paths already
 * (`uploads/2024/cat.jpg`), and they keep their name. Some are not, and extracting them, by `tar -x` or
 * by a restore's own check, would fail or lose one of two objects:
 * - a key that is a file and also the folder of others (`report` and `report/2024.pdf`);
 * - a key ending in `/` that holds bytes (the console's "folder" objects hold none, and stay folders);
 * - a segment that is empty, `.` or `..` (`a//b`, `/lead`, `./x`), longer than a file name may be
 *   (255 bytes), or that holds a NUL.
 *
 * Each of those becomes a file under {@link KEYS_FOLDER}, named by its whole key with `%`, `/`, `~` and
 * NUL percent-encoded and a `~` after the last character, cut into segments of at most
 * {@link SEGMENT_BYTES}. No such name is a folder of another (a last segment ends in `~`, no other one
 * does), so every key has a file of its own, and a restore into a bucket decodes the key back. A key
 * that starts with the folder's own name is always encoded too, so that no key can take another's name.
 *
 * Deciding that a key is the folder of an earlier file needs the listing in key order (UTF-8 bytes),
 * which S3 and the stores that copy it guarantee; {@link S3KeyPaths} refuses a listing that is not.
 */

/** The folder, under the media root, of the keys that are not paths. */
export const KEYS_FOLDER = '.divio-s3-keys'

/**
 * Puts the encoded keys of an extracted media.tar back into a bucket by hand, with `sh`, `find`, `tr`,
 * `sed` and the AWS CLI (export's README.txt): the folders are only where a name was cut, and `%25`
 * is decoded last, so that what it gives back is not decoded again. A key with a line break or a NUL
 * needs MANIFEST.json's `key` instead.
 */
export const ENCODED_KEYS_SH = `cd /path/to/parent/media/${KEYS_FOLDER} && find . -type f | while IFS= read -r file; do
  key=$(printf '%s' "\${file#./}" | tr -d / | sed 's/~$//; s/%2F/\\//g; s/%7E/~/g; s/%25/%/g')
  aws s3 cp "$file" "s3://BUCKET/PREFIX/$key"
done`
/** A segment of an encoded key, in bytes: under every file system's name limit, with room for a `~`. */
const SEGMENT_BYTES = 200
/** The longest segment a file system takes (NAME_MAX on Linux, and the limit of most others). */
const NAME_MAX_BYTES = 255
const ENCODED = /[%/~\0]/g
const END = '~'

/** The path of a key in the archive (relative to the prefix), and its type there. */
export interface KeyPath {
  path: string
  type: 'directory' | 'file'
}

/**
 * Maps the keys of one listing, in order, to archive paths: each key is looked at once, and what is
 * kept is the chain of earlier files that a later key could sit under (at most one per prefix of the
 * current key), so memory does not grow with the bucket.
 */
export class S3KeyPaths {
  /** Files written under their own name that a later key could still name as its folder. */
  private readonly files: Buffer[] = []
  private previous: Buffer | undefined

  /**
   * The archive path of `key` (relative to the prefix; non-empty), an object of `size` bytes. Throws
   * when the listing is out of key order.
   */
  next(key: string, size: number): KeyPath {
    const bytes = Buffer.from(key)
    if (this.previous !== undefined && Buffer.compare(this.previous, bytes) >= 0)
      throw new Error(`the bucket listed "${key}" after "${this.previous.toString()}", out of key order`)
    this.previous = bytes
    const folder = key.endsWith('/') && size === 0
    const natural = folder ? key.slice(0, -1) : key
    if (!isPath(natural) || this.underFile(bytes)) return {path: encodeKey(key), type: 'file'}
    if (!folder) this.files.push(bytes)
    return {path: natural, type: folder ? 'directory' : 'file'}
  }

  /**
   * Whether an earlier file is a folder of this key (`report` of `report/2024.pdf`, and of the folder
   * object `report/`). Files that no later key can sit under any more are dropped: in key order, the
   * keys under `F/` come after every key that starts with `F` and a character before `/` (`F (old)`),
   * and before every key after `F/…`.
   */
  private underFile(key: Buffer): boolean {
    while (this.files.length > 0) {
      const file = this.files.at(-1)!
      if (key.length > file.length && key[file.length] === SLASH && key.subarray(0, file.length).equals(file))
        return true
      if (Buffer.compare(key, Buffer.concat([file, Buffer.of(SLASH)])) > 0) this.files.pop()
      else return false
    }

    return false
  }
}

const SLASH = 0x2f

/** Whether a key (without a folder marker's `/`) extracts as the path it names, by its name alone. */
function isPath(key: string): boolean {
  const segments = key.split('/')
  if (segments[0] === KEYS_FOLDER) return false
  return segments.every(
    (segment) =>
      segment !== '' &&
      segment !== '.' &&
      segment !== '..' &&
      !segment.includes('\0') &&
      Buffer.byteLength(segment) <= NAME_MAX_BYTES,
  )
}

/** The archive path of a key that is not a path: see the top of this file. */
export function encodeKey(key: string): string {
  const encoded = key.replaceAll(
    ENCODED,
    (character) => `%${character.codePointAt(0)!.toString(16).padStart(2, '0').toUpperCase()}`,
  )
  const segments: string[] = []
  let rest = encoded
  while (Buffer.byteLength(rest) > SEGMENT_BYTES) {
    const cut = cutAt(rest, SEGMENT_BYTES)
    segments.push(rest.slice(0, cut))
    rest = rest.slice(cut)
  }

  segments.push(rest + END)
  return `${KEYS_FOLDER}/${segments.join('/')}`
}

/** The longest start of `text` (in whole characters) that fits in `bytes` bytes of UTF-8. */
function cutAt(text: string, bytes: number): number {
  let used = 0
  let index = 0
  for (const character of text) {
    used += Buffer.byteLength(character)
    if (used > bytes) break
    index += character.length
  }

  return index
}

/**
 * The key (relative to the prefix) that an archive path stands for: the decoded key of a file under
 * {@link KEYS_FOLDER}, a folder's path with its `/`, and otherwise the path itself. Undefined for the
 * folders that only hold encoded keys, which stand for no object.
 */
export function keyOfPath(path: string, type: string): string | undefined {
  if (path === KEYS_FOLDER || path.startsWith(`${KEYS_FOLDER}/`)) {
    if (type === 'directory') return undefined
    const decoded = decodeKey(path)
    if (decoded !== undefined) return decoded
  }

  return type === 'directory' ? `${path}/` : path
}

function decodeKey(path: string): string | undefined {
  const encoded = path.slice(KEYS_FOLDER.length + 1).replaceAll('/', '')
  if (!encoded.endsWith(END) || encoded.slice(0, -1).includes(END)) return undefined
  try {
    return unescapeKey(encoded.slice(0, -1))
  } catch {
    return undefined
  }
}

/** Undoes {@link encodeKey}'s escapes, and only those: any other `%` means the name was not encoded here. */
function unescapeKey(text: string): string {
  return text.replaceAll(/%(..)?/g, (match, hex: string | undefined) => {
    const character = hex === undefined ? undefined : String.fromCodePoint(Number.parseInt(hex, 16))
    if (character === undefined || !/^[0-9A-F]{2}$/.test(hex!) || !'%/~\0'.includes(character))
      throw new Error(`not an encoded key: ${match}`)
    return character
  })
}
