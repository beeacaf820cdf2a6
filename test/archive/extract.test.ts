import {expect} from 'chai'
import {createHash} from 'node:crypto'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {Header} from 'tar'

import {extractMediaArchive} from '../../src/archive/extract.js'
import {BackupError} from '../../src/errors.js'
import {snapshotTree} from '../helpers/project.js'

interface Member {
  body?: string
  linkpath?: string
  path: string
  type: 'CharacterDevice' | 'Directory' | 'FIFO' | 'File' | 'Link' | 'SymbolicLink'
}

/** A tar built member by member, the way an attacker would: any path, any type. */
function craftTar(members: Member[]): Buffer {
  const blocks: Buffer[] = []
  for (const member of members) {
    const body = Buffer.from(member.body ?? '')
    const header = new Header({
      devmaj: 1,
      devmin: 3,
      linkpath: member.linkpath,
      mode: 0o644,
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

function listingFor(files: Array<{body: string; path: string}>): Member {
  const rows = files.map(({body, path}) => ({
    mode: '0644',
    mtime: '2026-11-01T00:00:00.000Z',
    path,
    sha256: createHash('sha256').update(body).digest('hex'),
    size: body.length,
    type: 'file',
  }))
  // The layout createListingFile writes: one row per line.
  const body = `{"format":"divio-media-listing","version":1,"files":[\n${rows.map((row) => JSON.stringify(row)).join(',\n')}\n]}\n`
  return {body, path: 'MANIFEST.json', type: 'File'}
}

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
    expect(await extractMediaArchive(Readable.from([tar]), target)).to.deep.equal({bytes: 5, files: 1})
    expect(readFileSync(join(target, 'a', 'one.txt'), 'utf8')).to.equal('hello')
    expect(readlinkSync(join(target, 'latest'))).to.equal('a/one.txt')
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
      'a symlink out, then a file through it',
      [
        {linkpath: '../outside', path: 'media/link', type: 'SymbolicLink'},
        {body: 'x', path: 'media/link/escaped.txt', type: 'File'},
      ],
      /symlink to "\.\.\/outside", outside the media folder/,
    ],
    [
      'an absolute symlink, then a file through it',
      [
        {linkpath: '/tmp', path: 'media/link', type: 'SymbolicLink'},
        {body: 'x', path: 'media/link/escaped.txt', type: 'File'},
      ],
      /symlink to "\/tmp"/,
    ],
    [
      'an inside symlink to a folder, then a file through it',
      [
        {path: 'media/dir/', type: 'Directory'},
        {linkpath: 'dir', path: 'media/link', type: 'SymbolicLink'},
        {body: 'x', path: 'media/link/through.txt', type: 'File'},
      ],
      /would be written through a symlink/,
    ],
    ['a hard link out', [{linkpath: '/etc/passwd', path: 'media/hard', type: 'Link'}], /hard link/],
    ['a device node', [{path: 'media/null', type: 'CharacterDevice'}], /character device/],
    ['a FIFO', [{path: 'media/pipe', type: 'FIFO'}], /FIFO/],
  ]
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
