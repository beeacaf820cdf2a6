import {lstat, readFile} from 'node:fs/promises'
import {dirname} from 'node:path'

/**
 * Where file systems are mounted, from this process's mount table (/proc/self/mountinfo), as paths
 * with their octal escapes (`\040`, a space) undone; undefined where there is no such table.
 */
async function mountPoints(): Promise<string[] | undefined> {
  const table = await readFile('/proc/self/mountinfo', 'utf8').catch(() => {})
  if (table === undefined) return undefined
  return table
    .split('\n')
    .filter(Boolean)
    .map((line) =>
      (line.split(' ')[4] ?? '').replaceAll(/\\([0-7]{3})/g, (_, octal: string) =>
        String.fromCodePoint(Number.parseInt(octal, 8)),
      ),
    )
}

/**
 * Whether `path` is where a file system is mounted: by the mount table where there is one (a bind
 * mount of a folder of the same file system has the same device number as its parent), else by the
 * device numbers.
 */
export async function isMountPoint(path: string): Promise<boolean> {
  const points = await mountPoints()
  if (points !== undefined) return points.includes(path)
  const [own, parent] = await Promise.all([lstat(path).catch(() => {}), lstat(dirname(path)).catch(() => {})])
  return own !== undefined && parent !== undefined && own.dev !== parent.dev
}

/** The mount points below `folder` (a real path), not `folder` itself: other file systems inside it. */
export async function mountsBelow(folder: string): Promise<string[]> {
  const inside = folder.endsWith('/') ? folder : `${folder}/`
  return ((await mountPoints()) ?? []).filter((point) => point.startsWith(inside))
}
