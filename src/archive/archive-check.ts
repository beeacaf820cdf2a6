import {createHash} from 'node:crypto'
import {Readable} from 'node:stream'

import type {MediaMembers} from './extract.js'

import {giveBack} from '../lib/buffer-loan.js'
import {printableName} from '../lib/byte-names.js'
import {ListingCheck} from './listing.js'
import {LISTING_MEMBER} from './media-tar.js'
import {PathKind, PathTable} from './path-table.js'
import {readTar, TarMember} from './tar-reader.js'
import {describeType, safePath, symlinkTarget, unsafe} from './unsafe-members.js'

/** What a media archive holds, once it checked out. */
export interface ArchiveSummary {
  bytes: number
  files: number
}

/**
 * Checks a media archive the way extractMediaArchive (extract.ts) does as it extracts, without writing
 * anything: every member under `media/` with a safe path, of a type media holds, never below a symlink,
 * no name twice, MANIFEST.json last, and every file's SHA-256 against it. Verify runs it on every
 * tar-format backup's media.tar, so that an archive that verifies also restores: one written by a
 * holder of a writer key, whose checksums in the signed manifest are right, can still list other
 * contents than it holds.
 */
export async function checkMediaArchive(tar: Readable, source: 'filesystem' | 's3'): Promise<ArchiveSummary> {
  return checkMediaMembers(
    {checkedBy: 'listing', members: readTar(tar, {keepsNoBody: true}), stop: (reason) => tar.destroy(reason)},
    source,
  )
}

/**
 * Checks media members as extractMedia (extract.ts) checks them as it extracts, without writing
 * anything: a media archive's (above), or a packed backup's, straight from its index and its blobs
 * (`checkedBy: 'source'`), whose reads check every blob as the members' contents are taken, so that
 * nothing needs a listing or a hash of its own here.
 *
 * The media of a folder (`source` filesystem) is also checked as a tree, as extraction into a folder
 * finds it: no member below a file, and no file or link where a folder is. A bucket's keys go back to
 * a bucket as they are: a backup made before keys were encoded (s3-key-paths.ts) may hold a key that is
 * both (`photos` and `photos/1.jpg`), and a restore into a bucket checks it the same way. Every path is
 * remembered in a {@link PathTable}, 12 bytes each.
 */
export async function checkMediaMembers(
  {checkedBy, members}: MediaMembers,
  source: 'filesystem' | 's3',
): Promise<ArchiveSummary> {
  const check = checkedBy === 'listing' ? new ListingCheck() : undefined
  const paths = new PathTable()
  const tree = source === 'filesystem'
  let files = 0
  let bytes = 0
  let listed = false
  let parent: string | undefined
  for await (const member of members) {
    if (listed) throw unsafe(member, `it follows ${LISTING_MEMBER}, which is the last member`)
    if (member.path === LISTING_MEMBER && check) {
      await check.verify(member.body)
      listed = true
      continue
    }

    const path = safePath(member)
    if (path === '') continue
    // Siblings follow each other: their folders were checked with the first of them.
    const folder = path.slice(0, Math.max(0, path.lastIndexOf('/')))
    if (folder !== parent) {
      checkFolders(member, folder, paths, tree)
      parent = folder
    }

    checkName(member, path, paths, tree)
    switch (member.type) {
      case 'directory': {
        break
      }

      case 'file': {
        // Taken even where nothing is hashed here: a source that checks what it reads checks it then.
        const hash = check ? createHash('sha256') : undefined
        // The last to read each chunk: a decrypted chunk's memory is freed now, not at a collection.
        const taking = member.eachChunk((chunk) => {
          hash?.update(chunk)
          giveBack(chunk)
        })
        if (taking) await taking
        if (hash) check!.add(path, hash.digest('hex'))
        files++
        bytes += member.size
        break
      }

      case 'symlink': {
        symlinkTarget(member)
        break
      }

      default: {
        throw unsafe(member, `it is a ${describeType(member.rawType)}, which media never contains`)
      }
    }
  }

  // The listing is the last member: an archive without one is incomplete.
  if (!listed) await check?.verify()
  return {bytes, files}
}

/** Each folder on the way to a member: none a link, none a file in a tree; recorded as folders. */
function checkFolders(member: TarMember, folder: string, paths: PathTable, tree: boolean): void {
  if (folder === '') return
  for (let slash = 0; slash !== -1;) {
    slash = folder.indexOf('/', slash + 1)
    const ancestor = slash === -1 ? folder : folder.slice(0, slash)
    const kind = paths.get(ancestor)
    if (kind === PathKind.Link) throw unsafe(member, 'its path passes through a symlink')
    if (kind === PathKind.File && tree) {
      throw unsafe(member, `it would be written through a file (${printableName(ancestor)})`)
    }

    if (kind === undefined) paths.set(ancestor, PathKind.Folder)
  }
}

/**
 * The member's own name. Extraction takes an existing folder as it is, so a folder may repeat one
 * (and a bucket's "folder" object share a key's name); a second file or link of a name is never
 * written, nor, in a tree, one where a folder is.
 */
function checkName(member: TarMember, path: string, paths: PathTable, tree: boolean): void {
  const kind = memberKind(member)
  const existing = paths.get(path)
  if (existing !== undefined) {
    const clash = kind === PathKind.Folder ? existing !== PathKind.Folder && tree : existing !== PathKind.Folder || tree
    if (clash) throw unsafe(member, 'the archive already holds a file, folder or link of that name')
    if (kind === PathKind.Folder) return
  }

  paths.set(path, kind)
}

function memberKind(member: TarMember): PathKind {
  return member.type === 'directory' ? PathKind.Folder : member.type === 'symlink' ? PathKind.Link : PathKind.File
}
