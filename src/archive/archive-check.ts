import {createHash} from 'node:crypto'
import {Readable} from 'node:stream'

import {describeType, safePath, symlinkTarget, unsafe} from './extract.js'
import {ListingCheck} from './listing.js'
import {LISTING_MEMBER} from './media-tar.js'
import {readTar} from './tar-reader.js'

/** What a media archive holds, once it checked out. */
export interface ArchiveSummary {
  bytes: number
  files: number
}

/**
 * Checks a media archive the way extractMediaArchive (extract.ts) does as it extracts, without writing
 * anything: every member under `media/` with a safe path, of a type media holds, never below a symlink,
 * MANIFEST.json last, and every file's SHA-256 against it. Verify runs it on a tar-format backup, so
 * that an archive that verifies also restores: one written by a holder of a writer key, whose
 * checksums in the signed manifest are right, can still list other contents than it holds.
 *
 * A name that appears twice, or a file that a later member uses as a folder, is left to extraction to
 * refuse: finding those here would take memory that grows with the tree.
 */
export async function checkMediaArchive(tar: Readable): Promise<ArchiveSummary> {
  const check = new ListingCheck()
  const links = new Set<string>()
  let files = 0
  let bytes = 0
  let listed = false
  for await (const member of readTar(tar)) {
    if (listed) throw unsafe(member, `it follows ${LISTING_MEMBER}, which is the last member`)
    if (member.path === LISTING_MEMBER) {
      await check.verify(member.body)
      listed = true
      continue
    }

    const path = safePath(member)
    if (path === '') continue
    if (links.size > 0 && underLink(path, links)) throw unsafe(member, 'its path passes through a symlink')
    switch (member.type) {
      case 'directory': {
        break
      }

      case 'file': {
        const hash = createHash('sha256')
        for await (const chunk of member.body) hash.update(chunk as Buffer)
        check.add(path, hash.digest('hex'))
        files++
        bytes += member.size
        break
      }

      case 'symlink': {
        symlinkTarget(member)
        links.add(path)
        break
      }

      default: {
        throw unsafe(member, `it is a ${describeType(member.rawType)}, which media never contains`)
      }
    }
  }

  // The listing is the last member: an archive without one is incomplete.
  if (!listed) await check.verify()
  return {bytes, files}
}

function underLink(path: string, links: ReadonlySet<string>): boolean {
  for (let slash = path.indexOf('/'); slash !== -1; slash = path.indexOf('/', slash + 1)) {
    if (links.has(path.slice(0, slash))) return true
  }

  return false
}
