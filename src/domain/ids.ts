/**
 * Backup ids: `YYYYMMDDTHHMMSSZ-xxxxxx`. The UTC timestamp makes ids sort by creation time; six random
 * base32 characters make them unique without coordination between concurrent creates.
 */

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'
const ID_PATTERN = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-[a-z2-7]{6}$/

export function newBackupId(now: Date, random: Uint8Array): string {
  if (random.length < 6) throw new Error('newBackupId needs 6 random bytes')
  const stamp = now
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replaceAll(/[-:]/g, '')
  const suffix = [...random.subarray(0, 6)].map((byte) => ALPHABET[byte % 32]).join('')
  return `${stamp}-${suffix}`
}

export function isBackupId(text: string): boolean {
  return ID_PATTERN.test(text)
}

/** The creation instant encoded in an id, to the second. */
export function timeOfBackupId(id: string): Date {
  const match = ID_PATTERN.exec(id)
  if (!match) throw new Error(`not a backup id: ${id}`)
  const [, year, month, day, hour, minute, second] = match
  return new Date(`${year}-${month}-${day}T${hour}:${minute}:${second}Z`)
}

/**
 * The one order of backups, newest first: by creation instant, then by id. Ids alone resolve only to
 * the second, so two backups of one second would otherwise sort by their random suffix, and `list`
 * could disagree with `latest` and with retention about which one is newest.
 */
export function newestFirst(a: {createdAt: string; id: string}, b: {createdAt: string; id: string}): number {
  return Date.parse(b.createdAt) - Date.parse(a.createdAt) || b.id.localeCompare(a.id)
}
