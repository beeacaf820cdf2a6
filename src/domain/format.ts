/** Human-readable sizes, in binary units as `ls -h` and `du -h` print them. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let value = bytes
  let unit = -1
  do {
    value /= 1024
    unit++
  } while (value >= 1024 && unit < units.length - 1)

  return `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`
}

/**
 * `2026-11-28 16:24 UTC`: the one way human output gives a time, sortable and unambiguous. To the
 * minute: backup ids carry the seconds. (--json keeps ISO 8601.)
 */
export function formatInstant(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`
}

/** `2026-11-28`, the UTC day of an instant: for columns where the time of day says nothing more. */
export function formatDay(iso: string): string {
  return iso.slice(0, 10)
}

/** The first 12 hex digits of a SHA-256, as human output shows it (--json and `info --verbose` give all 64). */
export function shortHash(sha256: string): string {
  return sha256.slice(0, 12)
}

/** `text` cut to `width` characters, ending in `…` when it was longer. */
export function truncate(text: string, width: number): string {
  const characters = [...text]
  if (characters.length <= width) return text
  return width <= 0 ? '' : `${characters.slice(0, width - 1).join('')}…`
}

/** A plain-text table with a header row; columns are padded to the widest cell. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) =>
    Math.max([...title].length, ...rows.map((row) => [...(row[column] ?? '')].length)),
  )
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) =>
        column === cells.length - 1 ? cell : cell.padEnd(widths[column] + cell.length - [...cell].length),
      )
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map((row) => line(row))].join('\n')
}

/** "1 file", "2 files": a count with its noun, in the plural where English wants it. */
export function countOf(count: number, singular: string, plural = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : plural}`
}
