import {createHash} from 'node:crypto'
import {Header} from 'tar'

/** A member of a crafted archive: any path, any type. */
export interface CraftedMember {
  body?: string
  linkpath?: string
  mode?: number
  path: string
  type: 'CharacterDevice' | 'Directory' | 'FIFO' | 'File' | 'Link' | 'SymbolicLink'
}

/** `length` lowercase letters that vary with `seed`: a body large enough to stream, whose bytes show any mix-up. */
export function letters(seed: number, length: number): string {
  return Array.from({length}, (_, index) => String.fromCodePoint(97 + ((index * 7919 + seed) % 26))).join('')
}

/** A tar built member by member, the way an attacker would: any path, any type, in any order. */
export function craftTar(members: CraftedMember[]): Buffer {
  const blocks: Buffer[] = []
  for (const member of members) {
    const body = Buffer.from(member.body ?? '')
    const header = new Header({
      devmaj: 1,
      devmin: 3,
      linkpath: member.linkpath,
      mode: member.mode ?? 0o644,
      mtime: new Date('2026-11-01T00:00:00Z'),
      path: member.path,
      size: member.type === 'File' ? body.length : 0,
      type: member.type,
    })
    header.encode()
    blocks.push(header.block!)
    if (member.type === 'File') blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512))
  }

  blocks.push(Buffer.alloc(1024))
  return Buffer.concat(blocks)
}

/** The archive's MANIFEST.json listing `files` (paths below media/), in the layout createListingFile writes. */
export function listingFor(files: Array<{body: string; path: string}>): CraftedMember {
  const rows = files.map(({body, path}) => ({
    mode: '0644',
    mtime: '2026-11-01T00:00:00.000Z',
    path,
    sha256: createHash('sha256').update(body).digest('hex'),
    size: body.length,
    type: 'file',
  }))
  const body = `{"format":"divio-media-listing","version":1,"files":[\n${rows.map((row) => JSON.stringify(row)).join(',\n')}\n]}\n`
  return {body, path: 'MANIFEST.json', type: 'File'}
}
