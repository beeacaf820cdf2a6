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
