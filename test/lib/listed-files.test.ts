import {expect} from 'chai'
import {execFileSync, spawn} from 'node:child_process'
import {closeSync, lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {closeFile, readInto} from '../../src/lib/file-io.js'
import {onTheReaderThread, onThisThread, ReaderRoute} from '../../src/lib/file-reader-route.js'
import {EntryKind, listFolder, SmallFileReader} from '../../src/lib/file-reader.js'
import {FileIdentity, openListed, openListedSync} from '../../src/lib/listed-files.js'
import {until} from '../helpers/processes.js'

/**
 * A name in the media folder changes between the walk's lstat and the read, as the app (or whoever
 * writes the folder) may make it: whatever it becomes, nothing outside the folder is read, nothing
 * waits, and the answer is "gone", which the walk reports and skips.
 */

const SECRET = 'outside the media folder: never to be read by a backup'
const CONTENT = 'the media file as it was listed'

interface Layout {
  file: string
  folder: string
  outside: string
  root: string
}

/** What the name, or a folder on its path, becomes after it was listed. */
const CHANGES: Array<{change: (layout: Layout) => void; name: string}> = [
  {change: ({file}) => rmSync(file), name: 'deleted'},
  {
    change({file, outside}) {
      rmSync(file)
      symlinkSync(join(outside, 'media.txt'), file)
    },
    name: 'a symlink to a file outside',
  },
  {
    change({file}) {
      rmSync(file)
      execFileSync('mkfifo', [file])
    },
    name: 'a FIFO, which no one writes',
  },
  {
    change({file}) {
      writeFileSync(`${file}.new`, SECRET)
      renameSync(`${file}.new`, file)
    },
    name: 'another file renamed over it',
  },
  {
    change({file}) {
      rmSync(file)
      mkdirSync(file)
    },
    name: 'a folder',
  },
  {
    change({folder, outside, root}) {
      renameSync(folder, join(root, 'moved'))
      symlinkSync(outside, folder)
    },
    name: 'its folder, now a symlink to a folder outside',
  },
]

function layout(): Layout {
  const base = mkdtempSync(join(tmpdir(), 'listed-files-'))
  const root = join(base, 'media')
  const folder = join(root, 'uploads')
  const outside = join(base, 'outside')
  mkdirSync(folder, {recursive: true})
  mkdirSync(outside)
  // The same name outside, larger than the listed file, so that a read through a link would fill it.
  writeFileSync(join(outside, 'media.txt'), SECRET)
  const file = join(folder, 'media.txt')
  writeFileSync(file, CONTENT)
  return {file, folder, outside, root}
}

function identityOf(path: string): FileIdentity {
  const {dev, ino} = lstatSync(path)
  return {dev, ino}
}

async function readAll(descriptor: number): Promise<string> {
  const buffer = Buffer.alloc(1024)
  let filled = 0
  for (let read = 1; read > 0; filled += read) read = await readInto(descriptor, buffer, filled, buffer.length - filled)
  await closeFile(descriptor)
  return buffer.subarray(0, filled).toString()
}

const routes: Array<[string, ReaderRoute]> = [
  ['on the reader thread', onTheReaderThread],
  ['on this thread, as for a small tree', onThisThread],
]

for (const [where, route] of routes) {
  describe(`a media file changed after it was listed, read ${where}`, () => {
    let files: Layout

    beforeEach(() => {
      files = layout()
    })

    afterEach(() => rmSync(join(files.root, '..'), {force: true, recursive: true}))

    it('as it was listed, is read', async () => {
      const reader = new SmallFileReader(route)
      const read = reader.read(files.file, CONTENT.length, identityOf(files.file))
      await reader.flush()
      expect((await read)!.content.toString()).to.equal(CONTENT)
    })

    for (const {change, name} of CHANGES) {
      it(`${name}: is answered as gone, and nothing outside is read`, async () => {
        const listed = identityOf(files.file)
        change(files)
        const reader = new SmallFileReader(route)
        const read = reader.read(files.file, CONTENT.length, listed)
        await reader.flush()
        expect(await read).to.equal(undefined)
      })
    }
  })
}

describe('a large media file changed after it was listed, opened for streaming', () => {
  let files: Layout

  beforeEach(() => {
    files = layout()
  })

  afterEach(() => rmSync(join(files.root, '..'), {force: true, recursive: true}))

  it('as it was listed, is opened', async () => {
    const descriptor = await openListed(files.file, 'file', identityOf(files.file))
    expect(await readAll(descriptor!)).to.equal(CONTENT)
    const again = openListedSync(files.file, 'file', identityOf(files.file))
    expect(again).to.be.a('number')
    closeSync(again!)
  })

  for (const {change, name} of CHANGES) {
    it(`${name}: is answered as gone, with blocking calls too`, async () => {
      const listed = identityOf(files.file)
      change(files)
      expect(await openListed(files.file, 'file', listed)).to.equal(undefined)
      expect(openListedSync(files.file, 'file', listed)).to.equal(undefined)
    })
  }
})

for (const [where, route] of routes) {
  describe(`a media folder changed after its parent was listed, listed ${where}`, () => {
    let files: Layout

    beforeEach(() => {
      files = layout()
    })

    afterEach(() => rmSync(join(files.root, '..'), {force: true, recursive: true}))

    const FOLDER_CHANGES: Array<{change: (layout: Layout) => void; name: string}> = [
      {change: ({folder}) => rmSync(folder, {recursive: true}), name: 'deleted'},
      {
        change({folder, outside, root}) {
          renameSync(folder, join(root, 'moved'))
          symlinkSync(outside, folder)
        },
        name: 'a symlink to a folder outside',
      },
      {
        change({folder, outside, root}) {
          renameSync(folder, join(root, 'moved'))
          renameSync(outside, folder)
        },
        name: 'another folder renamed over it',
      },
      {
        change({folder}) {
          rmSync(folder, {recursive: true})
          writeFileSync(folder, SECRET)
        },
        name: 'a file',
      },
    ]

    it('as it was listed, is listed', async () => {
      const listed = await listFolder(files.folder, route, identityOf(files.folder))
      expect(listed!.count).to.equal(1)
      expect(listed!.name(0).toString()).to.equal('media.txt')
      expect(listed!.info(0).kind).to.equal(EntryKind.File)
    })

    for (const {change, name} of FOLDER_CHANGES) {
      it(`${name}: is answered as gone, and nothing in it is listed`, async () => {
        const listed = identityOf(files.folder)
        change(files)
        expect(await listFolder(files.folder, route, listed)).to.equal(undefined)
      })
    }

    it('the media folder itself is listed where its symlink leads, and its absence is an error', async () => {
      const link = join(files.root, '..', 'media-link')
      symlinkSync(files.root, link)
      const listed = await listFolder(link, route)
      expect(listed.name(0).toString()).to.equal('uploads')
      rmSync(files.root, {recursive: true})
      const error = await listFolder(link, route).catch((error_: NodeJS.ErrnoException) => error_)
      expect((error as NodeJS.ErrnoException).code).to.equal('ENOENT')
      // A failure names the folder asked for, never the descriptor it was listed through.
      expect((error as Error).message)
        .to.include(link)
        .and.not.include('/proc/self/fd')
    })
  })
}

/** Holds a write lease on `path` (as a file server does) until the kernel asks for it, then lets go. */
const LEASE_HOLDER = `
import fcntl, os, signal, sys
fd = os.open(sys.argv[1], os.O_RDWR)
def broken(signum, frame):
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    print("released", flush=True)
signal.signal(signal.SIGIO, broken)
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
print("leased", flush=True)
sys.stdin.read()
`

describe("a media file under another process's lease (a file server's)", () => {
  let files: Layout

  beforeEach(() => {
    files = layout()
  })

  afterEach(() => rmSync(join(files.root, '..'), {force: true, recursive: true}))

  async function leased(path: string): Promise<{end: () => Promise<void>; said: () => string}> {
    const holder = spawn('/usr/bin/python3', ['-c', LEASE_HOLDER, path], {stdio: ['pipe', 'pipe', 'inherit']})
    let said = ''
    holder.stdout.setEncoding('utf8').on('data', (text: string) => {
      said += text
    })
    const ended = new Promise((resolve) => {
      holder.on('exit', resolve)
    })
    await until(() => said.includes('leased'), 'the lease is taken')
    return {
      async end() {
        holder.stdin.end()
        await ended
      },
      said: () => said,
    }
  }

  const reads: Array<[string, (path: string, expected: FileIdentity) => Promise<string | undefined>]> = [
    ...routes.map(([where, route]): [string, (path: string, expected: FileIdentity) => Promise<string | undefined>] => [
      `read ${where}`,
      async (path, expected) => {
        const reader = new SmallFileReader(route)
        const read = reader.read(path, CONTENT.length, expected)
        await reader.flush()
        return (await read)?.content.toString()
      },
    ]),
    [
      'opened for streaming',
      async (path, expected) => {
        const descriptor = await openListed(path, 'file', expected)
        return descriptor === undefined ? undefined : readAll(descriptor)
      },
    ],
  ]
  for (const [how, read] of reads) {
    it(`is ${how}, once the holder lets go, instead of failing with EAGAIN`, async () => {
      const holder = await leased(files.file)
      try {
        expect(await read(files.file, identityOf(files.file))).to.equal(CONTENT)
        // The open broke the lease: the holder was asked to let go, and did.
        await until(() => holder.said().includes('released'), 'the holder let go')
      } finally {
        await holder.end()
      }
    })
  }
})
