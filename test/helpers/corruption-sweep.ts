import {expect} from 'chai'
import {existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {cli, makeProject, snapshotTree} from './project.js'

type Damage = 'end' | 'middle' | 'missing' | 'start' | 'truncated'

function damage(path: string, kind: Damage): void {
  if (kind === 'missing') return rmSync(path)
  if (kind === 'truncated') return truncateSync(path, Math.floor(readFileSync(path).length / 2))
  const bytes = readFileSync(path)
  const offset = kind === 'start' ? 0 : kind === 'end' ? bytes.length - 1 : Math.floor(bytes.length / 2)
  bytes[offset] ^= 0x01
  writeFileSync(path, bytes)
}

/**
 * Every stored object of a backup × {a flipped byte at the start, middle and end, truncation, missing},
 * plus edits of the manifest's fields: verify, download and restore each exit 4; download leaves no
 * file, restore leaves the target as it was and takes no safety backup. `swept` are the objects of
 * the backup's folder to damage; in the packs format, the packs the backup's blobs are in are damaged
 * too, which restore reads as it extracts. The manifest is edited only with `editManifest`: its check
 * does not depend on the media format.
 */
export async function corruptionSweep(
  format: 'packs' | 'tar',
  expected: {editManifest: boolean; objects: string[]; packs: number; swept: string[]},
): Promise<void> {
  const project = makeProject()
  project.env.DIVIO_BACKUP_MEDIA_FORMAT = format
  const created = await cli(project, ['create', '--json'])
  expect(created.status, created.stderr).to.equal(0)
  const {id} = created.json() as {id: string}
  const folder = join(project.store, 'shop', 'local', id)
  const packsFolder = join(project.store, 'shop', 'local', 'packs')
  const objects = readdirSync(folder).filter((name) => name.endsWith('.age'))
  expect(objects).to.have.members(expected.objects)
  const packs = existsSync(packsFolder) ? readdirSync(packsFolder).map((name) => join(packsFolder, name)) : []
  expect(packs).to.have.length(expected.packs)
  const target = () => snapshotTree(project.root)
  const cases: Array<{apply: () => void; label: string}> = [
    ...[...expected.swept.map((name) => join(folder, name)), ...packs].flatMap((path) =>
      (['start', 'middle', 'end', 'truncated', 'missing'] as Damage[]).map((kind) => ({
        apply: () => damage(path, kind),
        label: `${path.slice(project.store.length + 1)}: ${kind}`,
      })),
    ),
    ...(expected.editManifest ? (['note', 'trigger', 'createdAt'] as const) : []).map((field) => ({
      apply() {
        const path = join(folder, 'manifest.json')
        const manifest = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>
        manifest[field] = field === 'createdAt' ? '2020-01-01T00:00:00.000Z' : field === 'trigger' ? 'scheduled' : 'x'
        writeFileSync(path, JSON.stringify(manifest, null, 2))
      },
      label: `manifest.json: ${field} edited`,
    })),
  ]

  const stored = () => [...readdirSync(folder).map((name) => join(folder, name)), ...packs]
  const pristine = new Map(stored().map((path) => [path, readFileSync(path)]))
  for (const {apply, label} of cases) {
    apply()
    const before = target()

    // Inside this process, as a host runs them: over dozens of cases, a Node.js start per reader would
    // cost more than the readers themselves.
    const out = join(project.root, '..', 'download-out')
    const verify = await cli(project, ['verify', id])
    const download = await cli(project, ['download', id, '-o', out])
    const restore = await cli(project, ['restore', id, '--confirm', 'local'])
    expect(verify.status, `verify, ${label}`).to.equal(4)
    expect(download.status, `download, ${label}: ${download.stderr}`).to.equal(4)
    expect(existsSync(out), `download leaves nothing, ${label}`).to.equal(false)
    expect(restore.status, `restore, ${label}: ${restore.stderr}`).to.equal(4)
    // No safety backup, and the project (database, media, store) exactly as before.
    expect(target(), `restore changed nothing, ${label}`).to.deep.equal(before)

    // Undo the damage for the next case.
    for (const path of stored()) if (!pristine.has(path)) rmSync(path, {force: true})
    for (const [path, bytes] of pristine) writeFileSync(path, bytes)
  }

  expect((await cli(project, ['verify', id])).status, 'the undamaged backup verifies').to.equal(0)
}
